"""Helpers for tests that run `streamrec worker` subprocesses: start/stop, produce, collect, group assignment.

`answered_exactly_once` is the end of most of them: every user's latest event answered, every event applied
exactly once, the dead letters counted.

`produce` and `collect` connect with the settings' own security (`client_kwargs`), so they also serve the
secured stack (`test_security.py`).
"""

from __future__ import annotations

import asyncio
import json
import random
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from contracts import Event, EventType, Settings
from feature_store import FeatureStore, redis_client
from streamrec.child_processes import free_port, group_assignment, scrape_metrics, worker_env
from streams.kafka_clients import client_kwargs

__all__ = [
    "Worker",
    "WorkerPool",
    "assert_exactly_once",
    "answered_exactly_once",
    "collect",
    "generated_events",
    "group_assignment",
    "produce",
    "produce_events",
    "records",
    "wait_for_answers",
]

_KINDS = [EventType.VIEW] * 6 + [EventType.CLICK, EventType.ADD_TO_CART, EventType.REMOVE_FROM_CART, EventType.PURCHASE]


def generated_events(
    n: int, users: int = 200, items: int = 300, seed: int = 11, prefix: str = "g", start: datetime | None = None
) -> list[Event]:
    """A seeded multi-behaviour stream in event-time order, 2 s apart from `start` (default: two days ago)."""
    rng = random.Random(seed)
    t0 = start or datetime.now(UTC) - timedelta(days=2)
    return [
        Event(
            event_id=f"{prefix}{i}",
            user_id=f"u{rng.randrange(users)}",
            item_id=f"i{int(rng.paretovariate(1.2)) % items}",
            type=rng.choice(_KINDS),
            ts=t0 + timedelta(seconds=2 * i),
        )
        for i in range(n)
    ]


def records(events: Sequence[Event]) -> list[tuple[bytes, bytes | None]]:
    """(value, key) pairs as a shop would produce them (key = user id)."""
    return [(e.model_dump_json().encode(), e.user_id.encode()) for e in events]


@dataclass
class Worker:
    """One `streamrec worker` subprocess and its web port."""

    proc: subprocess.Popen[bytes]
    web_port: int
    log: Path

    async def metric(self, name: str) -> float:
        """Sum of a Prometheus sample family from its `/metrics` (0 when absent or not yet serving)."""
        samples = await scrape_metrics(self.web_port)
        return sum(value for key, value in samples.items() if key == name or key.startswith(name + "{"))


@dataclass
class WorkerPool:
    """Starts workers (distinct web ports, logs under `tmp`); `stop_all` ends the ones still running."""

    tmp: Path
    extra_env: dict[str, str] = field(default_factory=dict)
    workers: list[Worker] = field(default_factory=list)
    loglevel: str = "warning"

    def start(self, settings: Settings) -> Worker:
        """Start one worker on `settings` (topic prefix, Redis DB) with a free web port."""
        port = free_port()
        env = worker_env(settings, port, **self.extra_env)
        log = self.tmp / f"worker{len(self.workers)}.log"
        cmd = [sys.executable, "-m", "streamrec", "worker", "--loglevel", self.loglevel]
        with log.open("wb") as out:  # the child keeps its own descriptor
            proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT, cwd=self.tmp)
        worker = Worker(proc, port, log)
        self.workers.append(worker)
        return worker

    def stop_all(self) -> None:
        """SIGTERM every running worker, SIGKILL after 20 s."""
        for w in self.workers:
            if w.proc.poll() is None:
                w.proc.send_signal(signal.SIGTERM)
        for w in self.workers:
            try:
                w.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                w.proc.kill()
                w.proc.wait()


