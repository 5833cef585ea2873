"""In-memory `ItemContext` builder: decayed popularity and item-to-item co-occurrence from an event history.

The streaming worker reads these quantities from the feature store; offline evaluation and training compute
them here from `contracts.Event`s with numpy. `InteractionIndex.item_context()` returns an `ItemContext` whose
large mappings are lazy (`NeighbourTable`, `CategoryPopularity`): neighbours are materialised as
`(item_id, weight)` lists only when looked up, and scorers may read the arrays behind them directly.

Co-occurrence: two items co-occur when one user touches them within `window` events and `max_gap_seconds` of
each other; a pair `d` events apart counts `1/d`. The weight of neighbour `j` of item `i` is
`c_ij / (n_i ** (1 - alpha) * n_j ** alpha)` (`n` = event counts; alpha 0.5 = cosine), top `neighbours` kept.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from contracts import Event, Item
from model.history import EVENT_WEIGHTS
from model.scoring import ItemContext

__all__ = ["CategoryPopularity", "IndexConfig", "InteractionIndex", "NeighbourTable"]


@dataclass(frozen=True, slots=True)
class IndexConfig:
    """How popularity and co-occurrence are computed."""

    popularity_half_life_seconds: float = 86400.0  # popularity halves every day (relative to the newest event)
    window: int = 5  # co-occurrence: items up to this many events apart in one user's sequence
    max_gap_seconds: float = 86400.0  # ... and at most this far apart in time
    alpha: float = 0.5  # neighbour weight c_ij / (n_i^(1-alpha) n_j^alpha)
    neighbours: int = 100  # neighbours kept per item
    top_popular: int = 1000  # length of ItemContext.popular and of each popular_by_category list


class NeighbourTable(Mapping[str, Sequence[tuple[str, float]]]):
    """Co-occurrence neighbours in CSR form; a read-only `item_id -> [(neighbour, weight), ...]` mapping."""

    def __init__(self, vocab: Sequence[str], indptr: np.ndarray, indices: np.ndarray, weights: np.ndarray) -> None:
        """Wrap CSR arrays; row `i` (item `vocab[i]`) is `indices/weights[indptr[i]:indptr[i+1]]`, best first."""
        self.vocab = vocab
        self.index = {item: i for i, item in enumerate(vocab)}
        self._indptr, self._indices, self._weights = indptr, indices, weights

    def arrays(self, item_id: str) -> tuple[np.ndarray, np.ndarray] | None:
        """Neighbour vocabulary indices and weights of `item_id`, or None if it has none."""
        row = self.index.get(item_id)
        if row is None:
            return None
        start, stop = self._indptr[row], self._indptr[row + 1]
        if start == stop:
            return None
        return self._indices[start:stop], self._weights[start:stop]

    def __getitem__(self, item_id: str) -> list[tuple[str, float]]:
        found = self.arrays(item_id)
        if found is None:
            raise KeyError(item_id)
        return [(self.vocab[j], float(w)) for j, w in zip(found[0].tolist(), found[1].tolist(), strict=True)]

    def __iter__(self) -> Iterator[str]:
        rows = np.flatnonzero(np.diff(self._indptr))
        return (self.vocab[i] for i in rows.tolist())

    def __len__(self) -> int:
        return int(np.count_nonzero(np.diff(self._indptr)))


class CategoryPopularity(Mapping[str, Sequence[tuple[str, float]]]):
    """Read-only `category -> [(item_id, popularity), ...]` (best first, at most `top` items), built lazily."""

    def __init__(
        self, vocab: Sequence[str], categories: Sequence[str | None], popularity: np.ndarray, top: int
    ) -> None:
        """Group items with positive popularity by category."""
        self._vocab, self._popularity, self._top = vocab, popularity, top
        self._members: dict[str, list[int]] = {}
        for i in np.flatnonzero(popularity > 0).tolist():
            category = categories[i]
            if category is not None:
                self._members.setdefault(category, []).append(i)
        self._cache: dict[str, list[tuple[str, float]]] = {}

    def __getitem__(self, category: str) -> list[tuple[str, float]]:
        cached = self._cache.get(category)
        if cached is None:
            members = np.asarray(self._members[category])
            order = members[np.argsort(-self._popularity[members], kind="stable")][: self._top]
            cached = [(self._vocab[i], float(self._popularity[i])) for i in order.tolist()]
            self._cache[category] = cached
        return cached

    def __iter__(self) -> Iterator[str]:
        return iter(self._members)

    def __len__(self) -> int:
        return len(self._members)


@dataclass(frozen=True, slots=True)
class _Columns:
    users: np.ndarray  # (N,) int64 user code
    items: np.ndarray  # (N,) int64 vocabulary index
    weights: np.ndarray  # (N,) float64 event-type weight
    ts: np.ndarray  # (N,) float64 unix seconds


def _columns(events: Iterable[Event], index: dict[str, int], vocab: list[str]) -> _Columns:
    users: dict[str, int] = {}
    rows: list[tuple[int, int, float, float]] = []
    for event in events:
        if event.item_id is None:
            continue
        item = index.get(event.item_id)
        if item is None:
            item = index[event.item_id] = len(vocab)
            vocab.append(event.item_id)
        user = users.setdefault(event.user_id, len(users))
        rows.append((user, item, EVENT_WEIGHTS[event.type], event.ts.timestamp()))
    if not rows:
        empty = np.zeros(0)
        return _Columns(empty.astype(np.int64), empty.astype(np.int64), empty, empty)
    u, i, w, t = zip(*rows, strict=True)
    return _Columns(np.asarray(u), np.asarray(i), np.asarray(w, dtype=np.float64), np.asarray(t, dtype=np.float64))


def _popularity(cols: _Columns, size: int, half_life: float) -> np.ndarray:
    if cols.ts.size == 0:
        return np.zeros(size)
    age = cols.ts.max() - cols.ts
    weight = np.maximum(cols.weights, 0.0) * np.exp2(-age / half_life)
    return np.bincount(cols.items, weights=weight, minlength=size)


def _cooccurrence(cols: _Columns, size: int, config: IndexConfig) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    order = np.lexsort((np.arange(cols.ts.size), cols.ts, cols.users))  # per user, in time order
    users, items, ts = cols.users[order], cols.items[order], cols.ts[order]
    src, dst, wts = [], [], []
    for d in range(1, config.window + 1):
        a, b = items[:-d], items[d:]
        keep = (users[:-d] == users[d:]) & (a != b) & (ts[d:] - ts[:-d] <= config.max_gap_seconds)
        src += [a[keep], b[keep]]
        dst += [b[keep], a[keep]]
        wts.append(np.full(2 * int(keep.sum()), 1.0 / d))
    s, t = np.concatenate(src), np.concatenate(dst)
    if s.size == 0:
        return np.zeros(size + 1, dtype=np.int64), np.zeros(0, dtype=np.int64), np.zeros(0)
    keys, inverse = np.unique(s * size + t, return_inverse=True)
    counts = np.bincount(inverse, weights=np.concatenate(wts))
    s, t = keys // size, keys % size
    n = np.bincount(items, minlength=size).astype(np.float64)
    score = counts / (n[s] ** (1.0 - config.alpha) * n[t] ** config.alpha)
    order = np.lexsort((t, -score, s))
    s, t, score = s[order], t[order], score[order]
    starts = np.concatenate(([0], np.cumsum(np.bincount(s, minlength=size))[:-1]))
    keep = (np.arange(s.size) - starts[s]) < config.neighbours
    s, t, score = s[keep], t[keep], score[keep]
    indptr = np.concatenate(([0], np.cumsum(np.bincount(s, minlength=size)))).astype(np.int64)
    return indptr, t.astype(np.int64), score


class InteractionIndex:
    """Popularity and co-occurrence over an event history, and the `ItemContext` they make.

    Example:
        >>> from datetime import UTC, datetime
        >>> from contracts import Event
        >>> t = datetime(2024, 1, 1, tzinfo=UTC)
        >>> evs = [Event(event_id=f"e{n}", user_id="u", item_id=i, type="view", ts=t) for n, i in enumerate("ab")]
        >>> InteractionIndex.build(evs).item_context().cooccurring["a"]
        [('b', 1.0)]
    """

    def __init__(
        self,
        vocab: list[str],
        popularity: np.ndarray,
        neighbours: NeighbourTable,
        catalog: Mapping[str, Item],
        config: IndexConfig,
    ) -> None:
        """Use `InteractionIndex.build`; this stores already computed parts."""
        self.vocab = vocab
        self.popularity = popularity  # (V,) decayed popularity per vocabulary index
        self.neighbours = neighbours
        self.catalog = catalog
        self.config = config

    @classmethod
    def build(
        cls, events: Iterable[Event], catalog: Mapping[str, Item] | None = None, config: IndexConfig | None = None
    ) -> InteractionIndex:
        """Index `events` (any order); the vocabulary is the catalog plus every item seen in an event."""
        config = config or IndexConfig()
        catalog = catalog or {}
        vocab = list(catalog)
        index = {item: i for i, item in enumerate(vocab)}
        cols = _columns(events, index, vocab)
        size = len(vocab)
        popularity = _popularity(cols, size, config.popularity_half_life_seconds)
        indptr, indices, weights = _cooccurrence(cols, size, config)
        return cls(vocab, popularity, NeighbourTable(vocab, indptr, indices, weights), catalog, config)

    def item_context(self, unavailable: Iterable[str] = ()) -> ItemContext:
        """The `ItemContext` a scorer gets; `unavailable` adds to the catalog's unavailable items."""
        top = self.config.top_popular
        order = np.argsort(-self.popularity, kind="stable")[:top]
        popular = [(self.vocab[i], float(self.popularity[i])) for i in order.tolist() if self.popularity[i] > 0]
        categories = [self.catalog[item].category if item in self.catalog else None for item in self.vocab]
        item_category = {item: c for item, c in zip(self.vocab, categories, strict=True) if c is not None}
        titles = {item: entry.title for item, entry in self.catalog.items() if entry.title}
        hidden = frozenset(item for item, entry in self.catalog.items() if not entry.available)
        return ItemContext(
            popular=popular,
            popular_by_category=CategoryPopularity(self.vocab, categories, self.popularity, top),
            cooccurring=self.neighbours,
            item_category=item_category,
            item_title=titles,
            unavailable=hidden | frozenset(unavailable),
        )
