"""Candidates and ranking features of the two-stage model, one user at a time (numpy, no torch).

Candidates: the union of the top-`depth` lists of the transformer, the transition scores (`model.transitions`),
V-SKNN (`model.sknn`), co-occurrence (`ItemContext.cooccurring`) and the user's own distinct earlier items
(newest first), without the current item (never served, `model.exclude`) and blocked items. All indices are
rows of the `CountParts` vocabulary (the items of the training events).

With item texts, the text neighbours (`model.text_candidates`) are a fifth list, and the text neighbours among
the items without events a sixth; they are the only sources that can name an item without events (the count
vocabulary then also holds the catalog's items without events).

Features (`FEATURES`, one row per candidate): per source the score (log-scaled and relative to the user's best),
its position in that source's list (log1p, `depth` when unlisted) and a listed flag; transition counts from the
current item (count, conditional probability, reverse count) and from the last 3 distinct items; repeat
features (in history, events ago, interaction count, last event type, seconds since); item popularity (training
count, recent decayed popularity from `ItemContext.popular`); session length and the gap between its last two
events; category features (same category as the current item, share of the last 10 events in its category,
the user's decayed category affinity; zero without categories); text cosine to the user's recent items (zero
without texts). Scales are logarithmic so one standardisation
fits every dataset.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp

from contracts import EventType
from model.count_parts import CountParts
from model.scoring import UserState
from model.sessions import context_items, top_rows

__all__ = ["FEATURES", "CandidateSet", "Sources", "build_candidates", "category_codes"]

FEATURES: tuple[str, ...] = (
    "t_logp", "t_gap", "t_rank", "t_listed",
    "tr_log", "tr_share", "tr_rank", "tr_listed",
    "last_log", "last_prob", "last3_log", "rev_log",
    "sk_log", "sk_rel", "sk_rank", "sk_listed",
    "co_log", "co_rel", "co_rank", "co_listed",
    "hist_in", "hist_ago", "hist_count", "hist_view", "hist_click", "hist_cart", "hist_purchase", "hist_secs",
    "prev_item", "pop_log", "pop_recent", "sess_len", "sess_gap", "cat_same", "cat_share", "cat_affinity",
    "tx_sim", "tx_rank", "tx_listed", "txn_rank", "txn_listed",
)  # fmt: skip
_COL = {name: n for n, name in enumerate(FEATURES)}
_TYPE_COL = {
    EventType.VIEW: "hist_view",
    EventType.CLICK: "hist_click",
    EventType.ADD_TO_CART: "hist_cart",
    EventType.PURCHASE: "hist_purchase",
}


@dataclass(frozen=True, slots=True)
class Sources:
    """The per-user inputs that do not come from `CountParts`."""

    t_logp: np.ndarray | None  # (V,) transformer log-probability per count row (-inf: blocked), None without one
    co_rows: Sequence[int]  # co-occurrence list, best first (count rows)
    co_scores: Sequence[float]  # their scores
    recent_popularity: np.ndarray  # (V,) decayed popularity per count row (0 when not in `ItemContext.popular`)
    blocked: np.ndarray  # (V,) bool: unavailable or just bought
    category: Mapping[str, str] = field(default_factory=dict)  # item id -> category (`ItemContext.item_category`)
    t_top: np.ndarray | None = None  # the `depth` largest `t_logp` rows in any order (one batched top-k), if known
    # `category` per count row as codes (-1: none) and code by name; built once per batch (`category_codes`)
    codes: tuple[np.ndarray, Mapping[str, int]] | None = None
    # text neighbours (`model.text_candidates`): (V,) cosine to the user's recent items' texts, and the list score
    # (the same without the user's own recent items); None without item texts
    text_sim: np.ndarray | None = None
    text_listed: np.ndarray | None = None


def category_codes(
    category: Mapping[str, str], index: Mapping[str, int], size: int
) -> tuple[np.ndarray, dict[str, int]]:
    """(size,) category code of each count row (-1: none) and the code of each category name."""
    codes = np.full(size, -1, dtype=np.int64)
    names: dict[str, int] = {}
    for item_id, kind in category.items():
        row = index.get(item_id)
        if row is not None:
            codes[row] = names.setdefault(kind, len(names))
    return codes, names


@dataclass(frozen=True, slots=True)
class CandidateSet:
    """One user's candidates and their features."""

    rows: np.ndarray  # (n,) count rows
    features: np.ndarray  # (n, len(FEATURES)) float32


@dataclass(frozen=True, slots=True)
class _History:
    """Per item of the user's events: latest position, count, latest type and time."""

    last: dict[int, int]
    count: dict[int, int]
    kind: dict[int, EventType]
    ts: dict[int, float]
    newest_first: list[int]  # distinct items, newest first


