"""The scoring interface every scorer implements (baselines, transformer backends).

`streams/` reads `UserState`s and an `ItemContext` (`contracts.state`) from the feature store (one Redis round
trip per micro-batch) and calls `Scorer.score` once per batch, in an executor. Scorers are pure and synchronous.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from contracts import ItemContext, PastEvent, Reason, UserState

__all__ = ["ItemContext", "PastEvent", "PerUserScorer", "ScoredItem", "Scorer", "UserState"]


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


class PerUserScorer:
    """Base of the scorers that score one user at a time: `score` is `score_user` for each user."""

    def score(self, users: Sequence[UserState], items: ItemContext, k: int) -> list[list[ScoredItem]]:
        """Top-`k` items per user (`score_user`)."""
        return [self.score_user(user, items, k) for user in users]

    def score_user(self, user: UserState, items: ItemContext, k: int) -> list[ScoredItem]:
        """One user's top-`k` list."""
        raise NotImplementedError
