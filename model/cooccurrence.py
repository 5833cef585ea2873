"""Item-to-item co-occurrence scorer: items that co-occur with the user's recent events.

score(j) = sum over the user's events e of weight(e) * cooc(item(e), j), where weight(e) is event type x recency
(`model.recency`). Evidence = the events that contributed, with their contribution; reason `bought_together` when
the strongest contributing event is a cart or purchase, `similar_to` otherwise.
"""

from __future__ import annotations

import heapq
from collections.abc import Mapping, Sequence
from functools import partial

import numpy as np

from contracts import EventType, ReasonKind
from model.candidates import Candidate, RankingScorer
from model.interactions import NeighbourTable
from model.recency import RecencyConfig, item_label, weight_list
from model.scoring import ItemContext, Pick, ScoredItem, UserState

__all__ = ["CooccurrenceScorer"]

_BASKET = frozenset({EventType.ADD_TO_CART, EventType.PURCHASE})


class _Lookup:
    """Neighbour arrays for one batch; reads `NeighbourTable` arrays directly, converts plain mappings once."""

    def __init__(self, cooccurring: Mapping[str, Sequence[tuple[str, float]]]) -> None:
        self._table = cooccurring if isinstance(cooccurring, NeighbourTable) else None
        self._mapping = cooccurring
        self._index: dict[str, int] = {}
        self._names: list[str] = []
        self._cache: dict[str, tuple[np.ndarray, np.ndarray] | None] = {}

    def arrays(self, item_id: str) -> tuple[np.ndarray, np.ndarray] | None:
        if self._table is not None:
            return self._table.arrays(item_id)
        if item_id not in self._cache:
            pairs = self._mapping.get(item_id) or ()
            idx = [self._intern(name) for name, _ in pairs]
            found = (np.asarray(idx, dtype=np.int64), np.asarray([w for _, w in pairs], dtype=np.float64))
            self._cache[item_id] = found if idx else None
        return self._cache[item_id]

    def _intern(self, name: str) -> int:
        index = self._index.get(name)
        if index is None:
            index = self._index[name] = len(self._names)
            self._names.append(name)
        return index

    def names(self) -> Sequence[str]:
        """Index -> item id for every index `arrays` has returned so far."""
        return self._table.vocab if self._table is not None else self._names


class _Rows:
    """The batch's (candidate, source position, contribution) rows, grouped by candidate in their original order.

    Converted to Python lists on the first lookup (explanations are built one candidate at a time; a numpy
    fancy-index per lookup cost more than the whole conversion).
    """

    __slots__ = ("_lists", "contrib", "order", "pos", "starts")

    def __init__(self, order: np.ndarray, starts: np.ndarray, pos: np.ndarray, contrib: np.ndarray) -> None:
        self.order, self.starts, self.pos, self.contrib = order, starts, pos, contrib
        self._lists: tuple[list[int], list[int], list[float]] | None = None

    def of(self, j: int) -> tuple[list[int], list[float]]:
        """Source positions and contributions of unique candidate `j`, in row order."""
        if self._lists is None:
            self._lists = (self.starts.tolist(), self.pos[self.order].tolist(), self.contrib[self.order].tolist())
        starts, pos, contrib = self._lists
        return pos[starts[j] : starts[j + 1]], contrib[starts[j] : starts[j + 1]]


_Sources = list[tuple[str, float, list[tuple[int, float]]]]  # (item, summed weight, its (event index, weight)s)
# `_ranked`'s result: lookup, sources per user, rows, ranked entries, their totals and neighbours, user bounds
_Ranked = tuple[_Lookup, list[_Sources], _Rows, list[int], list[float], list[int], list[int]]


