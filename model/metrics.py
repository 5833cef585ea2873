"""Ranking metrics over ranked lists and target sets, plus bootstrap confidence intervals.

Pure functions shared by the offline evaluation (`model.evaluate`) and the online learner. Every metric takes
one ranked list (best first) and the set of relevant items for one test point and returns a value in [0, 1];
averaging over test points is the caller's job (see `bootstrap_ci` for the interval around that mean).

A single next-item target is a target set of size one: then `recall_at_k == hit_rate_at_k` and `ndcg_at_k` is
`1 / log2(rank + 1)`.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Hashable, Sequence

import numpy as np

__all__ = ["bootstrap_ci", "hit_rate_at_k", "mrr_at_k", "ndcg_at_k", "recall_at_k"]


def _targets(targets: Hashable | Collection[Hashable]) -> frozenset[Hashable]:
    # A bare string is one item id, not a collection of characters.
    if isinstance(targets, str | bytes) or not isinstance(targets, Collection):
        return frozenset((targets,))
    return frozenset(targets)


def _check_k(k: int) -> None:
    if k < 1:
        msg = f"k must be >= 1, got {k}"
        raise ValueError(msg)


def hit_rate_at_k(ranked: Sequence[Hashable], targets: Hashable | Collection[Hashable], k: int) -> float:
    """1.0 if any target is among the first `k` items, else 0.0.

    Args:
        ranked: Item ids, best first.
        targets: The relevant item id, or a collection of them.
        k: Cut-off (>= 1).
    """
    _check_k(k)
    relevant = _targets(targets)
    return 1.0 if any(item in relevant for item in ranked[:k]) else 0.0


def recall_at_k(ranked: Sequence[Hashable], targets: Hashable | Collection[Hashable], k: int) -> float:
    """Share of the distinct targets found among the first `k` items (0.0 when there are no targets)."""
    _check_k(k)
    relevant = _targets(targets)
    if not relevant:
        return 0.0
    found = {item for item in ranked[:k] if item in relevant}
    return len(found) / len(relevant)


def ndcg_at_k(ranked: Sequence[Hashable], targets: Hashable | Collection[Hashable], k: int) -> float:
    """Binary-relevance NDCG@k: DCG of the list divided by the DCG of an ideal list of the same targets.

    A target repeated in `ranked` counts once (at its best position).
    """
    _check_k(k)
    relevant = _targets(targets)
    if not relevant:
        return 0.0
    seen: set[Hashable] = set()
    dcg = 0.0
    for rank, item in enumerate(ranked[:k], start=1):
        if item in relevant and item not in seen:
            seen.add(item)
            dcg += 1.0 / math.log2(rank + 1)
    ideal = sum(1.0 / math.log2(rank + 1) for rank in range(1, min(len(relevant), k) + 1))
    return dcg / ideal


def mrr_at_k(ranked: Sequence[Hashable], targets: Hashable | Collection[Hashable], k: int) -> float:
    """Reciprocal rank of the first target within the first `k` items (0.0 if none)."""
    _check_k(k)
    relevant = _targets(targets)
    for rank, item in enumerate(ranked[:k], start=1):
        if item in relevant:
            return 1.0 / rank
    return 0.0


def bootstrap_ci(
    values: Sequence[float] | np.ndarray, n: int = 1000, alpha: float = 0.05, seed: int = 0
) -> tuple[float, float, float]:
    """Mean of `values` and its percentile-bootstrap `(1 - alpha)` interval.

    Args:
        values: One metric value per test point.
        n: Number of bootstrap resamples.
        alpha: 0.05 gives a 95 % interval.
        seed: Seed of the resampling generator (same inputs + seed = same interval).

    Returns:
        `(mean, low, high)`; all NaN for empty input.
    """
    if n < 1 or not 0.0 < alpha < 1.0:
        msg = f"need n >= 1 and 0 < alpha < 1, got n={n}, alpha={alpha}"
        raise ValueError(msg)
    data = np.asarray(values, dtype=np.float64)
    if data.size == 0:
        return (math.nan, math.nan, math.nan)
    rng = np.random.default_rng(seed)
    # Resample in chunks so memory stays ~O(len(values) * 64) whatever `n` is.
    means = np.empty(n, dtype=np.float64)
    chunk = max(1, 4_000_000 // data.size)
    for start in range(0, n, chunk):
        stop = min(n, start + chunk)
        idx = rng.integers(0, data.size, size=(stop - start, data.size))
        means[start:stop] = data[idx].mean(axis=1)
    low, high = np.quantile(means, [alpha / 2.0, 1.0 - alpha / 2.0])
    return (float(data.mean()), float(low), float(high))
