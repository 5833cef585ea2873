"""Per-event weights of a user's history (event type x time decay x position decay), shared by the baselines."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from contracts import EventType
from model.history import EVENT_WEIGHTS
from model.scoring import ItemContext, UserState

__all__ = ["RecencyConfig", "event_weights", "is_blocked", "item_label"]


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


def is_blocked(item_id: str, user: UserState, items: ItemContext) -> bool:
    """True for items never to recommend: unavailable ones and the ones the user has just bought."""
    return item_id in items.unavailable or item_id in user.purchased_recently


def item_label(item_id: str, items: ItemContext) -> str:
    """The item's title if the context has one, else its id (for reason details)."""
    return items.item_title.get(item_id) or item_id
