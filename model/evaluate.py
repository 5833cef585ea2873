"""Offline evaluation: full-catalog ranking of next items, several scorers in one run, with bootstrap CIs.

Protocol (shared by `streamrec evaluate` and the online learner):

1. A `model.splits.Split` gives training events, the catalog and test points (`UserState` + next item).
2. Item-side features (`ItemContext`: popularity, co-occurrence, categories, unavailable items) are built once
   from the training events with `model.interactions.InteractionIndex`.
3. Each scorer ranks the whole catalog for every test point (top `max(K)` kept; no sampled negatives; items the
   user has seen stay eligible, so repeats are valid hits). Under `next-new` (`model.splits.is_target`) the
   universe is the items of the training events (other catalog items are unavailable; a target outside it is a
   miss) and every scorer is wrapped in `model.exclude.ExcludeCurrentItem`, as in serving: the current item is
   never a `next-new` target.
4. Metrics HR@10, NDCG@10, HR@20, Recall@20, MRR@20 per test point; mean and percentile-bootstrap 95 % interval,
   overall, per target event type and for cold targets (items absent from the training events).

Plugging in a model: pass a `Scorer`, or a factory `(train_events, catalog) -> Scorer` that trains on the
split's training events, in the `scorers` mapping of `evaluate`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from contracts import Event, Item
from model.exclude import ExcludeCurrentItem
from model.interactions import IndexConfig, InteractionIndex
from model.metrics import bootstrap_ci, hit_rate_at_k, mrr_at_k, ndcg_at_k, recall_at_k
from model.scoring import ItemContext, Scorer
from model.splits import Split, TestPoint

__all__ = [
    "METRICS",
    "EvalConfig",
    "EvalReport",
    "MetricValue",
    "ScorerFactory",
    "ScorerReport",
    "evaluate",
    "point_metrics",
    "rank_points",
    "split_context",
]

ScorerFactory = Callable[[Sequence[Event], Mapping[str, Item]], Scorer]

# name -> (metric function, cut-off); the names are the keys of every report.
METRICS: Mapping[str, tuple[Callable[[Sequence[str], str, int], float], int]] = {
    "hr@10": (hit_rate_at_k, 10),
    "ndcg@10": (ndcg_at_k, 10),
    "hr@20": (hit_rate_at_k, 20),  # the cold-target acceptance metric (issue 14)
    "recall@20": (recall_at_k, 20),
    "mrr@20": (mrr_at_k, 20),
}
_DEPTH = max(k for _, k in METRICS.values())


@dataclass(frozen=True, slots=True)
class EvalConfig:
    """Evaluation knobs."""

    batch_size: int = 256  # test points per `Scorer.score` call
    bootstrap: int = 1000  # bootstrap resamples per interval
    alpha: float = 0.05  # 95 % intervals
    seed: int = 0  # bootstrap seed
    index: IndexConfig = field(default_factory=IndexConfig)


@dataclass(frozen=True, slots=True)
class MetricValue:
    """Mean over test points and its bootstrap interval."""

    value: float
    ci_low: float
    ci_high: float


@dataclass(frozen=True, slots=True)
class ScorerReport:
    """Metrics of one scorer, overall and per target event type."""

    name: str
    version: str
    n: int
    metrics: Mapping[str, MetricValue]
    by_event_type: Mapping[str, tuple[int, Mapping[str, MetricValue]]]  # type -> (n, metrics)
    # segment -> (n, metrics): "cold_target" = targets never seen in the training events (new items), if any
    by_segment: Mapping[str, tuple[int, Mapping[str, MetricValue]]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: `{"version", "n", "hr@10": {"value", "ci_low", "ci_high"}, ..., "by_event_type": {...}}`."""
        out: dict[str, Any] = {"version": self.version, "n": self.n}
        out.update({name: _value_dict(v) for name, v in self.metrics.items()})
        out["by_event_type"] = {
            kind: {"n": n, **{name: _value_dict(v) for name, v in metrics.items()}}
            for kind, (n, metrics) in self.by_event_type.items()
        }
        if self.by_segment:
            out["by_segment"] = {
                name: {"n": n, **{m: _value_dict(v) for m, v in metrics.items()}}
                for name, (n, metrics) in self.by_segment.items()
            }
        return out


def _value_dict(value: MetricValue) -> dict[str, float]:
    return {"value": value.value, "ci_low": value.ci_low, "ci_high": value.ci_high}


