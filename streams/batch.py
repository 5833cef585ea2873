"""One micro-batch, end to end, without Faust: validate → write features → read → score → explain.

The Faust agent (`streams/agents/recommend.py`, next) only feeds records in and sends the outcome out, so all of
the logic here is tested on the real Redis without a broker.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any

from contracts import DeadLetter, Explanation, Recommendation, RecommendedItem
from contracts.codec import EventFields
from explain.explainer import Explainer
from feature_store import FeatureStore, Position
from model.scoring import ItemContext, ScoredItem, Scorer
from streams.validation import RawRecord, decode_event

__all__ = [
    "BatchConfig",
    "BatchOutcome",
    "build_recommendation",
    "merge_outcomes",
    "process_batch",
    "with_catalog",
]


@dataclass(frozen=True)
class BatchConfig:
    """Per-batch knobs (from `contracts.Settings`)."""

    top_k: int = 10
    max_event_bytes: int = 16384
    max_future_skew: timedelta = timedelta(minutes=5)
    min_event_time: datetime = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass
class BatchOutcome:
    """What a batch produced; every input record is accounted for in exactly one of the first three fields."""

    recommendations: list[Recommendation] = field(default_factory=list)
    dead_letters: list[DeadLetter] = field(default_factory=list)
    duplicates: list[str] = field(default_factory=list)  # replayed event ids (features unchanged)
    applied: list[str] = field(default_factory=list)
    stage_seconds: dict[str, float] = field(default_factory=dict)  # wall clock
    stage_cpu_seconds: dict[str, float] = field(default_factory=dict)  # process CPU (the box may be shared)


def merge_outcomes(a: BatchOutcome, b: BatchOutcome) -> BatchOutcome:
    """The outcome of two parts of a batch settled one after the other (`streams.settle`)."""

    def added(x: dict[str, float], y: dict[str, float]) -> dict[str, float]:
        return {stage: x.get(stage, 0.0) + y.get(stage, 0.0) for stage in x.keys() | y.keys()}

    return BatchOutcome(
        recommendations=a.recommendations + b.recommendations,
        dead_letters=a.dead_letters + b.dead_letters,
        duplicates=a.duplicates + b.duplicates,
        applied=a.applied + b.applied,
        stage_seconds=added(a.stage_seconds, b.stage_seconds),
        stage_cpu_seconds=added(a.stage_cpu_seconds, b.stage_cpu_seconds),
    )


async def with_catalog(
    store: FeatureStore, context: ItemContext, scored: Sequence[Sequence[ScoredItem]]
) -> ItemContext:
    """`context` plus the titles and categories of the scored items (read after scoring, for the explanations)."""
    wanted = {s.item_id for row in scored for s in row}
    titles, categories = await store.catalog(sorted(wanted - context.item_title.keys()))
    if not titles and not categories:
        return context
    return replace(
        context,
        item_title={**context.item_title, **titles},
        item_category={**context.item_category, **categories},
    )


async def process_batch(
    records: Sequence[RawRecord],
    *,
    arrived: Sequence[float],
    store: FeatureStore,
    scorer: Scorer,
    explainer: Explainer,
    config: BatchConfig,
    clock: Callable[[], datetime],
    run: Callable[..., Any] | None = None,
) -> BatchOutcome:
    """Process one micro-batch; one recommendation per distinct valid user, triggered by their latest event.

    Args:
        records: Raw records, in partition order.
        arrived: `time.monotonic()` at which each record reached the worker (for `latency_ms`).
        store, scorer, explainer: The feature store, the current scorer and its explainer.
        config: Batch knobs.
        clock: Wall clock (tz-aware); used for `generated_at` and the future-timestamp check only.
        run: Runs the blocking scoring call, default `loop.run_in_executor(None, ...)`.
    """
    out = BatchOutcome()
    timer = partial(_stage, out.stage_seconds, out.stage_cpu_seconds)
    now = clock()
    events: list[EventFields] = []  # compiled-codec `WireEvent`s (a record only the pydantic path took: `Event`)
    positions: list[Position] = []  # where each event was read: the store's exactly-once watermarks
    trigger: dict[str, tuple[EventFields, float]] = {}  # user -> latest event and its arrival
    with timer("decode"):
        for record, t in zip(records, arrived, strict=True):
            checked = decode_event(
                record,
                max_bytes=config.max_event_bytes,
                max_future_skew=config.max_future_skew,
                now=now,
                min_time=config.min_event_time,
            )
            if isinstance(checked, DeadLetter):
                out.dead_letters.append(checked)
            else:
                events.append(checked)
                positions.append(Position(record.topic, record.partition, record.offset))
                trigger[checked.user_id] = (checked, t)
    if not events:
        return out
    with timer("features_write"):
        result = await store.apply_events(events, positions)
    out.applied, out.duplicates = list(result.applied), list(result.duplicates)
    users = list(trigger)
    with timer("features_read"):
        states, context = await store.read_batch(users)
    with timer("score"):
        if run is None:
            loop = asyncio.get_running_loop()
            scored = await loop.run_in_executor(None, scorer.score, states, context, config.top_k)
        else:
            scored = await run(scorer.score, states, context, config.top_k)
    with timer("features_read"):
        context = await with_catalog(store, context, scored)
    with timer("explain"):
        whens = [trigger[u][0].ts for u in users]
        explanations = explainer.explain(states, context, scored, now=whens)
    generated = clock()
    done = time.monotonic()
    for user, ranked, why in zip(users, scored, explanations, strict=True):
        event, t = trigger[user]
        latency_ms = max(0.0, (done - t) * 1000.0)
        out.recommendations.append(
            build_recommendation(user, event.event_id, ranked, why, scorer.version, generated, latency_ms)
        )
    return out


def build_recommendation(
    user_id: str,
    trigger_event_id: str,
    ranked: Sequence[ScoredItem],
    why: Sequence[Explanation],
    model_version: str,
    generated_at: datetime,
    latency_ms: float,
) -> Recommendation:
    """The output record: ranked items, each with its explanation."""
    items = [
        RecommendedItem(item_id=s.item_id, score=float(s.score), rank=r, explanation=e)
        for r, (s, e) in enumerate(zip(ranked, why, strict=True), start=1)
    ]
    return Recommendation(
        user_id=user_id,
        trigger_event_id=trigger_event_id,
        model_version=model_version,
        generated_at=generated_at,
        latency_ms=latency_ms,
        items=items,
    )


@contextmanager
def _stage(wall: dict[str, float], cpu: dict[str, float], name: str) -> Iterator[None]:
    """Adds the wall time of the block to `wall[name]` and the process CPU time (all threads) to `cpu[name]`."""
    start, start_cpu = time.perf_counter(), time.process_time()
    try:
        yield
    finally:
        wall[name] = wall.get(name, 0.0) + time.perf_counter() - start
        cpu[name] = cpu.get(name, 0.0) + time.process_time() - start_cpu