def _history(user: UserState, index: Mapping[str, int]) -> _History:
    last: dict[int, int] = {}
    count: dict[int, int] = {}
    kind: dict[int, EventType] = {}
    ts: dict[int, float] = {}
    for position, event in enumerate(user.events):
        row = index.get(event.item_id) if event.item_id is not None else None
        if row is None:
            continue
        last[row], kind[row], ts[row] = position, event.type, event.ts.timestamp()
        count[row] = count.get(row, 0) + 1
    newest_first = sorted(last, key=lambda r: -last[r])
    return _History(last, count, kind, ts, newest_first)


def _top_finite(scores: np.ndarray, k: int, top: np.ndarray | None = None) -> np.ndarray:
    """Indices of the `k` largest finite entries, best first (ties: lower index); `top`: those k, unordered."""
    if top is not None:
        finite: np.ndarray = top[np.isfinite(scores[top])]
    else:
        finite = np.flatnonzero(np.isfinite(scores))
        if finite.size > k:
            finite = finite[np.argpartition(-scores[finite], k - 1)[:k]]
    ordered: np.ndarray = finite[np.lexsort((finite, -scores[finite]))]
    return ordered


def _weighted_rows(matrix: sp.csr_matrix, rows: Sequence[int], weights: np.ndarray, size: int) -> np.ndarray:
    """(size,) sum of weights[k] * matrix[rows[k]], from the CSR arrays (scipy's row slicing cost ~100 µs a call).

    Counts times powers of two add exactly, so this equals the matrix product bit for bit.
    """
    out = np.zeros(size)
    indptr, indices, data = matrix.indptr, matrix.indices, matrix.data
    for row, weight in zip(rows, weights.tolist(), strict=True):
        start, end = indptr[row], indptr[row + 1]
        out[indices[start:end]] += data[start:end] * weight
    return out


def _positions(listed: np.ndarray, cands: np.ndarray, size: int, depth: int) -> np.ndarray:
    """Position of each candidate in `listed` (`depth` when absent)."""
    at = np.full(size, depth, dtype=np.float64)
    at[listed[:depth]] = np.arange(min(depth, len(listed)))
    out: np.ndarray = at[cands]
    return out


def _union(lists: Sequence[np.ndarray | Sequence[int]], exclude: np.ndarray) -> np.ndarray:
    """Distinct rows of `lists` in first-seen order, without `exclude` (bool mask)."""
    merged = np.concatenate([np.asarray(x, dtype=np.int64) for x in lists])
    _, first = np.unique(merged, return_index=True)
    merged = merged[np.sort(first)]
    kept: np.ndarray = merged[~exclude[merged]]
    return kept


def build_candidates(user: UserState, parts: CountParts, sources: Sources, depth: int = 50) -> CandidateSet:
    """The candidates of `user` and their features (module docstring)."""
    size = len(parts.vocab)
    hist = _history(user, parts.index)
    context = [r for r, _ in context_items(user, parts.index, 5)]
    current = parts.index.get(user.events[-1].item_id or "") if user.events else None
    tr = _weighted_rows(parts.transitions, context, 0.5 ** np.arange(len(context)), size)
    sk = parts.sknn.item_scores(user)
    sk = np.zeros(size) if sk is None else sk
    t = sources.t_logp if sources.t_logp is not None else np.zeros(size)
    lists = {
        "t": _top_finite(t, depth, sources.t_top) if sources.t_logp is not None else np.zeros(0, dtype=np.int64),
        "tr": top_rows(tr, depth),
        "sk": top_rows(sk, depth),
        "co": np.asarray(sources.co_rows[:depth], dtype=np.int64),
        "tx": top_rows(sources.text_listed, depth) if sources.text_listed is not None else np.zeros(0, np.int64),
        "txn": _new_neighbours(parts, sources, depth),
    }
    exclude = sources.blocked.copy()
    if current is not None:
        exclude[current] = True
    cands = _union([*lists.values(), hist.newest_first[:depth]], exclude)
    out = np.zeros((len(cands), len(FEATURES)), dtype=np.float64)
    if len(cands):
        _source_features(out, cands, lists, t, tr, sk, sources, size, depth)
        _transition_features(out, cands, parts, context, current)
        _user_features(out, cands, user, hist, parts, sources)
        _category_features(out, cands, user, parts, sources)
    return CandidateSet(cands, out.astype(np.float32))


def _new_neighbours(parts: CountParts, sources: Sources, depth: int) -> np.ndarray:
    """The text neighbours among items without training events: known items crowd them out of the "tx" list
    (on Online Retail it covered a third of the cold targets), and these are the only candidates they have."""
    if sources.text_listed is None:
        return np.zeros(0, dtype=np.int64)
    return top_rows(np.where(parts.item_counts == 0, sources.text_listed, 0.0), depth)


