"""Builds `UserState`s from a user's `contracts.Event` history (offline evaluation and training).

The streaming worker reads the same quantities from the feature store; this module is the in-memory reference:
the last `recent_events` events, a decayed per-category affinity, the current cart and the items purchased
"just now" (which scorers filter out). Event-type weights and recency decay shared by the baselines live here.

Example:
    >>> from datetime import UTC, datetime
    >>> from contracts import Event
    >>> e = Event(event_id="e1", user_id="u", item_id="i1", type="view", ts=datetime(2024, 1, 1, tzinfo=UTC))
    >>> build_user_state("u", [e], {"i1": "shoes"}).category_affinity
    {'shoes': 1.0}
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from contracts import Event, EventType
from model.scoring import PastEvent, UserState

__all__ = [
    "EVENT_WEIGHTS",
    "HistoryConfig",
    "UserHistory",
    "build_user_state",
    "decay",
    "past_event",
    "sort_events",
]

# How much one event says about the user's interest in its item; a removal is mild negative evidence.
EVENT_WEIGHTS: Mapping[EventType, float] = {
    EventType.VIEW: 1.0,
    EventType.CLICK: 1.0,
    EventType.ADD_TO_CART: 3.0,
    EventType.REMOVE_FROM_CART: -1.0,
    EventType.PURCHASE: 5.0,
    EventType.SEARCH: 0.0,
}


def decay(age_seconds: float, half_life_seconds: float) -> float:
    """Exponential decay factor `0.5 ** (age / half_life)`; ages below zero count as zero."""
    return math.exp(-math.log(2.0) * max(age_seconds, 0.0) / half_life_seconds)


@dataclass(frozen=True, slots=True)
class HistoryConfig:
    """How a `UserState` is derived from raw events."""

    recent_events: int = 50  # events kept per user (Settings.recent_events)
    affinity_half_life_seconds: float = 3 * 86400.0  # category affinity halves every 3 days
    purchase_filter_seconds: float = 3600.0  # purchases this recent are "just bought" and filtered


def past_event(event: Event) -> PastEvent:
    """The scorer-side view of one event."""
    return PastEvent(event_id=event.event_id, item_id=event.item_id, type=event.type, ts=event.ts, query=event.query)


class UserHistory:
    """One user's running history; `add` events in time order, `state()` at any point.

    Category affinity is kept as a decayed running sum, so a state costs O(categories), not O(history).
    """

    def __init__(self, user_id: str, item_category: Mapping[str, str], config: HistoryConfig | None = None) -> None:
        """Start an empty history for `user_id`; `item_category` maps item ids to categories."""
        self.user_id = user_id
        self._config = config or HistoryConfig()
        self._item_category = item_category
        self._events: deque[PastEvent] = deque(maxlen=self._config.recent_events)
        self._affinity: dict[str, float] = {}
        self._affinity_ts: datetime | None = None
        self._cart: dict[str, None] = {}
        self._purchases: deque[tuple[str, datetime]] = deque()

    def add(self, event: Event | PastEvent) -> None:
        """Append one event (must not be older than the previous one for exact decay)."""
        past = event if isinstance(event, PastEvent) else past_event(event)
        self._events.append(past)
        item = past.item_id
        if item is None:
            return
        if past.type is EventType.ADD_TO_CART:
            self._cart[item] = None
        elif past.type in (EventType.REMOVE_FROM_CART, EventType.PURCHASE):
            self._cart.pop(item, None)
        if past.type is EventType.PURCHASE:
            self._purchases.append((item, past.ts))
        category = self._item_category.get(item)
        weight = max(EVENT_WEIGHTS[past.type], 0.0)
        if category is not None and weight > 0.0:
            self._decay_affinity_to(past.ts)
            self._affinity[category] = self._affinity.get(category, 0.0) + weight

    def _decay_affinity_to(self, ts: datetime) -> None:
        if self._affinity_ts is not None and ts > self._affinity_ts:
            age = (ts - self._affinity_ts).total_seconds()
            factor = decay(age, self._config.affinity_half_life_seconds)
            for category in self._affinity:
                self._affinity[category] *= factor
        if self._affinity_ts is None or ts > self._affinity_ts:
            self._affinity_ts = ts

    def state(self) -> UserState:
        """The user as a scorer sees them right after the last added event."""
        events = tuple(self._events)
        now = events[-1].ts if events else None
        purchased: frozenset[str] = frozenset()
        if now is not None:
            horizon = self._config.purchase_filter_seconds
            while self._purchases and (now - self._purchases[0][1]).total_seconds() > horizon:
                self._purchases.popleft()
            purchased = frozenset(item for item, _ in self._purchases)
        return UserState(
            user_id=self.user_id,
            events=events,
            category_affinity=self._affinity_at(now),
            cart=frozenset(self._cart),
            purchased_recently=purchased,
        )

    def _affinity_at(self, now: datetime | None) -> dict[str, float]:
        if now is None or self._affinity_ts is None:
            return dict(self._affinity)
        factor = decay((now - self._affinity_ts).total_seconds(), self._config.affinity_half_life_seconds)
        return {category: value * factor for category, value in self._affinity.items() if value > 0.0}


def build_user_state(
    user_id: str,
    events: Iterable[Event | PastEvent],
    item_category: Mapping[str, str],
    config: HistoryConfig | None = None,
) -> UserState:
    """`UserState` of `user_id` after `events` (oldest first)."""
    history = UserHistory(user_id, item_category, config)
    for event in events:
        history.add(event)
    return history.state()


def sort_events(events: Sequence[Event]) -> list[Event]:
    """Events in time order (stable: ties keep input order)."""
    return sorted(events, key=lambda e: e.ts)
