"""Time-ordered item sequences of training events, as sparse matrices: what the counting baselines fit on.

A sequence is one session (`Event.session_id`) of one user, or the user's whole history when events carry no
session. Item vocabulary: by training event count (desc), then id, so a lower index means more popular; the
counting scorers break score ties by it.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from contracts import Event
from model.scoring import UserState

__all__ = ["Sequences", "context_items", "top_rows"]


@dataclass(frozen=True, slots=True)
class Sequences:
    """Item vocabulary and the training sequences as vocabulary indices."""

    vocab: list[str]  # index -> item id, most frequent first
    index: Mapping[str, int]  # item id -> index
    rows: list[np.ndarray]  # one int64 array per sequence, time order
    last_ts: np.ndarray  # (n sequences,) unix seconds of each sequence's last event

    @classmethod
    def build(cls, events: Iterable[Event], extra_items: Iterable[str] = ()) -> Sequences:
        """Group item events by (user, session), each in time order (ties keep input order).

        `extra_items` without events (catalog items a text source can name) get rows after the others, by id.
        """
        ordered = sorted((e for e in events if e.item_id is not None), key=lambda e: e.ts)
        counts = Counter(e.item_id or "" for e in ordered)
        vocab = sorted(counts, key=lambda i: (-counts[i], i))
        vocab += sorted(set(extra_items) - counts.keys())
        index = {item: i for i, item in enumerate(vocab)}
        groups: dict[tuple[str, str | None], list[int]] = {}
        last: dict[tuple[str, str | None], float] = {}
        for e in ordered:
            key = (e.user_id, e.session_id)
            groups.setdefault(key, []).append(index[e.item_id or ""])
            last[key] = e.ts.timestamp()
        rows = [np.asarray(items, dtype=np.int64) for items in groups.values()]
        return cls(vocab, index, rows, np.asarray([last[k] for k in groups], dtype=np.float64))

    def transitions(self) -> sp.csr_matrix:
        """(V, V) counts C[i, j] of j directly after i in a sequence; self-loops (re-clicks) dropped."""
        src = [r[:-1] for r in self.rows if len(r) > 1]
        dst = [r[1:] for r in self.rows if len(r) > 1]
        v = len(self.vocab)
        if not src:
            return sp.csr_matrix((v, v), dtype=np.float64)
        a, b = np.concatenate(src), np.concatenate(dst)
        keep = a != b
        ones = np.ones(int(keep.sum()), dtype=np.float64)
        return sp.csr_matrix((ones, (a[keep], b[keep])), shape=(v, v))  # duplicates are summed

    def incidence(self) -> sp.csr_matrix:
        """(sequences, V) binary: which items each sequence holds."""
        v = len(self.vocab)
        if not self.rows:
            return sp.csr_matrix((0, v), dtype=np.float64)
        cols = [np.unique(r) for r in self.rows]
        indptr = np.concatenate(([0], np.cumsum([len(c) for c in cols]))).astype(np.int64)
        indices = np.concatenate(cols)
        return sp.csr_matrix((np.ones(len(indices)), indices, indptr), shape=(len(cols), v))


def context_items(user: UserState, index: Mapping[str, int], n: int) -> list[tuple[int, int]]:
    """The user's last `n` distinct known items, most recent first, as (vocabulary index, event index)."""
    out: list[tuple[int, int]] = []
    seen: set[int] = set()
    for position in range(len(user.events) - 1, -1, -1):
        item = user.events[position].item_id
        row = index.get(item) if item is not None else None
        if row is not None and row not in seen:
            seen.add(row)
            out.append((row, position))
            if len(out) == n:
                break
    return out


def top_rows(scores: np.ndarray, k: int) -> np.ndarray:
    """Indices of the `k` largest positive entries of `scores`, best first; ties: lower index first."""
    positive = np.flatnonzero(scores > 0.0)
    if positive.size > k:
        part = np.argpartition(-scores[positive], k - 1)[:k]
        threshold = scores[positive[part]].min()
        positive = positive[scores[positive] >= threshold]  # keep every tie at the cut, ordered below
    order = np.lexsort((positive, -scores[positive]))
    return positive[order][:k]
