"""The learner's promotion gate: candidate vs serving vs anchor on the same prequential targets.

Targets are the newest held-back events of a cycle (scored with the state each user had just before the event,
never trained on before being scored: test-then-train), restricted to "next-new" targets
(`model.targets.next_new_points`). On those targets, per-target NDCG@10 of the candidate, the serving model and
the anchor (the last model promoted by a full `streamrec train`, recorded in the model store) is computed, and:

1. a paired bootstrap of the per-target differences candidate − serving gives the mean difference and a
   one-sided (1 − alpha) upper bound; the candidate is refused when that bound is below zero (it is
   significantly worse than what serves);
2. the candidate is refused when its mean NDCG@10 is below the anchor's by more than `anchor_margin`, so small,
   individually insignificant losses cannot ratchet quality down cycle after cycle.

`decide` is the rule on per-target values (pure, no model); `gate` ranks with the three models and calls it.

Example:
    >>> import numpy as np
    >>> cfg = GateConfig(min_points=4, bootstrap_samples=200)
    >>> worse = decide(np.zeros(50), np.ones(50), np.ones(50), cfg, 50)
    >>> worse.promote, worse.reason.split(":")[0]
    (False, 'significantly worse than serving')
    >>> decide(np.ones(50), np.ones(50), np.ones(50), cfg, 50).promote
    True
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from model.continual import ListsTop, ndcg_values
from model.cycle_config import GateConfig
from model.metrics import bootstrap_ci
from model.splits import TestPoint
from model.targets import next_new_points

__all__ = ["GateConfig", "GateResult", "decide", "gate"]


@dataclass(frozen=True, slots=True)
class GateResult:
    """The decision and every number it rests on."""

    promote: bool
    reason: str
    points: int  # next-new targets compared (0: no decision)
    held_back: int  # held-back targets before the next-new rule
    candidate_ndcg: float
    serving_ndcg: float
    anchor_ndcg: float  # NaN without an anchor
    diff_mean: float  # mean of candidate - serving per target
    diff_low: float  # one-sided (1 - alpha) bounds of that mean (paired bootstrap)
    diff_high: float

    def metrics(self) -> dict[str, float]:
        """Flat numbers for `ModelUpdate.metrics` and the manifest (NaN values left out: JSON has none)."""
        values = {
            "ndcg@10": self.candidate_ndcg,
            "serving_ndcg@10": self.serving_ndcg,
            "anchor_ndcg@10": self.anchor_ndcg,
            "gate_diff_mean": self.diff_mean,
            "gate_diff_low": self.diff_low,
            "gate_diff_high": self.diff_high,
            "gate_points": float(self.points),
            "gate_held_back": float(self.held_back),
        }
        return {k: v for k, v in values.items() if math.isfinite(v)}


def _no_decision(reason: str, held_back: int) -> GateResult:
    nan = math.nan
    return GateResult(False, reason, 0, held_back, nan, nan, nan, nan, nan, nan)


def decide(
    candidate: np.ndarray, serving: np.ndarray, anchor: np.ndarray | None, config: GateConfig, held_back: int
) -> GateResult:
    """The gate rule (module docstring) on per-target NDCG@10 values, all (N,) on the same targets."""
    n = len(candidate)
    if n < max(config.min_points, 1):
        return _no_decision(f"only {n} next-new held-back targets (< {config.min_points})", held_back)
    if len(serving) != n or (anchor is not None and len(anchor) != n):
        msg = f"gate values must be paired: {n} candidate, {len(serving)} serving targets"
        raise ValueError(msg)
    cand, serv = float(np.mean(candidate)), float(np.mean(serving))
    anch = float(np.mean(anchor)) if anchor is not None else math.nan
    diff = np.asarray(candidate, dtype=np.float64) - np.asarray(serving, dtype=np.float64)
    mean, low, high = bootstrap_ci(diff, n=config.bootstrap_samples, alpha=2 * config.alpha, seed=config.seed)

    def result(promote: bool, reason: str) -> GateResult:
        return GateResult(promote, reason, n, held_back, cand, serv, anch, mean, low, high)

    numbers = f"candidate {cand:.4f}, serving {serv:.4f}, anchor {anch:.4f}, diff {mean:+.4f} [{low:+.4f}, {high:+.4f}]"
    if not math.isfinite(cand):
        return result(False, f"candidate NDCG@10 is not finite: {numbers}")
    if high < 0.0:
        return result(False, f"significantly worse than serving: {numbers} on {n} targets")
    if anchor is not None and cand < anch - config.anchor_margin:
        return result(False, f"worse than the anchor by more than {config.anchor_margin}: {numbers} on {n} targets")
    return result(True, f"not worse: {numbers} on {n} targets")


def gate(
    candidate: ListsTop, serving: ListsTop, anchor: ListsTop | None, points: Sequence[TestPoint], config: GateConfig
) -> GateResult:
    """Score the newest next-new targets of `points` with the three models and `decide`.

    `anchor` None: no anchor recorded (the anchor check is skipped); `anchor is serving`: scored once.
    """
    targets = next_new_points(points)[-config.max_points :]
    if len(targets) < config.min_points:
        return decide(np.zeros(len(targets)), np.zeros(len(targets)), None, config, len(points))
    cand = ndcg_values(candidate, targets)
    serv = ndcg_values(serving, targets)
    anch = None if anchor is None else serv if anchor is serving else ndcg_values(anchor, targets)
    return decide(cand, serv, anch, config, len(points))
