"""Prometheus metrics of one worker (own registry: no global state)."""

from __future__ import annotations

import gc
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

__all__ = ["WorkerMetrics"]

_STAGE_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


@dataclass
class WorkerMetrics:
    """Counters and histograms exposed at `/metrics`."""

    registry: CollectorRegistry = field(default_factory=CollectorRegistry)

    def __post_init__(self) -> None:
        """Register every metric in this worker's registry."""
        r = self.registry
        self.events_in = Counter("streamrec_events_in", "Records consumed from the events topic", registry=r)
        self.events_applied = Counter("streamrec_events_applied", "Events newly applied to features", registry=r)
        self.events_duplicate = Counter("streamrec_events_duplicate", "Replayed events (no effect)", registry=r)
        self.batches = Counter("streamrec_batches", "Micro-batches processed", registry=r)
        self.batch_size = Histogram(
            "streamrec_batch_size", "Records per micro-batch", buckets=(1, 4, 16, 64, 128, 256, 512, 1024), registry=r
        )
        self.stage_seconds = Histogram(
            "streamrec_stage_seconds", "Time per batch stage", ["stage"], buckets=_STAGE_BUCKETS, registry=r
        )
        self.stage_cpu_seconds = Histogram(
            "streamrec_stage_cpu_seconds",
            "Process CPU time per batch stage (wall time minus waiting and neighbours on a shared machine)",
            ["stage"],
            buckets=_STAGE_BUCKETS,
            registry=r,
        )
        self.recommendation_latency = Histogram(
            "streamrec_recommendation_latency_seconds",
            "Event arrival to recommendation produced",
            buckets=_STAGE_BUCKETS,
            registry=r,
        )
        self.dead_letters = Counter("streamrec_dead_letters", "Dead-lettered records", ["reason"], registry=r)
        self.retries = Counter("streamrec_batch_retries", "Batch attempts retried after an outage", registry=r)
        self.encoder_rows = Gauge(
            "streamrec_encoder_cache_rows",
            "Users scored from a reused encoder state (hit) or encoded in full (miss), current model",
            ["result"],
            registry=r,
        )
        self.model_info = Gauge("streamrec_model_info", "Serving model version (value 1)", ["version"], registry=r)
        self.gc_pause = Histogram(
            "streamrec_gc_pause_seconds",
            "Garbage-collector passes of this process, by generation (the event loop stops for each)",
            ["generation"],
            buckets=_STAGE_BUCKETS,
            registry=r,
        )

    def observe_gc(self) -> Callable[[], None]:
        """Time every collector pass of this process into `gc_pause` (once per worker process); returns the undo."""
        by_generation = [self.gc_pause.labels(generation=str(g)) for g in range(3)]  # resolved once, not per pass
        started = 0.0

        def callback(phase: str, info: dict[str, Any]) -> None:
            nonlocal started
            if phase == "start":
                started = time.perf_counter()
            else:
                by_generation[info["generation"]].observe(time.perf_counter() - started)

        gc.callbacks.append(callback)
        return lambda: gc.callbacks.remove(callback)
