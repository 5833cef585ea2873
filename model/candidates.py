"""Ranked candidates whose explanation is built only when asked (the blend explains its winners only)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import ClassVar, Protocol

from model.scoring import ItemContext, ScoredItem, UserState

__all__ = ["Candidate", "Ranker", "RankingScorer", "explain_all"]


class Candidate:
    """One ranked item: id and score now, `ScoredItem` (evidence, reasons) on demand, built once."""

    __slots__ = ("_explain", "_scored", "item_id", "score")

    def __init__(self, item_id: str, score: float, explain: Callable[[], ScoredItem]) -> None:
        """Args: item id, score, and a function building the full `ScoredItem` (called at most once)."""
        self.item_id = item_id
        self.score = score
        self._explain = explain
        self._scored: ScoredItem | None = None

    def scored(self) -> ScoredItem:
        """The explained item (built on first call)."""
        if self._scored is None:
            self._scored = self._explain()
        return self._scored


class Ranker(Protocol):
    """A scorer that can rank without explaining (`model.baselines` scorers)."""

    @property
    def version(self) -> str:
        """Model version."""
        ...

    def rank(self, users: Sequence[UserState], items: ItemContext, k: int) -> list[list[Candidate]]:
        """Top-`k` candidates per user, best first, explanations deferred."""
        ...


def explain_all(ranked: list[list[Candidate]]) -> list[list[ScoredItem]]:
    """Every candidate explained (what `Scorer.score` returns)."""
    return [[c.scored() for c in row] for row in ranked]


class RankingScorer:
    """Base of the scorers that rank first and explain on demand: `score` is `rank` with every candidate explained.

    A subclass sets `label` (its version) and implements `rank`.
    """

    label: ClassVar[str] = ""

    @property
    def version(self) -> str:
        """Model version stamped on recommendations."""
        return self.label

    def score(self, users: Sequence[UserState], items: ItemContext, k: int) -> list[list[ScoredItem]]:
        """Top-`k` items per user, each explained (`rank`, then `explain_all`)."""
        return explain_all(self.rank(users, items, k))

    def rank(self, users: Sequence[UserState], items: ItemContext, k: int) -> list[list[Candidate]]:
        """Top-`k` candidates per user, best first, explanations deferred until a candidate's `scored()`."""
        raise NotImplementedError
