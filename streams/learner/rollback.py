"""Automatic rollback rule: a new version's online effects significantly below its parent's.

Inputs are the per-version tallies of `streams.learner.effects.OnlineEffects.snapshot()["versions"]`
(impressions, clicks, purchases). For each watched rate (CTR = clicks / impressions, conversion =
purchases / impressions) a one-sided Fisher exact test asks whether the child's rate is below the parent's:
given the h = c + p hits of both, the child's c is hypergeometric (h hits among n_c + n_p impressions, n_c of
them the child's) if the rates are equal, p-value P(X <= c). It is exact on the few hits a new version has
(the z approximation rolled back on 0 vs 2 clicks) and agrees with the z-test on large counts.

The rule runs every few seconds while the data grows, so it limits how often it may look (a test repeated at
every check would reject an equal child most of the time sooner or later): a version is tested once per
*look*, look j when its impressions first reach `min_impressions * 2**j`, at level alpha * 6 / (pi * (j+1))**2
split evenly over the watched rates (the levels of all looks and rates sum to alpha, so an equal child is rolled
back with probability <= alpha over its whole watch; the slow decay keeps late looks, which have the data,
able to decide). `RollbackWatch` remembers the looks taken. A version is watched for
`window_seconds` after it was written; after that it is considered confirmed (its parent's numbers grow stale).
`judge` is the pure rule; `check_and_roll_back` applies it to the model store with a compare-and-set on
`CURRENT` (the learner publishes the resulting `ModelUpdate`). Left as is: the parent's numbers come from the
time it served, so a drift of the stream between the two periods reads as a difference (a concurrent split of
the traffic between versions would remove that).

Example:
    >>> parent = {"impressions": 1000.0, "clicks": 200.0, "purchases": 20.0}
    >>> child = {"impressions": 1000.0, "clicks": 20.0, "purchases": 18.0}
    >>> d = judge(child, parent, RollbackConfig())
    >>> d.roll_back, d.metric
    (True, 'ctr')
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, MutableMapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from scipy.stats import hypergeom

from model.store import CurrentChanged, ModelStore
from streams.learner.settings import RollbackConfig

__all__ = [
    "RollbackConfig",
    "RollbackDecision",
    "RollbackOutcome",
    "RollbackWatch",
    "check_and_roll_back",
    "judge",
    "look_index",
]

_COUNTS = {"ctr": "clicks", "conversion": "purchases"}


@dataclass(frozen=True, slots=True)
class RollbackDecision:
    """Whether to roll back, why, and the numbers of the deciding (or closest) test."""

    roll_back: bool
    reason: str
    metric: str | None = None
    child_rate: float = math.nan
    parent_rate: float = math.nan
    z: float = math.nan  # the two-proportion z statistic, for reading (the decision is the exact test's)
    p_value: float = math.nan  # of the exact one-sided test
    level: float = math.nan  # what the p-value had to be below at this look

    def as_dict(self) -> dict[str, float | str | bool | None]:
        """JSON-friendly form (for `learner.jsonl` and the `ModelUpdate` metrics)."""
        return {"roll_back": self.roll_back, "reason": self.reason, "metric": self.metric,
                "child_rate": self.child_rate, "parent_rate": self.parent_rate, "z": self.z,
                "p_value": self.p_value, "level": self.level}  # fmt: skip


def _z(child_hits: float, child_n: float, parent_hits: float, parent_n: float) -> float:
    """Two-proportion z statistic (child - parent) with pooled variance; 0.0 when both rates are 0 or 1."""
    pooled = (child_hits + parent_hits) / (child_n + parent_n)
    variance = pooled * (1.0 - pooled) * (1.0 / child_n + 1.0 / parent_n)
    if variance <= 0.0:
        return 0.0
    return (child_hits / child_n - parent_hits / parent_n) / math.sqrt(variance)


def _p_lower(child_hits: float, child_n: float, parent_hits: float, parent_n: float) -> float:
    """One-sided Fisher exact p-value of "the child's rate is below the parent's"."""
    hits = round(child_hits + parent_hits)
    if hits == 0:
        return 1.0
    return float(hypergeom.cdf(round(child_hits), round(child_n + parent_n), hits, round(child_n)))


def look_index(impressions: float, config: RollbackConfig) -> int:
    """Which look `impressions` of a child have reached: j once >= min_impressions * 2**j; -1 before the first."""
    if impressions < config.min_impressions:
        return -1
    return int(math.floor(math.log2(impressions / config.min_impressions)))


def judge(
    child: Mapping[str, float] | None,
    parent: Mapping[str, float] | None,
    config: RollbackConfig,
    look: int | None = None,
) -> RollbackDecision:
    """Roll back `child` to `parent`? (module docstring); None tallies: not measured yet.

    `look`: the look this test is (default: the one the child's impressions have reached); its level is
    alpha * 6 / (pi * (look+1))**2 / (rates watched).
    """
    n_child = float((child or {}).get("impressions", 0.0))
    n_parent = float((parent or {}).get("impressions", 0.0))
    if child is None or parent is None or min(n_child, n_parent) < config.min_impressions:
        return RollbackDecision(False, f"too few impressions ({n_child:.0f} vs parent {n_parent:.0f})")
    j = look_index(n_child, config) if look is None else look
    level = config.alpha * 6.0 / (math.pi * (j + 1)) ** 2 / len(config.metrics)
    worst: RollbackDecision | None = None
    for metric in config.metrics:
        hits = _COUNTS[metric]
        c, p = float(child.get(hits, 0.0)), float(parent.get(hits, 0.0))
        z, p_value = _z(c, n_child, p, n_parent), _p_lower(c, n_child, p, n_parent)
        rates = (
            f"{metric} {c / n_child:.4f} vs parent {p / n_parent:.4f} ({c:.0f}/{n_child:.0f} vs {p:.0f}/"
            f"{n_parent:.0f}, p={p_value:.2g}, level {level:.2g} at look {j})"
        )
        decision = RollbackDecision(p_value < level, rates, metric, c / n_child, p / n_parent, z, p_value, level)
        if decision.roll_back:
            return decision
        if worst is None or p_value < worst.p_value:
            worst = decision
    assert worst is not None  # noqa: S101 (at least one metric is watched)
    return dataclasses.replace(worst, reason=f"no significant drop: {worst.reason}")


@dataclass
class RollbackWatch:
    """The looks already taken per version, so each look is tested once (module docstring)."""

    looks: MutableMapping[str, int] = field(default_factory=dict)

    def next_look(self, version: str, impressions: float, config: RollbackConfig) -> int | None:
        """The look to test now, or None when the child has reached no new one since the last test."""
        j = look_index(impressions, config)
        if j < 0 or j <= self.looks.get(version, -1):
            return None
        return j

    def taken(self, version: str, look: int) -> None:
        """Record that `version` was tested at `look`."""
        self.looks[version] = max(look, self.looks.get(version, -1))


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
        return {
            "rollback_child_rate": d.child_rate,
            "rollback_parent_rate": d.parent_rate,
            "rollback_z": d.z,
            "rollback_p_value": d.p_value,
        }


def check_and_roll_back(
    store: ModelStore,
    versions: Mapping[str, Mapping[str, float]],
    config: RollbackConfig,
    now: datetime,
    watch: RollbackWatch | None = None,
) -> RollbackOutcome | None:
    """Judge the serving version against its parent and, if it must go, compare-and-set `CURRENT` back.

    Returns None when there is nothing to judge (empty store, no parent, outside the watch window, the parent
    is gone, or with `watch`: no new look since the last test); the outcome otherwise. A concurrent change of
    `CURRENT` wins: then `rolled_back` is False. Without `watch` every call is a test at the look reached.
    """
    child = store.current()
    if child is None:
        return None
    manifest = store.manifest(child)
    parent = manifest.parent_version
    if parent is None or (now - manifest.created_at).total_seconds() > config.window_seconds:
        return None
    tallies, parent_tallies = versions.get(child), versions.get(parent)
    look: int | None = None
    if watch is not None:
        parent_n = float((parent_tallies or {}).get("impressions", 0.0))
        look = watch.next_look(child, float((tallies or {}).get("impressions", 0.0)), config)
        if look is None or parent_n < config.min_impressions:
            return None
        watch.taken(child, look)
    decision = judge(tallies, parent_tallies, config, look)
    if not decision.roll_back:
        return RollbackOutcome(decision, child, parent, False)
    try:
        store.set_current(parent, action="auto-rollback", expected=child, note={"reason": decision.reason})
    except CurrentChanged:
        return RollbackOutcome(decision, child, parent, False)
    return RollbackOutcome(decision, child, parent, True)
