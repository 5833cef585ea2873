"""The skeleton of the counting scorers (V-SKNN, transitions): fitted `Sequences` in, best rows, then popularity.

Each scores every vocabulary row from its own counts; the list is its best rows the user may be shown
(`model.recency.is_blocked`), topped up with `ItemContext.popular` (score 0, "popular right now") when the
counts know fewer than `k` items.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, Self

import numpy as np

from contracts import Event, Reason, ReasonKind
from model.recency import is_blocked
from model.scoring import ItemContext, PerUserScorer, ScoredItem, UserState
from model.sessions import Sequences, top_rows

__all__ = ["SequenceScorer", "with_popular"]

_TRENDING = Reason(kind=ReasonKind.TRENDING, detail="popular right now", weight=0.0)


class SequenceScorer(PerUserScorer):
    """Base of the scorers counted from training sequences; a subclass takes its knobs after `sequences`, so
    `fit(events, **knobs)` serves every one (`SessionKnnScorer.fit(events, k=50)`)."""

    def __init__(self, sequences: Sequences) -> None:
        """Args: the fitted training sequences."""
        self._seq = sequences

    @classmethod
    def fit(cls, events: Iterable[Event], **params: Any) -> Self:
        """Fit on the sequences of `events` (any order); `params` are the subclass's knobs."""
        return cls(Sequences.build(events), **params)

    def _ranked(
        self,
        scores: np.ndarray,
        user: UserState,
        items: ItemContext,
        k: int,
        explain: Callable[[int, str], ScoredItem],
        exclude: frozenset[str] = frozenset(),
    ) -> list[ScoredItem]:
        """The `k` best rows of `scores` (V,) neither in `exclude` nor blocked, as `explain(row, item_id)`, then
        popular items."""
        picked: list[ScoredItem] = []
        depth = k + len(exclude) + len(user.purchased_recently) + 16  # room for the rows skipped below
        for r in top_rows(scores, depth).tolist():
            item_id = self._seq.vocab[r]
            if item_id in exclude or is_blocked(item_id, user, items):
                continue
            picked.append(explain(r, item_id))
            if len(picked) == k:
                break
        return with_popular(picked, user, items, k, exclude)


def with_popular(
    picked: list[ScoredItem], user: UserState, items: ItemContext, k: int, skip: frozenset[str] = frozenset()
) -> list[ScoredItem]:
    """`picked` topped up to `k` with `items.popular` (best first), skipping picked, `skip` and blocked items."""
    if len(picked) >= k:
        return picked
    chosen = {s.item_id for s in picked} | skip
    out = list(picked)
    for item_id, _ in items.popular:
        if item_id not in chosen and not is_blocked(item_id, user, items):
            out.append(ScoredItem(item_id=item_id, score=0.0, reasons=(_TRENDING,)))
            chosen.add(item_id)
            if len(out) == k:
                break
    return out
