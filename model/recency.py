"""Per-event weights of a user's history (event type x time decay x position decay), shared by the baselines."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from contracts import EventType
from model.history import EVENT_WEIGHTS
from model.scoring import ItemContext, UserState

__all__ = ["RecencyConfig", "event_weights", "is_blocked", "item_label", "weight_list"]


@dataclass(frozen=True, slots=True)
class RecencyConfig:
    """How much each of a user's past events counts when scoring."""

    half_life_seconds: float = 86400.0  # an event a day older counts half
    position_decay: float = 0.9  # and each newer event in between multiplies it by this
    type_weights: Mapping[EventType, float] = field(default_factory=lambda: dict(EVENT_WEIGHTS))


def event_weights(user: UserState, config: RecencyConfig) -> np.ndarray:
    """Weight of each event in `user.events` (index-aligned); 0 for searches. Shape (len(events),)."""
    events = user.events
    if not events:
        return np.zeros(0)
    ts = np.fromiter((e.ts.timestamp() for e in events), dtype=np.float64, count=len(events))
    kinds = np.fromiter((config.type_weights.get(e.type, 0.0) for e in events), dtype=np.float64, count=len(events))
    age = np.maximum(ts[-1] - ts, 0.0)
    steps = np.arange(len(events) - 1, -1, -1, dtype=np.float64)
    weights: np.ndarray = kinds * np.exp2(-age / config.half_life_seconds) * config.position_decay**steps
    return weights


# (id(events), id(config)) -> (events, config, weights): the blend's parts and their explanations ask for the same
# user's weights several times per batch. Entries hold their keys' objects, so an id is never reused while cached.
_MEMO: dict[tuple[int, int], tuple[tuple[object, ...], RecencyConfig, list[float]]] = {}
_MEMO_MAX = 8192


def weight_list(user: UserState, config: RecencyConfig) -> list[float]:
    """`event_weights` as a list, memoised per (events, config) object pair (both immutable)."""
    key = (id(user.events), id(config))
    found = _MEMO.get(key)
    if found is not None and found[0] is user.events and found[1] is config:
        return found[2]
    weights: list[float] = event_weights(user, config).tolist()
    if len(_MEMO) >= _MEMO_MAX:
        _MEMO.clear()
    _MEMO[key] = (user.events, config, weights)
    return weights


def is_blocked(item_id: str, user: UserState, items: ItemContext) -> bool:
    """True for items never to recommend: unavailable ones and the ones the user has just bought."""
    return item_id in items.unavailable or item_id in user.purchased_recently


def item_label(item_id: str, items: ItemContext) -> str:
    """The item's title if the context has one, else its id (for reason details)."""
    return items.item_title.get(item_id) or item_id