async def produce(
    settings: Settings, recs: Sequence[tuple[bytes, bytes | None]], rate_per_s: float | None = None
) -> list[tuple[int, int]]:
    """Send records to the events topic (acks=all), optionally paced at `rate_per_s`; their (partition, offset)."""
    producer = AIOKafkaProducer(acks="all", linger_ms=5, **client_kwargs(settings))
    await producer.start()
    start = time.monotonic()
    sent = []
    try:
        for n, (value, key) in enumerate(recs):
            sent.append(await producer.send(settings.topics.events, value, key=key))
            if rate_per_s is not None and n % 50 == 49:
                ahead = start + (n + 1) / rate_per_s - time.monotonic()
                if ahead > 0:
                    await asyncio.sleep(ahead)
        await producer.flush()
        return [(m.partition, m.offset) for m in await asyncio.gather(*sent)]
    finally:
        await producer.stop()


async def produce_events(
    settings: Settings, events: Sequence[Event], rate_per_s: float | None = None
) -> list[tuple[int, int]]:
    """`produce` the events as a shop would (`records`); their (partition, offset)."""
    return await produce(settings, records(events), rate_per_s)


async def collect(
    settings: Settings, done: Callable[[dict[str, Any], list[dict[str, Any]]], bool], timeout_s: float = 120.0
) -> tuple[dict[str, list[dict[str, Any]]], list[dict[str, Any]]]:
    """Read recommendations (per user, in order) and dead letters until `done(latest, letters)` or timeout."""
    consumer = AIOKafkaConsumer(
        settings.topics.recommendations,
        settings.topics.dead_letter,
        auto_offset_reset="earliest",
        group_id=None,
        **client_kwargs(settings),
    )
    await consumer.start()
    recs: dict[str, list[dict[str, Any]]] = {}
    letters: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout_s
    try:
        while time.monotonic() < deadline:
            for tp, messages in (await consumer.getmany(timeout_ms=500)).items():
                for m in messages:
                    doc = json.loads(m.value)
                    if tp.topic == settings.topics.dead_letter:
                        letters.append(doc)
                    else:
                        recs.setdefault(doc["user_id"], []).append(doc)
            if done({u: r[-1] for u, r in recs.items()}, letters):
                break
    finally:
        await consumer.stop()
    return recs, letters


async def wait_for_answers(settings: Settings, users: int, timeout_s: float = 120.0) -> None:
    """Wait (at most `timeout_s`) until `users` users have had a recommendation: a worker is part-way through."""
    await collect(settings, lambda last, _letters: len(last) >= users, timeout_s)


async def answered_exactly_once(
    settings: Settings, events: Sequence[Event], dead_letters: int = 0, timeout_s: float = 120.0
) -> tuple[dict[str, list[dict[str, Any]]], list[dict[str, Any]]]:
    """`collect` until every user of `events` was answered for their latest event (and `dead_letters` dead
    letters arrived), then assert that they were and that every event was applied exactly once
    (`assert_exactly_once`). Returns the recommendations per user and the dead letters."""
    latest = {e.user_id: e.event_id for e in events}

    def answered(last: dict[str, Any], letters: list[dict[str, Any]]) -> bool:
        answers = {u: last.get(u, {}).get("trigger_event_id") for u in latest}
        return len(letters) >= dead_letters and answers == latest

    recs, letters = await collect(settings, answered, timeout_s)
    assert {u: r[-1]["trigger_event_id"] for u, r in recs.items()} == latest  # noqa: S101 (a test helper)
    await assert_exactly_once(settings.redis_url.get_secret_value(), events, cluster=settings.redis_cluster)
    return recs, letters


async def assert_exactly_once(redis_url: str, events: Sequence[Event], *, cluster: bool = False) -> None:
    """Every event was applied to its user's features exactly once (the store's exact audit counters)."""
    client = redis_client(redis_url, cluster=cluster)
    try:
        store = FeatureStore(client)
        per_user: dict[str, int] = {}
        for e in events:
            per_user[e.user_id] = per_user.get(e.user_id, 0) + 1
        wrong = {}
        for user, count in per_user.items():
            stats = await store.user_stats(user)
            if stats.get("applied") != count:
                wrong[user] = (stats.get("applied"), count)
        assert not wrong, f"applied != produced for {len(wrong)} users, e.g. {list(wrong.items())[:5]}"
    finally:
        await client.aclose()