def _source_features(
    out: np.ndarray,
    cands: np.ndarray,
    lists: Mapping[str, np.ndarray],
    t: np.ndarray,
    tr: np.ndarray,
    sk: np.ndarray,
    sources: Sources,
    size: int,
    depth: int,
) -> None:
    for name in ("t", "tr", "sk", "co", "tx", "txn"):
        rank = _positions(lists[name], cands, size, depth)
        out[:, _COL[f"{name}_rank"]] = np.log1p(rank)
        out[:, _COL[f"{name}_listed"]] = rank < depth
    logp = t[cands]
    out[:, _COL["t_logp"]] = logp
    out[:, _COL["t_gap"]] = logp - logp.max()
    total = tr.sum()
    out[:, _COL["tr_log"]] = np.log1p(tr[cands])
    out[:, _COL["tr_share"]] = tr[cands] / total if total > 0 else 0.0
    best = sk.max() if sk.size else 0.0
    out[:, _COL["sk_log"]] = np.log1p(sk[cands])
    out[:, _COL["sk_rel"]] = sk[cands] / best if best > 0 else 0.0
    co = np.zeros(size)
    co[np.asarray(sources.co_rows, dtype=np.int64)] = np.asarray(sources.co_scores, dtype=np.float64)
    best_co = co.max() if co.size else 0.0
    out[:, _COL["co_log"]] = np.log1p(np.maximum(co[cands], 0.0))
    out[:, _COL["co_rel"]] = co[cands] / best_co if best_co > 0 else 0.0
    if sources.text_sim is not None:
        out[:, _COL["tx_sim"]] = sources.text_sim[cands]


def _transition_features(
    out: np.ndarray, cands: np.ndarray, parts: CountParts, context: list[int], current: int | None
) -> None:
    size = len(parts.vocab)
    if current is not None:
        row = _weighted_rows(parts.transitions, [current], np.ones(1), size)
        degree = parts.out_degree[current]
        out[:, _COL["last_log"]] = np.log1p(row[cands])
        out[:, _COL["last_prob"]] = row[cands] / degree if degree > 0 else 0.0
        out[:, _COL["rev_log"]] = np.log1p(_weighted_rows(parts.reverse, [current], np.ones(1), size)[cands])
    if context:
        last3 = _weighted_rows(parts.transitions, context[:3], np.ones(min(3, len(context))), size)
        out[:, _COL["last3_log"]] = np.log1p(last3[cands])


def _user_features(
    out: np.ndarray, cands: np.ndarray, user: UserState, hist: _History, parts: CountParts, sources: Sources
) -> None:
    n = len(user.events)
    now = user.events[-1].ts.timestamp() if n else 0.0
    earlier = [r for r in hist.newest_first if user.events and r != parts.index.get(user.events[-1].item_id or "")]
    previous = earlier[0] if earlier else None
    at = {row: c for c, row in enumerate(cands.tolist())}  # candidate row -> its line in `out`
    for row, last in hist.last.items():
        c = at.get(row)
        if c is None:
            continue
        out[c, _COL["hist_in"]] = 1.0
        out[c, _COL["hist_ago"]] = np.log1p(n - 1 - last)
        out[c, _COL["hist_count"]] = np.log1p(hist.count[row])
        out[c, _COL["hist_secs"]] = np.log1p(max(0.0, now - hist.ts[row]))
        column = _TYPE_COL.get(hist.kind[row])
        if column is not None:
            out[c, _COL[column]] = 1.0
    if previous is not None and previous in at:
        out[at[previous], _COL["prev_item"]] = 1.0
    out[:, _COL["pop_log"]] = np.log1p(parts.item_counts[cands])
    out[:, _COL["pop_recent"]] = np.log1p(sources.recent_popularity[cands])
    out[:, _COL["sess_len"]] = np.log1p(n)
    if n > 1:
        out[:, _COL["sess_gap"]] = np.log1p(max(0.0, now - user.events[-2].ts.timestamp()))


def _category_features(
    out: np.ndarray, cands: np.ndarray, user: UserState, parts: CountParts, sources: Sources
) -> None:
    category = sources.category
    if not category:
        return
    codes, names = sources.codes or category_codes(category, parts.index, len(parts.vocab))
    recent = [category.get(e.item_id) for e in user.events[-10:] if e.item_id is not None]
    current = recent[-1] if recent and user.events[-1].item_id is not None else None
    per_code = np.zeros((3, len(names) + 1))  # same-as-current, share of recent, affinity; last column: none
    if current is not None and current in names:
        per_code[0, names[current]] = 1.0
    for kind in set(recent):
        if kind is not None and kind in names:
            per_code[1, names[kind]] = recent.count(kind) / len(recent)
    for kind, value in user.category_affinity.items():
        if kind in names:
            per_code[2, names[kind]] = np.log1p(max(0.0, value))
    kinds = codes[cands]  # -1 (no category) reads the last column, all zeros
    out[:, _COL["cat_same"]] = per_code[0, kinds]
    out[:, _COL["cat_share"]] = per_code[1, kinds]
    out[:, _COL["cat_affinity"]] = per_code[2, kinds]
