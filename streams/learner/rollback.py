"""Automatic rollback rule: a new version's online effects significantly below its parent's.

Inputs are the per-version tallies of `streams.learner.effects.OnlineEffects.snapshot()["versions"]`
(impressions, clicks, purchases). For each watched rate (CTR = clicks / impressions, conversion =
purchases / impressions) a one-sided two-proportion z-test (pooled variance) asks whether the child's rate is
below the parent's; the child is rolled back when any watched rate is, at level `alpha`, once both versions have
at least `min_impressions`. A version is watched for `window_seconds` after it was written; after that it is
considered confirmed (its parent's numbers grow stale). `judge` is the pure rule; `check_and_roll_back` applies
it to the model store with a compare-and-set on `CURRENT` (the learner publishes the resulting `ModelUpdate`).

Example:
    >>> parent = {"impressions": 1000.0, "clicks": 200.0, "purchases": 20.0}
    >>> child = {"impressions": 1000.0, "clicks": 20.0, "purchases": 18.0}
    >>> d = judge(child, parent, RollbackConfig())
    >>> d.roll_back, d.metric
    (True, 'ctr')
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from statistics import NormalDist
from typing import Any

from model.store import CurrentChanged, ModelStore
from streams.learner.settings import RollbackConfig

__all__ = ["RollbackConfig", "RollbackDecision", "RollbackOutcome", "check_and_roll_back", "judge"]

_COUNTS = {"ctr": "clicks", "conversion": "purchases"}


@dataclass(frozen=True, slots=True)
class RollbackDecision:
    """Whether to roll back, why, and the numbers of the deciding (or closest) test."""

    roll_back: bool
    reason: str
    metric: str | None = None
    child_rate: float = math.nan
    parent_rate: float = math.nan
    z: float = math.nan

    def as_dict(self) -> dict[str, float | str | bool | None]:
        """JSON-friendly form (for `learner.jsonl` and the `ModelUpdate` metrics)."""
        return {"roll_back": self.roll_back, "reason": self.reason, "metric": self.metric,
                "child_rate": self.child_rate, "parent_rate": self.parent_rate, "z": self.z}  # fmt: skip


def _z(child_hits: float, child_n: float, parent_hits: float, parent_n: float) -> float:
    """Two-proportion z statistic (child - parent) with pooled variance; 0.0 when both rates are 0 or 1."""
    pooled = (child_hits + parent_hits) / (child_n + parent_n)
    variance = pooled * (1.0 - pooled) * (1.0 / child_n + 1.0 / parent_n)
    if variance <= 0.0:
        return 0.0
    return (child_hits / child_n - parent_hits / parent_n) / math.sqrt(variance)


def judge(
    child: Mapping[str, float] | None, parent: Mapping[str, float] | None, config: RollbackConfig
) -> RollbackDecision:
    """Roll back `child` to `parent`? (module docstring); None tallies: not measured yet."""
    n_child = float((child or {}).get("impressions", 0.0))
    n_parent = float((parent or {}).get("impressions", 0.0))
    if child is None or parent is None or min(n_child, n_parent) < config.min_impressions:
        return RollbackDecision(False, f"too few impressions ({n_child:.0f} vs parent {n_parent:.0f})")
    critical = NormalDist().inv_cdf(config.alpha)  # negative
    worst: RollbackDecision | None = None
    for metric in config.metrics:
        hits = _COUNTS[metric]
        c, p = float(child.get(hits, 0.0)), float(parent.get(hits, 0.0))
        z = _z(c, n_child, p, n_parent)
        rates = f"{metric} {c / n_child:.4f} vs parent {p / n_parent:.4f} (z={z:.2f}, critical {critical:.2f})"
        decision = RollbackDecision(z < critical, rates, metric, c / n_child, p / n_parent, z)
        if decision.roll_back:
            return decision
        if worst is None or z < worst.z:
            worst = decision
    assert worst is not None  # noqa: S101 (at least one metric is watched)
    return RollbackDecision(False, f"no significant drop: {worst.reason}", *_numbers(worst))


def _numbers(d: RollbackDecision) -> tuple[str | None, float, float, float]:
    return d.metric, d.child_rate, d.parent_rate, d.z


@dataclass(frozen=True, slots=True)
class RollbackOutcome:
    """What `check_and_roll_back` did: the decision, the versions involved and whether `CURRENT` moved."""

    decision: RollbackDecision
    child: str
    parent: str
    rolled_back: bool  # CURRENT moved from child to parent (compare-and-set succeeded)

    def as_dict(self) -> dict[str, Any]:
        """The `learner.jsonl` line's fields."""
        return {"version": self.child, "to": self.parent, "rolled_back": self.rolled_back} | self.decision.as_dict()

    def metrics(self) -> dict[str, float]:
        """The numbers for the rollback's `ModelUpdate.metrics`."""
        d = self.decision
        return {"rollback_child_rate": d.child_rate, "rollback_parent_rate": d.parent_rate, "rollback_z": d.z}


def check_and_roll_back(
    store: ModelStore, versions: Mapping[str, Mapping[str, float]], config: RollbackConfig, now: datetime
) -> RollbackOutcome | None:
    """Judge the serving version against its parent and, if it must go, compare-and-set `CURRENT` back.

    Returns None when there is nothing to judge (empty store, no parent, outside the watch window, or the parent
    is gone); the outcome otherwise. A concurrent change of `CURRENT` wins: then `rolled_back` is False.
    """
    child = store.current()
    if child is None:
        return None
    manifest = store.manifest(child)
    parent = manifest.parent_version
    if parent is None or (now - manifest.created_at).total_seconds() > config.window_seconds:
        return None
    decision = judge(versions.get(child), versions.get(parent), config)
    if not decision.roll_back:
        return RollbackOutcome(decision, child, parent, False)
    try:
        store.set_current(parent, action="auto-rollback", expected=child, note={"reason": decision.reason})
    except CurrentChanged:
        return RollbackOutcome(decision, child, parent, False)
    return RollbackOutcome(decision, child, parent, True)
