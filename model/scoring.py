"""The scoring interface every scorer implements (baselines, transformer backends).

`streams/` builds `UserState`s and an `ItemContext` from the feature store (one Redis round trip per
micro-batch) and calls `Scorer.score` once per batch, in an executor. Scorers are pure and synchronous.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from contracts import EventType, Reason

__all__ = ["ItemContext", "PastEvent", "ScoredItem", "Scorer", "UserState"]


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
    """What the scorer knows about one user at scoring time."""

    user_id: str
    events: tuple[PastEvent, ...]  # oldest first, at most `recent_events`
    category_affinity: Mapping[str, float] = field(default_factory=dict)  # decayed, per category
    cart: frozenset[str] = frozenset()  # items currently in the cart
    purchased_recently: frozenset[str] = frozenset()  # just bought: filtered out


@dataclass(frozen=True, slots=True)
class ItemContext:
    """Item-side features shared by the users of one batch (read from the feature store)."""

    popular: Sequence[tuple[str, float]] = ()  # decayed popularity, best first
    popular_by_category: Mapping[str, Sequence[tuple[str, float]]] = field(default_factory=dict)
    cooccurring: Mapping[str, Sequence[tuple[str, float]]] = field(default_factory=dict)  # item -> neighbours
    item_category: Mapping[str, str] = field(default_factory=dict)
    item_title: Mapping[str, str] = field(default_factory=dict)
    unavailable: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class ScoredItem:
    """One recommended item with the scorer's own account of why."""

    item_id: str
    score: float
    evidence: tuple[tuple[int, float], ...] = ()  # (index into UserState.events, signed weight), strongest first
    reasons: tuple[Reason, ...] = ()


class Scorer(Protocol):
    """Ranks items for a micro-batch of users."""

    @property
    def version(self) -> str:
        """Model version stamped on recommendations."""
        ...

    def score(self, users: Sequence[UserState], items: ItemContext, k: int) -> list[list[ScoredItem]]:
        """Top-`k` items per user, best first; one list per user, in input order."""
        ...
