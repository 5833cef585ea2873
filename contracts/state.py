"""What is known about a user and about items at scoring time: one set of records, built by the feature store
and read by the scorers and the explainer as they are (no copies between layers)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from contracts.records import EventType

__all__ = ["ItemContext", "PastEvent", "UserState"]


@dataclass(frozen=True, slots=True)
class PastEvent:
    """One event in a user's recent history."""

    event_id: str
    item_id: str | None  # None for a search
    type: EventType
    ts: datetime  # tz-aware event time
    query: str | None = None


@dataclass(frozen=True, slots=True)
class UserState:
    """One user's features at read time."""

    user_id: str
    events: tuple[PastEvent, ...]  # oldest first, at most `recent_events`
    category_affinity: Mapping[str, float] = field(default_factory=dict)  # decayed to the newest update
    cart: frozenset[str] = frozenset()  # items currently in the cart
    purchased_recently: frozenset[str] = frozenset()  # bought within the hour before the newest event: filtered
    session_id: str | None = None


@dataclass(frozen=True, slots=True)
class ItemContext:
    """Item-side features shared by the users of one batch."""

    popular: Sequence[tuple[str, float]] = ()  # decayed popularity, best first, relative to the best (1.0)
    popular_by_category: Mapping[str, Sequence[tuple[str, float]]] = field(default_factory=dict)
    cooccurring: Mapping[str, Sequence[tuple[str, float]]] = field(default_factory=dict)  # item -> neighbours
    item_category: Mapping[str, str] = field(default_factory=dict)
    item_title: Mapping[str, str] = field(default_factory=dict)
    unavailable: frozenset[str] = frozenset()
