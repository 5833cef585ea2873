"""The scoring interface every scorer implements (baselines, transformer backends).

`streams/` reads `UserState`s and an `ItemContext` (`contracts.state`) from the feature store (one Redis round
trip per micro-batch) and calls `Scorer.score` once per batch, in an executor. Scorers are pure and synchronous.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple, Protocol

from contracts import ItemContext, PastEvent, Reason, ReasonKind, UserState

__all__ = ["ItemContext", "PastEvent", "PerUserScorer", "Pick", "ScoredItem", "Scorer", "UserState"]


@dataclass(frozen=True, slots=True)
class ScoredItem:
    """One recommended item with the scorer's own account of why."""

    item_id: str
    score: float
    evidence: tuple[tuple[int, float], ...] = ()  # (index into UserState.events, signed weight), strongest first
    reasons: tuple[Reason, ...] = ()


class Pick(NamedTuple):
    """An item a scorer picked for a user, not yet explained: what every baseline's explanation starts from.

    A named tuple, not a dataclass: the ranking scorers make one per candidate on the serving hot path.
    """

    user: UserState
    items: ItemContext
    item_id: str
    score: float

    def with_reason(self, kind: ReasonKind, detail: str, evidence: Sequence[tuple[int, float]]) -> ScoredItem:
        """The item explained by one reason as strong as its score (the detail cut to the contract's 512 chars)."""
        reason = Reason(kind=kind, detail=detail[:512], weight=self.score)
        return ScoredItem(item_id=self.item_id, score=self.score, evidence=tuple(evidence), reasons=(reason,))


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
