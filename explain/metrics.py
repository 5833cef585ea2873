"""Pure fidelity and exposure metrics of `explain.evaluate` (numpy in, floats out; unit-tested).

Fidelity (per explained (user, item) pair, then pooled):
    deletion curve   score after deleting the top-m attributed events, m = 0..L
    insertion curve  score with only the top-m attributed events kept, m = 0..L
    normalisation    every score difference is divided by the mean |full score - empty-history score| over pairs
                     (a ratio of means: pairs whose history barely matters cannot blow it up)
    deletion AUC     mean over m = 1..L of the normalised drop `full - deleted(m)`   (higher = more faithful)
    insertion AUC    mean over m = 1..L of the normalised gain `inserted(m) - empty` (higher = more faithful)
    comprehensiveness / sufficiency (ERASER, AOPC over bins of the events): normalised `full - without(top)` /
    `full - only(top)`; higher comprehensiveness and lower sufficiency are better.

Exposure: Gini of recommendation counts over the catalog, catalog coverage, and shares by popularity decile.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

__all__ = [
    "ERASER_BINS",
    "curve_auc",
    "decile_shares",
    "eraser_sizes",
    "gini",
    "normaliser",
    "shares",
]

ERASER_BINS: tuple[float, ...] = (0.01, 0.05, 0.1, 0.2, 0.5)  # fractions of the user's events (at least 1)


def normaliser(full: np.ndarray, empty: np.ndarray, floor: float = 1e-9) -> float:
    """Mean |full - empty| over pairs (the unit of every normalised score difference)."""
    return max(float(np.mean(np.abs(np.asarray(full) - np.asarray(empty)))) if len(full) else 0.0, floor)


def curve_auc(curves: np.ndarray, valid: np.ndarray, scale: float) -> float:
    """Mean of `curves` (N, L) over valid points (N, L bool), divided by `scale`; nan if nothing is valid.

    Pass `full - deleted(m)` for the deletion AUC and `inserted(m) - empty` for the insertion AUC.
    """
    valid = np.asarray(valid, dtype=bool)
    if not valid.any():
        return float("nan")
    per_pair = np.nanmean(np.where(valid, curves, np.nan), axis=1)  # (N,) mean over each pair's own m range
    return float(np.nanmean(per_pair) / scale)


def eraser_sizes(n_events: int, bins: Sequence[float] = ERASER_BINS) -> list[int]:
    """How many top events each ERASER bin removes/keeps for a user with `n_events` events (>= 1 each)."""
    return [max(1, min(n_events, round(b * n_events))) for b in bins] if n_events else []


def gini(counts: Sequence[float] | np.ndarray) -> float:
    """Gini coefficient of non-negative counts (0 = equal exposure, -> 1 = all on one item)."""
    x = np.sort(np.asarray(counts, dtype=np.float64))
    n = x.shape[0]
    if n == 0 or x.sum() <= 0:
        return 0.0
    ranks = np.arange(1, n + 1)
    return float((2.0 * (ranks * x).sum()) / (n * x.sum()) - (n + 1) / n)


def shares(counts: Mapping[str, float], groups: Mapping[str, str], top: int = 10) -> dict[str, float]:
    """Share of the total count per group (`groups`: key -> group; unknown keys -> '(none)').

    The `top` largest groups are kept by name, the rest pooled as '(other)'.
    """
    pooled: dict[str, float] = {}
    for key, count in counts.items():
        group = groups.get(key, "(none)")
        pooled[group] = pooled.get(group, 0.0) + count
    total = sum(pooled.values()) or 1.0
    ranked = sorted(pooled.items(), key=lambda p: (-p[1], p[0]))
    out = {g: c / total for g, c in ranked[:top]}
    rest = sum(c for _, c in ranked[top:])
    if rest:
        out["(other)"] = rest / total
    return out


def decile_shares(popularity: Mapping[str, float], counts: Mapping[str, float]) -> list[float]:
    """Share of `counts` falling in each popularity decile of the items in `popularity` (decile 1 = most popular).

    Items are ranked by `popularity` (ties by id) and cut into 10 equal-size groups; counts of items outside
    `popularity` are ignored.
    """
    order = sorted(popularity, key=lambda item: (-popularity[item], item))
    decile = {item: min(9, i * 10 // max(1, len(order))) for i, item in enumerate(order)}
    totals = [0.0] * 10
    for item, count in counts.items():
        if item in decile:
            totals[decile[item]] += count
    whole = sum(totals) or 1.0
    return [t / whole for t in totals]