class CooccurrenceScorer(RankingScorer):
    """Ranks neighbours of the user's recent items (see module docstring)."""

    label = "cooccurrence-v1"

    def __init__(
        self,
        recency: RecencyConfig | None = None,
        max_sources: int = 20,
        max_neighbours: int = 50,
        max_evidence: int = 5,
    ) -> None:
        """Args: event weighting; distinct recent items used; neighbours read per item; evidence kept per item."""
        self._recency = recency or RecencyConfig()
        self._max_sources = max_sources
        self._max_neighbours = max_neighbours
        self._max_evidence = max_evidence

    def rank(self, users: Sequence[UserState], items: ItemContext, k: int) -> list[list[Candidate]]:
        """Top-`k` co-occurring items per user (fewer if their items have few neighbours), explanations deferred."""
        ranked = self._ranked(users, items)
        if ranked is None:
            return [[] for _ in users]
        lookup, sources, rows, _, totals, cands, _ = ranked
        names = lookup.names()
        out: list[list[Candidate]] = []
        for user, user_sources, picked in zip(users, sources, _picks(ranked, users, items, k), strict=True):
            row = []
            for j in picked:
                pick = Pick(user, items, names[cands[j]], totals[j])
                row.append(Candidate(pick.item_id, pick.score, partial(self._explain, pick, user_sources, rows, j)))
            out.append(row)
        return out

    def top(self, users: Sequence[UserState], items: ItemContext, k: int) -> list[list[tuple[str, float]]]:
        """`rank`'s (item id, score) lists without explanations (the two-stage model's candidate source)."""
        ranked = self._ranked(users, items)
        if ranked is None:
            return [[] for _ in users]
        names, totals, cands = ranked[0].names(), ranked[4], ranked[5]
        return [[(names[cands[j]], totals[j]) for j in picked] for picked in _picks(ranked, users, items, k)]

    def _ranked(self, users: Sequence[UserState], items: ItemContext) -> _Ranked | None:
        """The batch scored in a few numpy calls (None without any neighbour).

        Every user's (neighbour, contribution) rows are concatenated, keyed by (user, neighbour), summed in their
        original order (`bincount`) and ranked by (-total, neighbour index) per user. Returns the lookup, the
        users' sources, the rows, and as lists: the ranked unique (user, neighbour) keys, their totals, their
        neighbour indices and each user's bounds in the ranking.
        """
        lookup = _Lookup(items.cooccurring)
        sources = [self._sources(user) for user in users]
        cap = self._max_neighbours
        found_idx, found_w, weights, owners, positions = [], [], [], [], []
        for u, user_sources in enumerate(sources):
            for at, (item, weight, _) in enumerate(user_sources):
                found = lookup.arrays(item)
                if found is not None:
                    found_idx.append(found[0][:cap])
                    found_w.append(found[1][:cap])
                    weights.append(weight)
                    owners.append(u)
                    positions.append(at)
        if not found_idx:
            return None
        sizes = np.fromiter((a.size for a in found_idx), dtype=np.int64, count=len(found_idx))
        cands = np.concatenate(found_idx).astype(np.int64, copy=False)
        contrib = np.concatenate(found_w).astype(np.float64, copy=False) * np.repeat(np.asarray(weights), sizes)
        pos = np.repeat(np.asarray(positions, dtype=np.int64), sizes)
        span = int(cands.max()) + 1
        keys = np.repeat(np.asarray(owners, dtype=np.int64), sizes) * span + cands
        order = np.argsort(keys, kind="stable")  # rows grouped by (user, neighbour), original order within
        sorted_keys = keys[order]
        new = np.empty(sorted_keys.size, dtype=bool)
        new[0] = True
        np.not_equal(sorted_keys[1:], sorted_keys[:-1], out=new[1:])
        starts = np.append(np.flatnonzero(new), sorted_keys.size)
        uniq = sorted_keys[starts[:-1]]
        inverse = np.empty(keys.size, dtype=np.int64)
        inverse[order] = np.cumsum(new) - 1
        totals = np.bincount(inverse, weights=contrib)  # sequential sums, as one user's bincount would give
        owner_of, cand_of = np.divmod(uniq, span)
        # Per user, best total first; ties by neighbour index (uniq ascends within a user; stable sorts keep it).
        ranked = np.argsort(-totals, kind="stable")
        ranked = ranked[np.argsort(owner_of[ranked], kind="stable")]
        bounds = np.searchsorted(owner_of[ranked], np.arange(len(users) + 1)).tolist()
        rows = _Rows(order, starts, pos, contrib)
        return lookup, sources, rows, ranked.tolist(), totals.tolist(), cand_of.tolist(), bounds

    def _sources(self, user: UserState) -> _Sources:
        """Distinct items of the user's events with summed positive weight and their (index, weight) events."""
        weights = weight_list(user, self._recency)
        by_item: dict[str, list[tuple[int, float]]] = {}
        for index, event in enumerate(user.events):
            weight = weights[index]
            if event.item_id is not None and weight > 0.0:
                by_item.setdefault(event.item_id, []).append((index, weight))
        sources = [(item, sum(w for _, w in evs), evs) for item, evs in by_item.items()]
        sources.sort(key=lambda s: -s[1])
        return sources[: self._max_sources]

    def _explain(self, pick: Pick, sources: _Sources, rows: _Rows, j: int) -> ScoredItem:
        source_pos, source_contrib = rows.of(j)  # the sources this candidate came from
        # A source item's contribution is split over its events in proportion to their weights. Walk sources by
        # contribution and stop once no event of the next source can beat the current top `max_evidence`.
        best: list[tuple[float, int]] = []  # min-heap of (contribution, event index)
        ordered = sorted(zip(source_contrib, source_pos, strict=True), key=lambda r: -r[0])
        for contrib, pos in ordered:
            if len(best) == self._max_evidence and contrib <= best[0][0]:
                break
            _, source_weight, events = sources[pos]
            for index, w in events:
                entry = (contrib * w / source_weight, index)
                if len(best) < self._max_evidence:
                    heapq.heappush(best, entry)
                elif entry[0] > best[0][0]:
                    heapq.heapreplace(best, entry)
        evidence = tuple((index, weight) for weight, index in sorted(best, key=lambda e: (-e[0], e[1])))
        top = pick.user.events[evidence[0][0]]
        label = item_label(top.item_id or "", pick.items)
        if top.type in _BASKET:
            return pick.with_reason(ReasonKind.BOUGHT_TOGETHER, f"often bought with {label}", evidence)
        return pick.with_reason(ReasonKind.SIMILAR_TO, f"similar to {label}", evidence)


def _picks(ranked: _Ranked, users: Sequence[UserState], items: ItemContext, k: int) -> list[list[int]]:
    """Per user, the ranked (user, neighbour) entries served: the first `k` not blocked among the best 4k + 16."""
    lookup, _, _, order, _, cands, bounds = ranked
    depth, names, unavailable = 4 * k + 16, lookup.names(), items.unavailable
    out: list[list[int]] = []
    for u, user in enumerate(users):
        picked, bought = [], user.purchased_recently
        for j in order[bounds[u] : min(bounds[u + 1], bounds[u] + depth)]:
            item_id = names[cands[j]]
            if item_id in unavailable or item_id in bought:  # `is_blocked`, inlined (the hot loop)
                continue
            picked.append(j)
            if len(picked) == k:
                break
        out.append(picked)
    return out
