"""The worker's wiring: resources, the serving pair, the `Pipeline` over them and the retrying batch runner (no
Faust in here)."""

from __future__ import annotations

import asyncio
import gc
import logging
from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TypeVar

from redis.exceptions import RedisError

from contracts import Recommendation, Settings
from feature_store import FeatureConfig, FeatureStore, StoreClient, store_client
from model.exclude import ExcludeCurrentItem
from model.incremental import encoder_stats
from model.scoring import Scorer
from streams.batch import BatchConfig, BatchOutcome, Pipeline, merge_outcomes
from streams.metrics import WorkerMetrics
from streams.serving import ServingModel, baseline_serving
from streams.settle import Backoff, Settler
from streams.validation import EventLimits, RawRecord, processing_failed

__all__ = ["Runtime", "gc_paused"]

log = logging.getLogger(__name__)
R = TypeVar("R")
T = TypeVar("T")


@contextmanager
def gc_paused() -> Iterator[None]:
    """No automatic garbage collection inside the block (one micro-batch, from take to delivery).

    A batch keeps ~50 k container objects alive at its peak (explanations, candidates, records), so the collector
    (threshold 50 k, `streamrec worker`) ran about once per batch and scanned them all: ~40 ms of ~200 ms of CPU
    per batch of 256 events in `bench/pipeline.py`'s conditions. Almost all of them are freed by reference counting
    once the batch is delivered, so collecting between batches finds little to scan. Cyclic garbage made inside
    waits until then; nesting is fine (only the outermost block turns collection back on).
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass
class Runtime:
    """Everything a batch needs; clients are created on first use and closed by `close()`.

    `serving` (scorer + explainer) is replaced as one by `swap` (hot model updates); a batch reads it once, and
    there is no separate scorer or explainer accessor, so no caller can pair one model's scorer with another's
    explainer.
    """

    settings: Settings
    serving: ServingModel = field(default_factory=baseline_serving)
    metrics: WorkerMetrics = field(default_factory=WorkerMetrics)
    max_backoff_seconds: float = 5.0
    _store: FeatureStore | None = None
    _redis: StoreClient | None = None

    def __post_init__(self) -> None:
        """Derive the batch config from settings; announce the served version."""
        self.batch_config = BatchConfig(top_k=self.settings.top_k, limits=EventLimits.from_settings(self.settings))
        self.metrics.model_info.labels(version=self.serving.version).set(1)

    def ranker(self, serving: ServingModel) -> Scorer:
        """`serving`'s scorer under the serving policy: without the trigger item (`exclude_current_item`)."""
        return ExcludeCurrentItem(serving.scorer) if self.settings.exclude_current_item else serving.scorer

    def pipeline(self) -> Pipeline:
        """The pipeline over the current serving pair (read once), its ranker under the serving policy."""
        serving = self.serving
        ranked = ServingModel(self.ranker(serving), serving.explainer, serving.metrics)
        return Pipeline(self.store, ranked, _utcnow, self.batch_config)

    def swap(self, serving: ServingModel) -> None:
        """Serve `serving` from the next batch on (in-flight batches finish on the old pair)."""
        old = self.serving
        self.serving = serving  # one reference assignment: batches see the old pair or the new one
        if old.version != serving.version:
            self.metrics.model_info.remove(old.version)
        self.metrics.model_info.labels(version=serving.version).set(1)

    @property
    def store(self) -> FeatureStore:
        """The feature store (Redis client created lazily, on the running loop)."""
        if self._store is None:
            self._redis = store_client(self.settings.redis_url.get_secret_value(), cluster=self.settings.redis_cluster)
            s = self.settings
            config = FeatureConfig(max_events=s.recent_events, user_ttl_seconds=s.user_ttl_days * 86400)
            self._store = FeatureStore(self._redis, config)
        return self._store

    async def redis_reachable(self, timeout: float = 1.0) -> bool:
        """Whether Redis answers a PING within `timeout` seconds (for /healthz: without Redis no batch commits)."""
        try:
            _ = self.store  # creates the client on first use
            assert self._redis is not None
            return bool(await asyncio.wait_for(self._redis.ping(), timeout))
        except (TimeoutError, RedisError, OSError):
            return False

    async def close(self) -> None:
        """Close the Redis client."""
        if self._redis is not None:
            await self._redis.aclose()
            self._redis, self._store = None, None

    def settler(
        self,
        attempt: Callable[[Sequence[R]], Awaitable[T]],
        poison: Callable[[R, BaseException], Awaitable[T]],
        merge: Callable[[T, T], T],
    ) -> Settler[R, T]:
        """A `Settler` with this worker's backoff, counting retries in `streamrec_batch_retries_total`."""
        return Settler(attempt, poison, merge, lambda _: self.metrics.retries.inc(), Backoff(self.max_backoff_seconds))

    async def run_batch(
        self,
        records: Sequence[RawRecord],
        arrived: Sequence[float],
        deliver: Callable[[BatchOutcome], Awaitable[None]],
    ) -> BatchOutcome:
        """Process and `deliver` a batch until every record is settled (`streams.settle`): applied and delivered,
        or dead-lettered. Transient failures are retried with backoff, never skipped."""

        async def attempt(part: Sequence[tuple[RawRecord, float]]) -> BatchOutcome:
            pipeline = self.pipeline()  # one read of `serving`: the whole part uses one model and its explainer
            outcome = await pipeline.process([r for r, _ in part], [t for _, t in part])
            await deliver(outcome)
            return outcome

        async def poison(item: tuple[RawRecord, float], error: BaseException) -> BatchOutcome:
            outcome = BatchOutcome(dead_letters=[processing_failed(item[0], error, _utcnow())])
            await deliver(outcome)
            return outcome

        outcome = await self.settler(attempt, poison, merge_outcomes).settle(list(zip(records, arrived, strict=True)))
        self._observe(len(records), outcome)
        return outcome

    def _observe(self, size: int, outcome: BatchOutcome) -> None:
        m = self.metrics
        m.events_in.inc(size)
        m.batches.inc()
        m.batch_size.observe(size)
        m.events_applied.inc(len(outcome.applied))
        m.events_duplicate.inc(len(outcome.duplicates))
        for stage, seconds in outcome.stage_seconds.items():
            m.stage_seconds.labels(stage=stage).observe(seconds)
        for stage, seconds in outcome.stage_cpu_seconds.items():
            m.stage_cpu_seconds.labels(stage=stage).observe(seconds)
        for rec in outcome.recommendations:
            m.recommendation_latency.observe(rec.latency_ms / 1000.0)
        for letter in outcome.dead_letters:
            m.dead_letters.labels(reason=letter.reason.value).inc()
        cache = encoder_stats(self.serving.scorer)
        if cache is not None:
            m.encoder_rows.labels(result="hit").set(cache.hits)
            m.encoder_rows.labels(result="miss").set(cache.misses)

    async def recommend_now(self, user_id: str, k: int) -> Recommendation | None:
        """Score one user on demand (the query API, `Pipeline.recommend`); None for a user without events."""
        found = await self.pipeline().recommend([user_id], k)
        return found[0] if found else None
