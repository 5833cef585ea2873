"""`streamrec worker` on the real broker and Redis: every event has its effect once, every user is answered,
every malformed record is dead-lettered with its reason."""

from __future__ import annotations

import gzip
import json
import os
import random
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from contracts import Event, EventType, Settings
from feature_store import FeatureStore
from streamrec.data_import import import_dataset

T0 = datetime.now(UTC) - timedelta(days=2)
KINDS = [EventType.VIEW] * 6 + [EventType.CLICK, EventType.ADD_TO_CART, EventType.REMOVE_FROM_CART, EventType.PURCHASE]

MALFORMED: dict[str, tuple[bytes, bytes | None]] = {
    "undecodable": (b"\xff\xfe\x00binary", b"u1"),
    "schema_violation": (
        json.dumps(
            {"event_id": "m1", "user_id": "u1", "item_id": "i1", "type": "view", "ts": T0.isoformat(), "price": "x"}
        ).encode(),
        b"u1",
    ),  # fmt: skip
    "unknown_type": (json.dumps({"event_id": "m2", "user_id": "u1", "type": "teleport"}).encode(), b"u1"),
    "oversize": (json.dumps({"event_id": "m3", "pad": "x" * 20000}).encode(), b"u1"),
    "missing_item": (
        json.dumps({"event_id": "m4", "user_id": "u1", "type": "purchase", "ts": T0.isoformat()}).encode(),
        b"u1",
    ),  # fmt: skip
    "future_timestamp": (
        json.dumps(
            {
                "event_id": "m5",
                "user_id": "u1",
                "item_id": "i1",
                "type": "view",
                "ts": (datetime.now(UTC) + timedelta(days=3)).isoformat(),
            }
        ).encode(),
        b"u1",
    ),  # fmt: skip
    "naive_timestamp": (
        json.dumps(
            {"event_id": "m6", "user_id": "u1", "item_id": "i1", "type": "view", "ts": "2024-01-01T10:00:00"}
        ).encode(),
        b"u1",
    ),  # fmt: skip
    "missing_key_field": (json.dumps({"user_id": "u1", "item_id": "i1", "type": "view"}).encode(), b"u1"),
    "key_mismatch": (
        json.dumps({"event_id": "m8", "user_id": "u1", "item_id": "i1", "type": "view", "ts": T0.isoformat()}).encode(),
        b"u2",
    ),  # fmt: skip
}


def generated_events(n: int, users: int = 200, items: int = 300, seed: int = 11) -> list[Event]:
    """A seeded multi-behaviour stream in event-time order."""
    rng = random.Random(seed)
    return [
        Event(
            event_id=f"g{i}",
            user_id=f"u{rng.randrange(users)}",
            item_id=f"i{int(rng.paretovariate(1.2)) % items}",
            type=rng.choice(KINDS),
            ts=T0 + timedelta(seconds=2 * i),
        )
        for i in range(n)
    ]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _worker_env(settings: Settings) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        STREAMREC_KAFKA_BOOTSTRAP=settings.kafka_bootstrap,
        STREAMREC_REDIS_URL=settings.redis_url.get_secret_value(),
        STREAMREC_TOPIC_PREFIX=settings.topic_prefix,
        STREAMREC_WEB_PORT=str(_free_port()),
        # A killed worker's partitions go to the next one after this session timeout (Faust default: 60 s).
        BROKER_SESSION_TIMEOUT="10",
    )
    return env


@pytest.fixture
def start_worker(tmp_path: Path) -> Iterator[Callable[[Settings], subprocess.Popen[bytes]]]:
    """Start `streamrec worker` subprocesses; each is stopped (SIGTERM, then SIGKILL) after the test."""
    procs: list[subprocess.Popen[bytes]] = []

    def start(settings: Settings) -> subprocess.Popen[bytes]:
        log = open(tmp_path / f"worker{len(procs)}.log", "wb")  # noqa: SIM115 (closed with the process)
        cmd = [sys.executable, "-m", "streamrec", "worker", "--loglevel", "warning"]
        proc = subprocess.Popen(cmd, env=_worker_env(settings), stdout=log, stderr=subprocess.STDOUT, cwd=tmp_path)
        procs.append(proc)
        return proc

    yield start
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


async def produce(settings: Settings, records: Sequence[tuple[bytes, bytes | None]]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap, acks="all", linger_ms=5)
    await producer.start()
    try:
        for value, key in records:
            await producer.send(settings.topics.events, value, key=key)
        await producer.flush()
    finally:
        await producer.stop()


