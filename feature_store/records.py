"""What the feature store returns (its own types; `streams` converts them for the scorers)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from contracts import EventType

__all__ = ["ApplyResult", "ItemFeatures", "StoredEvent", "UserFeatures"]


@dataclass(frozen=True, slots=True)
class StoredEvent:
    """One event as kept in a user's recent history."""

    event_id: str
    item_id: str | None
    type: EventType
    ts: datetime  # tz-aware UTC
    query: str | None = None


@dataclass(frozen=True, slots=True)
class UserFeatures:
    """One user's features at read time."""

    user_id: str
    events: tuple[StoredEvent, ...]  # oldest first
    category_affinity: Mapping[str, float]  # decayed to the user's newest affinity update
    cart: frozenset[str]
    purchased_recently: frozenset[str]  # bought within `just_purchased_seconds` of the newest event
    session_id: str | None = None


@dataclass(frozen=True, slots=True)
class ItemFeatures:
    """Item-side features for the users of one batch."""

    popular: Sequence[tuple[str, float]] = ()  # best first; scores relative to the best (1.0)
    popular_by_category: Mapping[str, Sequence[tuple[str, float]]] = field(default_factory=dict)
    cooccurring: Mapping[str, Sequence[tuple[str, float]]] = field(default_factory=dict)
    item_category: Mapping[str, str] = field(default_factory=dict)
    item_title: Mapping[str, str] = field(default_factory=dict)
    unavailable: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class ApplyResult:
    """Outcome of `FeatureStore.apply_events`."""

    applied: tuple[str, ...]  # event ids applied now
    duplicates: tuple[str, ...]  # event ids already applied before (replays)
