"""Item-to-item transition baselines: what shoppers open right after the items this user just looked at.

`TransitionScorer`: C[i, j] = how often j came directly after i in a training sequence (`model.sessions`),
re-clicks (i -> i) dropped. For the user's last `context` distinct items i_1 (newest) .. i_n,
score(j) = sum_k decay^(k-1) * C[i_k, j]; the list is topped up with popularity (`ItemContext.popular`).

`RepeatThenTransitionsScorer`: the user's own earlier items, most recent first, without the current one (the
item of the latest event), then the transition list, then popularity.

Both are fitted on training events (`fit`) and then score like any `Scorer` from `UserState` + `ItemContext`;
items unknown at fit time only come from popularity. Ties break towards the more frequent training item.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import scipy.sparse as sp

from contracts import Event, Reason, ReasonKind
from model.counting import SequenceScorer, with_popular
from model.recency import is_blocked, item_label
from model.scoring import ItemContext, PerUserScorer, Pick, ScoredItem, UserState
from model.sessions import Sequences, context_items

__all__ = ["RepeatThenTransitionsScorer", "TransitionScorer"]


class TransitionScorer(SequenceScorer):
    """First-order transition counts over the last `context` distinct items (module docstring)."""

    def __init__(self, sequences: Sequences, context: int = 5, decay: float = 0.5) -> None:
        """Args: fitted sequences, distinct context items used, weight ratio between consecutive ones."""
        super().__init__(sequences)
        self._counts = sequences.transitions()
        self._context = context
        self._decay = decay

    @property
    def version(self) -> str:
        """Model version stamped on recommendations."""
        return f"transitions-v1(last{self._context},{self._decay:g})"

    def score_user(
        self, user: UserState, items: ItemContext, k: int, exclude: frozenset[str] = frozenset()
    ) -> list[ScoredItem]:
        """One user's list, without the items in `exclude`."""
        context = context_items(user, self._seq.index, self._context)
        if not context:
            return with_popular([], user, items, k, exclude)
        rows = [r for r, _ in context]
        weights = self._decay ** np.arange(len(rows), dtype=np.float64)
        part: sp.csr_matrix = self._counts[rows]  # (n, V)
        scores = np.asarray(part.T @ weights).ravel()  # (V,)

        def explain(row: int, item_id: str) -> ScoredItem:
            return self._explain(Pick(user, items, item_id, float(scores[row])), part, weights, context, row)

        return self._ranked(scores, user, items, k, explain, exclude)

    def _explain(
        self, pick: Pick, part: sp.csr_matrix, weights: np.ndarray, context: list[tuple[int, int]], row: int
    ) -> ScoredItem:
        column = np.asarray(part[:, [row]].todense()).ravel() * weights  # contribution of each context item
        evidence = sorted(
            ((context[n][1], float(c)) for n, c in enumerate(column.tolist()) if c > 0.0), key=lambda e: -e[1]
        )
        source = pick.user.events[evidence[0][0]].item_id or ""
        detail = f"shoppers often open it right after {item_label(source, pick.items)}"
        return pick.with_reason(ReasonKind.SIMILAR_TO, detail, evidence[:5])


class RepeatThenTransitionsScorer(PerUserScorer):
    """The user's earlier items (newest first, current one excluded), then transitions, then popularity."""

    def __init__(self, transitions: TransitionScorer, max_repeats: int = 50) -> None:
        """Args: the fitted transition scorer; at most `max_repeats` own items lead the list."""
        self._transitions = transitions
        self._max_repeats = max_repeats

    @classmethod
    def fit(cls, events: Iterable[Event]) -> RepeatThenTransitionsScorer:
        """Fit the transition part on `events`."""
        return cls(TransitionScorer.fit(events))

    @property
    def version(self) -> str:
        """Model version stamped on recommendations."""
        return f"repeat-then-{self._transitions.version}"

    def score_user(self, user: UserState, items: ItemContext, k: int) -> list[ScoredItem]:
        """One user's top-`k`: their earlier items, then transitions, then popular items."""
        own = _earlier_items(user, items, min(k, self._max_repeats))
        n = len(own)
        picked = [
            ScoredItem(
                item_id=item_id,
                score=float(1 + n - rank),  # above every transition list entry's scale-free rank
                evidence=((position, 1.0),),
                reasons=(Reason(kind=ReasonKind.SEEN_BEFORE, detail="you looked at it earlier", weight=1.0),),
            )
            for rank, (item_id, position) in enumerate(own)
        ]
        if len(picked) < k:
            current = user.events[-1].item_id if user.events else None
            exclude = frozenset(s.item_id for s in picked) | ({current} if current else frozenset())
            rest = self._transitions.score_user(user, items, k - len(picked), exclude)
            picked += [_scaled(s) for s in rest]
        return picked


def _earlier_items(user: UserState, items: ItemContext, n: int) -> list[tuple[str, int]]:
    """Distinct items of the user's events, most recent first, without the current one: (item, event index)."""
    events = user.events
    current = events[-1].item_id if events else None
    out: list[tuple[str, int]] = []
    seen = {current}
    for position in range(len(events) - 1, -1, -1):
        item = events[position].item_id
        if item is not None and item not in seen:
            seen.add(item)
            if not is_blocked(item, user, items):
                out.append((item, position))
                if len(out) == n:
                    break
    return out


def _scaled(scored: ScoredItem) -> ScoredItem:
    """A transition/popularity entry placed below the repeats (scores in (0, 1))."""
    return ScoredItem(scored.item_id, scored.score / (1.0 + scored.score), scored.evidence, scored.reasons)