@dataclass(frozen=True, slots=True)
class EvalReport:
    """One evaluation run."""

    protocol: str
    n_points: int
    n_train_events: int
    n_items: int
    scorers: Sequence[ScorerReport]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form of the whole run."""
        return {
            "protocol": self.protocol,
            "n_points": self.n_points,
            "n_train_events": self.n_train_events,
            "n_items": self.n_items,
            "scorers": {report.name: report.to_dict() for report in self.scorers},
        }


def rank_points(
    scorer: Scorer, points: Sequence[TestPoint], items: ItemContext, batch_size: int = 256
) -> list[list[str]]:
    """Top `max(K)` item ids per test point, in input order."""
    ranked: list[list[str]] = []
    for start in range(0, len(points), batch_size):
        batch = [point.state for point in points[start : start + batch_size]]
        ranked.extend([s.item_id for s in scored] for scored in scorer.score(batch, items, _DEPTH))
    return ranked


def point_metrics(ranked: Sequence[Sequence[str]], targets: Sequence[str]) -> dict[str, np.ndarray]:
    """Per-point values of every metric in `METRICS`; arrays of shape (len(targets),)."""
    return {
        name: np.fromiter((fn(r, t, k) for r, t in zip(ranked, targets, strict=True)), dtype=np.float64)
        for name, (fn, k) in METRICS.items()
    }


def _summarise(values: Mapping[str, np.ndarray], config: EvalConfig) -> dict[str, MetricValue]:
    return {
        name: MetricValue(*bootstrap_ci(v, n=config.bootstrap, alpha=config.alpha, seed=config.seed))
        for name, v in values.items()
    }


def _as_scorer(spec: Scorer | ScorerFactory, split: Split) -> Scorer:
    if hasattr(spec, "score") and hasattr(spec, "version"):
        scorer: Scorer = spec
    else:
        factory: ScorerFactory = spec
        scorer = factory(split.train, split.catalog)
    return ExcludeCurrentItem(scorer) if split.protocol == "next-new" else scorer


def split_context(split: Split, config: IndexConfig | None = None) -> ItemContext:
    """The `ItemContext` of `split`'s training events; under `next-new` only trained items are available."""
    index = InteractionIndex.build(split.train, split.catalog, config)
    outside: set[str] = set()
    if split.protocol == "next-new":
        outside = set(split.catalog) - {e.item_id for e in split.train if e.item_id is not None}
    return index.item_context(unavailable=outside)


def evaluate(
    split: Split,
    scorers: Mapping[str, Scorer | ScorerFactory],
    config: EvalConfig | None = None,
    items: ItemContext | None = None,
) -> EvalReport:
    """Evaluate every scorer on `split`'s test points.

    Args:
        split: Training events, catalog and test points (`model.splits.time_split` / `loo_split`).
        scorers: name -> `Scorer`, or factory `(train_events, catalog) -> Scorer` called once here.
        config: Evaluation knobs.
        items: Item context to score with; default: built from `split.train` with `InteractionIndex`.

    Returns:
        Metrics per scorer, overall and per target event type.
    """
    config = config or EvalConfig()
    if items is None:
        items = split_context(split, config.index)
    targets = [p.target for p in split.points]
    kinds = np.asarray([p.target_type.value for p in split.points])
    trained = {e.item_id for e in split.train if e.item_id is not None}
    cold = np.asarray([p.target not in trained for p in split.points], dtype=bool)
    reports = []
    for name, spec in scorers.items():
        scorer = _as_scorer(spec, split)
        values = point_metrics(rank_points(scorer, split.points, items, config.batch_size), targets)
        by_type = {
            str(kind): (
                int((kinds == kind).sum()),
                _summarise({m: v[kinds == kind] for m, v in values.items()}, config),
            )
            for kind in sorted(set(kinds.tolist()))
        }
        segments = {}
        if cold.any():
            segments["cold_target"] = (int(cold.sum()), _summarise({m: v[cold] for m, v in values.items()}, config))
        summary = _summarise(values, config)
        reports.append(ScorerReport(name, scorer.version, len(targets), summary, by_type, segments))
    n_items = len(trained) if split.protocol == "next-new" else len(set(split.catalog) | trained)
    return EvalReport(split.protocol, len(split.points), len(split.train), n_items, reports)
