"""The pipeline, without Faust: validate → write features → read → score → explain (`Pipeline`).

The Faust agent (`streams/agents/recommend.py`) only feeds records in and sends the outcome out, and the HTTP
view (`streams/web.py`) asks `Pipeline.recommend` for one user, so all of the logic here is tested on the real
Redis without a broker.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from contracts import DeadLetter, Explanation, Recommendation, RecommendedItem
from contracts.codec import EventFields
from explain.explainer import Explainer
from feature_store import FeatureStore, Position
from model.scoring import ItemContext, ScoredItem, Scorer, UserState
from streams.serving import ServingModel
from streams.validation import EventLimits, RawRecord, decode_event

__all__ = [
    "BatchConfig",
    "BatchOutcome",
    "Pipeline",
    "Trigger",
    "build_recommendation",
    "merge_outcomes",
    "process_batch",
    "with_catalog",
]


@dataclass(frozen=True)
class BatchConfig:
    """Per-batch knobs (from `contracts.Settings`)."""

    top_k: int = 10
    limits: EventLimits = field(default_factory=EventLimits)


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


@dataclass(frozen=True, slots=True)
class Trigger:
    """The event a recommendation answers: the user's latest event of the batch."""

    event_id: str
    ts: datetime  # event time (the explanations' "now")
    arrived: float  # `time.monotonic()` at which it reached the worker (for `latency_ms`)


@dataclass(frozen=True)
class Pipeline:
    """The one code path from records to recommendations: the agent's micro-batches and the HTTP view use it.

    `ingest` validates records and writes their features; `recommend` reads users' features, scores, explains
    and builds the output records. `serving` (scorer + explainer) is fixed for the pipeline's life, so one batch
    is scored and explained by one model.

    Args:
        store: The feature store.
        serving: The scorer (under the serving policy) and its explainer.
        clock: Wall clock (tz-aware); used for `generated_at` and the future-timestamp check only.
        config: Batch knobs.
        run: Runs the blocking scoring call, default `loop.run_in_executor(None, ...)`.
    """

    store: FeatureStore
    serving: ServingModel
    clock: Callable[[], datetime]
    config: BatchConfig = field(default_factory=BatchConfig)
    run: Callable[..., Any] | None = None

    async def process(self, records: Sequence[RawRecord], arrived: Sequence[float]) -> BatchOutcome:
        """`ingest` then `recommend`: one recommendation per distinct valid user, triggered by their latest event."""
        out = BatchOutcome()
        triggers = await self.ingest(records, arrived, out)
        if triggers:
            out.recommendations = await self.recommend(list(triggers), self.config.top_k, triggers, out)
        return out

    async def ingest(
        self, records: Sequence[RawRecord], arrived: Sequence[float], out: BatchOutcome
    ) -> dict[str, Trigger]:
        """Validate `records` (invalid ones to `out.dead_letters`) and apply the valid ones to the feature store.

        Returns each user's trigger (their latest valid event), in first-seen order; `out` gets the applied and
        duplicate event ids and the stage times.
        """
        with _stage(out, "decode"):
            events, positions, triggers = self._decode(records, arrived, out)
        if events:
            with _stage(out, "features_write"):
                result = await self.store.apply_events(events, positions)
            out.applied, out.duplicates = list(result.applied), list(result.duplicates)
        return triggers

    def _decode(
        self, records: Sequence[RawRecord], arrived: Sequence[float], out: BatchOutcome
    ) -> tuple[list[EventFields], list[Position], dict[str, Trigger]]:
        limits, now = self.config.limits, self.clock()
        events: list[EventFields] = []  # compiled-codec `WireEvent`s (a record only the pydantic path took: `Event`)
        positions: list[Position] = []  # where each event was read: the store's exactly-once watermarks
        triggers: dict[str, Trigger] = {}
        for record, t in zip(records, arrived, strict=True):
            checked = decode_event(record, limits, now=now)
            if isinstance(checked, DeadLetter):
                out.dead_letters.append(checked)
            else:
                events.append(checked)
                positions.append(Position(record.topic, record.partition, record.offset))
                triggers[checked.user_id] = Trigger(checked.event_id, checked.ts, t)
        return events, positions, triggers

    async def recommend(
        self,
        users: Sequence[str],
        k: int,
        triggers: Mapping[str, Trigger] | None = None,
        out: BatchOutcome | None = None,
    ) -> list[Recommendation]:
        """Top-`k` recommendations with explanations for `users`, in their order.

        With `triggers` (the batch path) every user is answered, triggered by that event. Without (on demand),
        a user's trigger is their newest stored event, and a user without events is left out.
        """
        out = out if out is not None else BatchOutcome()
        with _stage(out, "features_read"):
            states, context = await self.store.read_batch(users)
        if triggers is None:
            states = [s for s in states if s.events]
        if not states:
            return []
        scorer, explainer = self.serving.scorer, self.serving.explainer
        with _stage(out, "score"):
            scored = await self._score(scorer, states, context, k)
        with _stage(out, "features_read"):
            context = await with_catalog(self.store, context, scored)
        with _stage(out, "explain"):
            whens = None if triggers is None else [triggers[s.user_id].ts for s in states]
            explanations = explainer.explain(states, context, scored, now=whens)
        generated, done = self.clock(), time.monotonic()
        recommendations = []
        for state, ranked, why in zip(states, scored, explanations, strict=True):
            if triggers is None:
                trigger, latency_ms = state.events[-1].event_id, 0.0
            else:
                trigger, latency_ms = triggers[state.user_id].event_id, (done - triggers[state.user_id].arrived) * 1e3
            recommendations.append(
                build_recommendation(
                    state.user_id, trigger, ranked, why, scorer.version, generated, max(0.0, latency_ms)
                )
            )
        return recommendations

    async def _score(
        self, scorer: Scorer, states: Sequence[UserState], context: ItemContext, k: int
    ) -> list[list[ScoredItem]]:
        if self.run is None:
            loop = asyncio.get_running_loop()
            return await loop.run_in_executor(None, scorer.score, states, context, k)
        scored: list[list[ScoredItem]] = await self.run(scorer.score, states, context, k)
        return scored


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
    """Process one micro-batch (`Pipeline.process`); one recommendation per distinct valid user.

    Args:
        records: Raw records, in partition order.
        arrived: `time.monotonic()` at which each record reached the worker (for `latency_ms`).
        store, scorer, explainer: The feature store, the current scorer and its explainer.
        config: Batch knobs.
        clock: Wall clock (tz-aware); used for `generated_at` and the future-timestamp check only.
        run: Runs the blocking scoring call, default `loop.run_in_executor(None, ...)`.
    """
    pipeline = Pipeline(store, ServingModel(scorer, explainer), clock, config, run)
    return await pipeline.process(records, arrived)


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
def _stage(out: BatchOutcome, name: str) -> Iterator[None]:
    """Adds the wall time of the block to `out.stage_seconds[name]` and the process CPU time (all threads) to
    `out.stage_cpu_seconds[name]`."""
    wall, cpu = out.stage_seconds, out.stage_cpu_seconds
    start, start_cpu = time.perf_counter(), time.process_time()
    try:
        yield
    finally:
        wall[name] = wall.get(name, 0.0) + time.perf_counter() - start
        cpu[name] = cpu.get(name, 0.0) + time.process_time() - start_cpu
