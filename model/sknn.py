"""V-SKNN (vector-multiplication session kNN; Ludewig et al., "Empirical analysis of session-based
recommendation algorithms", 2021): items of the training sequences most similar to the current one.

For the current sequence s (the user's recent events, `UserState.events`; L item events, item at 1-based
position p weighted w = p / L, its latest position counting: a linear decay towards older items):

1. candidates: training sequences (`model.sessions`) holding any item of s; the `sample_size` most recent
   (by their last event) are kept;
2. sim(s, n) = sum_{i in s and n} w(i) / sqrt(|s| * |n|) (cosine over item sets, numerator position-weighted);
   the `k` most similar are the neighbours;
3. score(j) = sum over neighbours n holding j of sim(s, n) * 1 / d(n), d(n) = how many steps back from the end
   of s the newest item shared with n is (1 = the current item);
4. the list is topped up with popularity (`ItemContext.popular`).

Defaults (k = 100, 1,000 recent sessions, "div" position and score weights) follow the session-rec
implementation that accompanies the paper; nothing was tuned on the evaluation slices.
"""

from __future__ import annotations

import numpy as np

from contracts import Reason, ReasonKind
from model.counting import SequenceScorer, with_popular
from model.scoring import ItemContext, ScoredItem, UserState
from model.sessions import Sequences, top_rows

__all__ = ["SessionKnnScorer"]

_NEIGHBOURS = Reason(kind=ReasonKind.SIMILAR_TO, detail="shoppers with sessions like yours chose it", weight=1)


class SessionKnnScorer(SequenceScorer):
    """V-SKNN over fitted training sequences (module docstring)."""

    def __init__(self, sequences: Sequences, k: int = 100, sample_size: int = 1000) -> None:
        """Args: fitted sequences, neighbours used, most recent candidate sequences compared."""
        super().__init__(sequences)
        self._incidence = sequences.incidence()  # (N, V)
        self._sessions_of = self._incidence.T.tocsr()  # (V, N): which sequences hold each item
        self._sizes = np.diff(self._incidence.indptr).astype(np.float64)  # (N,) distinct items per sequence
        self._k = k
        self._sample_size = sample_size

    @property
    def version(self) -> str:
        """Model version stamped on recommendations."""
        return f"vsknn-v1(k{self._k},m{self._sample_size})"

    def score_user(self, user: UserState, items: ItemContext, k: int) -> list[ScoredItem]:
        """One user's top-`k`: neighbourhood scores, then popular items (score 0)."""
        scores = self.item_scores(user)
        if scores is None:
            return with_popular([], user, items, k)

        def explain(row: int, item_id: str) -> ScoredItem:
            return ScoredItem(item_id=item_id, score=float(scores[row]), reasons=(_NEIGHBOURS,))

        return self._ranked(scores, user, items, k, explain)

    def item_scores(self, user: UserState) -> np.ndarray | None:
        """(V,) V-SKNN score of every fitted item for `user`, or None without known items or neighbours.

        Reads the CSR arrays directly (scipy's fancy indexing cost ~10x more per user). Every sum is taken in the
        order a sparse product would take it (items ascending within a sequence, neighbours in rank order), so
        the scores equal the matrix form bit for bit (a test pins it).
        """
        rows = [self._seq.index.get(e.item_id) for e in user.events if e.item_id is not None]
        known = [r for r in rows if r is not None]
        if not known:
            return None
        n = len(known)
        latest = {r: p for p, r in enumerate(known, start=1)}  # item -> its latest 1-based position in s
        distinct = np.fromiter(latest, dtype=np.int64, count=len(latest))
        position = np.fromiter(latest.values(), dtype=np.float64, count=len(latest))
        order = np.argsort(distinct)
        distinct, position = distinct[order], position[order]
        holders = self._sessions_of  # (V, N)
        sizes = holders.indptr[distinct + 1] - holders.indptr[distinct]
        if not sizes.sum():
            return None
        sessions = np.concatenate([holders.indices[holders.indptr[r] : holders.indptr[r + 1]] for r in distinct])
        candidates, inverse = np.unique(sessions, return_inverse=True)
        # (m,) numerator: position weights p / L of the shared items, summed item by item in ascending order
        shared = np.bincount(inverse, weights=np.repeat(position / n, sizes), minlength=candidates.size)
        decay = np.zeros(candidates.size)  # (m,) 1 / (steps back from the end of s) of the newest shared item
        np.maximum.at(decay, inverse, np.repeat(1.0 / (n + 1 - position), sizes))
        if candidates.size > self._sample_size:  # the most recent sequences (ties: lower index)
            keep = np.lexsort((candidates, -self._seq.last_ts[candidates]))[: self._sample_size]  # newest first
            candidates, shared, decay = candidates[keep], shared[keep], decay[keep]
        sim = shared / np.sqrt(distinct.size * self._sizes[candidates])  # (m,)
        best = top_rows(sim, self._k)
        incidence = self._incidence
        starts, ends = incidence.indptr[candidates[best]], incidence.indptr[candidates[best] + 1]
        items = np.concatenate([incidence.indices[a:b] for a, b in zip(starts.tolist(), ends.tolist(), strict=True)])
        weights = np.repeat(sim[best] * decay[best], ends - starts)
        scores: np.ndarray = np.bincount(items, weights=weights, minlength=len(self._seq.vocab))
        return scores
