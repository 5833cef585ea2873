"""Learned fusion: re-rank the union of several scorers' top lists with a linear model fitted on validation targets.

Every part (e.g. the transformer, transitions, repeat-then-transitions, V-SKNN, co-occurrence) lists its top
`depth` items; each candidate gets three features per part: listed (1/0), reciprocal rank 1 / (1 + rank) and the
part's score min-max scaled within its list (scale-free, so logits and counts mix). The final score is `w · f`;
`fit_weights` learns `w` by a listwise softmax (cross-entropy of the target among the candidates, L2-regularised,
L-BFGS) on validation points, which must come from events the parts were not fitted on.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy.optimize import minimize

from model.scoring import ItemContext, ScoredItem, Scorer, UserState
from model.splits import TestPoint

__all__ = ["N_FEATURES", "RerankScorer", "candidate_features", "fit_weights"]

N_FEATURES = 3  # per part: listed, reciprocal rank, scaled score


def candidate_features(lists: Sequence[Sequence[ScoredItem]]) -> tuple[list[ScoredItem], np.ndarray]:
    """Union of one user's part lists (first-seen order, the first part's explanation) and its (n, 3P) features."""
    first: dict[str, ScoredItem] = {}
    for row in lists:
        for scored in row:
            first.setdefault(scored.item_id, scored)
    position = {item_id: n for n, item_id in enumerate(first)}
    features = np.zeros((len(first), N_FEATURES * len(lists)))
    for p, row in enumerate(lists):
        if not row:
            continue
        scores = np.asarray([s.score for s in row], dtype=np.float64)
        span = float(scores.max() - scores.min())
        scaled = (scores - scores.min()) / span if span > 0 else np.ones_like(scores)
        at = np.asarray([position[s.item_id] for s in row])
        features[at, N_FEATURES * p] = 1.0
        features[at, N_FEATURES * p + 1] = 1.0 / (1.0 + np.arange(len(row)))
        features[at, N_FEATURES * p + 2] = scaled
    return list(first.values()), features


class RerankScorer:
    """`parts` fused by learned weights (module docstring)."""

    def __init__(self, parts: Sequence[tuple[str, Scorer]], weights: np.ndarray, depth: int = 50) -> None:
        """Args: named parts, weights of shape (3 * len(parts),) from `fit_weights`, items asked of each part."""
        if weights.shape != (N_FEATURES * len(parts),):
            msg = f"weights of shape {weights.shape} do not fit {len(parts)} parts"
            raise ValueError(msg)
        self._parts = list(parts)
        self.weights = weights
        self._depth = depth

    @property
    def version(self) -> str:
        """Model version stamped on recommendations."""
        return "rerank(" + "+".join(s.version for _, s in self._parts) + ")"

    def score(self, users: Sequence[UserState], items: ItemContext, k: int) -> list[list[ScoredItem]]:
        """Top-`k` of the candidates by fused score; explanations come from the first part that listed the item."""
        outputs = [scorer.score(users, items, max(k, self._depth)) for _, scorer in self._parts]
        ranked = []
        for u in range(len(users)):
            candidates, features = candidate_features([out[u] for out in outputs])
            fused = features @ self.weights  # (n,)
            order = np.argsort(-fused, kind="stable")[:k]
            ranked.append(
                [
                    ScoredItem(candidates[i].item_id, float(fused[i]), candidates[i].evidence, candidates[i].reasons)
                    for i in order.tolist()
                ]
            )
        return ranked


def fit_weights(
    parts: Sequence[Scorer],
    points: Sequence[TestPoint],
    items: ItemContext,
    depth: int = 50,
    l2: float = 1e-3,
    batch_size: int = 256,
) -> np.ndarray:
    """Weights (3 * len(parts),) maximising the listwise likelihood of each point's target among its candidates.

    Points whose target no part lists carry no signal and are skipped. Raises ValueError if none is left.
    """
    blocks: list[tuple[np.ndarray, int]] = []
    for start in range(0, len(points), batch_size):
        chunk = points[start : start + batch_size]
        outputs = [scorer.score([p.state for p in chunk], items, depth) for scorer in parts]
        for u, point in enumerate(chunk):
            candidates, features = candidate_features([out[u] for out in outputs])
            ids = [c.item_id for c in candidates]
            if point.target in ids:
                blocks.append((features, ids.index(point.target)))
    if not blocks:
        msg = "no validation target is among the candidates: nothing to fit the re-ranker on"
        raise ValueError(msg)
    sizes = np.asarray([len(f) for f, _ in blocks])
    stacked = np.concatenate([f for f, _ in blocks])  # (sum n, 3P)
    offsets = np.concatenate(([0], np.cumsum(sizes)[:-1]))
    gold = offsets + np.asarray([y for _, y in blocks])
    group = np.repeat(np.arange(len(blocks)), sizes)

    def loss(w: np.ndarray) -> tuple[float, np.ndarray]:
        z = stacked @ w  # (sum n,)
        top = np.maximum.reduceat(z, offsets)  # (G,) per point, for a stable log-sum-exp
        e = np.exp(z - top[group])
        total = np.add.reduceat(e, offsets)  # (G,)
        value = float(np.sum(np.log(total) + top - z[gold])) / len(blocks) + l2 * float(w @ w)
        p = e / total[group]  # (sum n,) softmax within each point
        grad = (stacked.T @ p - stacked[gold].sum(0)) / len(blocks) + 2 * l2 * w
        return value, grad

    result = minimize(loss, np.zeros(stacked.shape[1]), jac=True, method="L-BFGS-B")
    weights: np.ndarray = result.x
    return weights