async def collect(
    settings: Settings, done: Callable[[dict[str, Any], list[dict[str, Any]]], bool], timeout_s: float = 120.0
) -> tuple[dict[str, list[dict[str, Any]]], list[dict[str, Any]]]:
    """Read recommendations (per user, in order) and dead letters until `done(latest, letters)` or timeout."""
    consumer = AIOKafkaConsumer(
        settings.topics.recommendations,
        settings.topics.dead_letter,
        bootstrap_servers=settings.kafka_bootstrap,
        auto_offset_reset="earliest",
        group_id=None,
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


def _records(events: Sequence[Event]) -> list[tuple[bytes, bytes | None]]:
    return [(e.model_dump_json().encode(), e.user_id.encode()) for e in events]


async def _assert_exactly_once(redis_url: str, events: Sequence[Event]) -> None:
    client = aioredis.Redis.from_url(redis_url)
    try:
        store = FeatureStore(client)
        per_user: dict[str, int] = {}
        for e in events:
            per_user[e.user_id] = per_user.get(e.user_id, 0) + 1
        for user, count in per_user.items():
            stats = await store.user_stats(user)
            assert stats.get("applied") == count, (user, stats, count)
    finally:
        await client.aclose()


async def test_worker_answers_every_user_and_dead_letters_every_malformed_record(
    settings_factory: Callable[..., Settings], start_worker: Callable[[Settings], subprocess.Popen[bytes]]
) -> None:
    settings = settings_factory()
    events = generated_events(3000)
    start_worker(settings)
    bad = list(MALFORMED.values())
    mixed = _records(events[:1500]) + bad + _records(events[1500:])
    await produce(settings, mixed)
    latest = {e.user_id: e.event_id for e in events}
    recs, letters = await collect(
        settings,
        lambda last, dl: (
            len(dl) >= len(bad) and all(last.get(u, {}).get("trigger_event_id") == latest[u] for u in latest)
        ),  # fmt: skip
    )
    assert sorted(d["reason"] for d in letters) == sorted(MALFORMED)
    own = {e.event_id: e.user_id for e in events}
    assert set(recs) == set(latest)
    for user, answers in recs.items():
        assert answers[-1]["trigger_event_id"] == latest[user]
        for rec in answers:
            assert own[rec["trigger_event_id"]] == user
            for item in rec["items"]:
                assert item["explanation"]["text"]
                assert all(own[ev["event_id"]] == user for ev in item["explanation"]["evidence"])
    await _assert_exactly_once(settings.redis_url.get_secret_value(), events)


@pytest.mark.slow
async def test_kill_9_mid_replay_then_restart_has_every_effect_exactly_once(
    settings_factory: Callable[..., Settings], start_worker: Callable[[Settings], subprocess.Popen[bytes]]
) -> None:
    settings = settings_factory()
    events = generated_events(20000, users=500, seed=5)
    await produce(settings, _records(events))
    first = start_worker(settings)
    # Let it get part-way through, then kill it without warning.
    await collect(settings, lambda last, dl: len(last) >= 100, timeout_s=120)
    first.send_signal(signal.SIGKILL)
    first.wait(timeout=30)
    start_worker(settings)
    latest = {e.user_id: e.event_id for e in events}
    recs, _ = await collect(
        settings,
        lambda last, dl: all(last.get(u, {}).get("trigger_event_id") == latest[u] for u in latest),
        timeout_s=420,  # ~150 events/s on a loaded 2-core box (bench/pipeline.py)
    )
    assert {u: r[-1]["trigger_event_id"] for u, r in recs.items()} == latest
    await _assert_exactly_once(settings.redis_url.get_secret_value(), events)


@pytest.mark.shared_data
async def test_ten_thousand_taobao_events_through_the_worker(
    shared_data: Path,
    tmp_path: Path,
    settings_factory: Callable[..., Settings],
    start_worker: Callable[[Settings], subprocess.Popen[bytes]],
) -> None:
    import_dataset("taobao", shared_data / "taobao_userbehavior", tmp_path / "tb")
    with gzip.open(tmp_path / "tb" / "events.jsonl.gz", "rt") as lines:
        events = [Event.model_validate_json(line) for _, line in zip(range(10000), lines, strict=False)]
    # Replay with event times shifted to now, keeping their spacing, so none is "from the future".
    shift = datetime.now(UTC) - timedelta(minutes=1) - max(e.ts for e in events)
    events = [e.model_copy(update={"ts": e.ts + shift}) for e in events]
    settings = settings_factory()
    start_worker(settings)
    await produce(settings, _records(events) + list(MALFORMED.values()))
    latest = {e.user_id: e.event_id for e in events}
    recs, letters = await collect(
        settings,
        lambda last, dl: (
            len(dl) >= len(MALFORMED) and all(last.get(u, {}).get("trigger_event_id") == latest[u] for u in latest)
        ),
        timeout_s=240,
    )
    assert sorted(d["reason"] for d in letters) == sorted(MALFORMED)
    assert {u: r[-1]["trigger_event_id"] for u, r in recs.items()} == latest
    await _assert_exactly_once(settings.redis_url.get_secret_value(), events)
