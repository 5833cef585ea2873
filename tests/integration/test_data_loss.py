"""Nothing is lost or counted twice when Redis fills up mid-stream or poison pills arrive (real broker + Redis)."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaTimeoutError
from redis.exceptions import ConnectionError as RedisConnectionError

from contracts import ConfigError, DeadLetterReason, Event, Settings
from feature_store import Keys, require_noeviction
from streamrec.child_processes import free_port, worker_env
from tests.integration.dead_letter_support import Record, answered_with_dead_letters, bad_record, produce_with_bad
from tests.integration.worker_support import WorkerPool, generated_events, produce_events, wait_for_answers

T0 = datetime.now(UTC) - timedelta(days=1)
POISON: dict[str, Record] = {
    DeadLetterReason.OVERSIZE: bad_record({"event_id": "big", "pad": "x" * 900_000}),
    DeadLetterReason.PAST_TIMESTAMP: bad_record(
        {"event_id": "y0", "user_id": "u1", "item_id": "i1", "type": "view", "ts": "0001-01-01T00:00:00+01:00"}
    ),
    DeadLetterReason.UNDECODABLE: (b"[" * 1000 + b"]" * 1000, b"u2"),
}


@pytest.fixture
def pool(tmp_path: Path) -> Iterator[WorkerPool]:
    """Workers started by the test, stopped after it."""
    workers = WorkerPool(tmp_path)
    yield workers
    workers.stop_all()


async def _committed(settings: Settings) -> dict[int, int]:
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    await admin.start()
    try:
        offsets = await admin.list_consumer_group_offsets(f"{settings.topic_prefix}-worker")
    finally:
        await admin.close()
    return {tp.partition: meta.offset for tp, meta in offsets.items() if tp.topic == settings.topics.events}


async def _unapplied_below_commits(
    settings: Settings, client: aioredis.Redis, placed: dict[tuple[int, int], Event]
) -> list[str]:
    """Events at offsets below their partition's committed offset that their user's watermark does not cover
    (= not applied: a user's events of one partition are applied in offset order)."""
    committed = await _committed(settings)
    below = [(p, o, e) for (p, o), e in placed.items() if o < committed.get(p, -1)]
    keys, pipe = Keys(), client.pipeline(transaction=False)
    for p, _, e in below:
        pipe.hget(keys.user_offsets(e.user_id), f"{settings.topics.events}:{p}")
    found = await pipe.execute()
    return [e.event_id for (_, o, e), mark in zip(below, found, strict=True) if mark is None or int(mark) < o]


@pytest.mark.faults
async def test_redis_full_mid_stream_and_poison_pills_lose_nothing_and_count_nothing_twice(
    settings_factory: Callable[..., Settings], pool: WorkerPool
) -> None:
    settings = settings_factory()
    url = settings.redis_url.get_secret_value()
    events = generated_events(3000, users=150, seed=16)
    worker = pool.start(settings)
    first, second = events[:1200], events[1200:]
    placed = dict(zip(await produce_events(settings, first), first, strict=True))
    await wait_for_answers(settings, users=50, timeout_s=120)

    client = aioredis.Redis.from_url(url)
    [old_limit] = (await client.config_get("maxmemory")).values()
    await client.config_set("maxmemory", "1")  # every write now answers OOM (noeviction); the limit is server-wide
    try:
        placed |= dict(zip(await produce_with_bad(settings, second, POISON.values(), at=900), second, strict=True))
        full_until = time.monotonic() + 10.0
        while time.monotonic() < full_until:  # no offset may be committed past an unapplied event
            assert await _unapplied_below_commits(settings, client, placed) == []
            await asyncio.sleep(0.5)
        assert await worker.metric("streamrec_batch_retries_total") > 0  # it did meet OOM, and retried
    finally:
        await client.config_set("maxmemory", old_limit)

    # Every event applied once, none twice: a clean run's counts.
    _, letters = await answered_with_dead_letters(settings, events, POISON, timeout_s=240)
    [big] = [d for d in letters if d["reason"] == DeadLetterReason.OVERSIZE]
    assert big["truncated"] and big["payload_bytes"] == len(POISON[DeadLetterReason.OVERSIZE][0])
    assert await _unapplied_below_commits(settings, client, placed) == []
    await client.aclose()


async def test_the_worker_refuses_an_evicting_redis(tmp_path: Path, settings_factory: Callable[..., Settings]) -> None:
    port = free_port()
    server = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--maxmemory-policy", "allkeys-lru"],
        stdout=subprocess.DEVNULL,
    )
    try:
        url = f"redis://127.0.0.1:{port}/0"
        client = aioredis.Redis.from_url(url)
        for _ in range(50):
            try:
                await client.ping()
                break
            except RedisConnectionError:
                await asyncio.sleep(0.1)
        with pytest.raises(ConfigError, match="noeviction"):
            await require_noeviction(client)
        await client.aclose()
        env = worker_env(settings_factory(redis_url=url), free_port())
        cmd = [sys.executable, "-m", "streamrec", "worker"]
        done = subprocess.run(cmd, env=env, capture_output=True, timeout=120, cwd=tmp_path, check=False)
        assert done.returncode == 2
        assert b"maxmemory-policy is 'allkeys-lru'" in done.stderr and b"noeviction" in done.stderr
    finally:
        server.terminate()
        server.wait(timeout=10)


async def test_a_record_whose_feature_write_fails_is_dead_lettered_and_the_batch_goes_on(
    settings_factory: Callable[..., Settings],
) -> None:
    from streams.runtime import Runtime
    from streams.validation import RawRecord

    settings = settings_factory()
    runtime = Runtime(settings)
    client = aioredis.Redis.from_url(settings.redis_url.get_secret_value())
    try:
        await client.set(Keys().user_events("victim"), "written by something else")  # WRONGTYPE for the list ops
        events = [
            Event(event_id=f"w{n}", user_id=user, item_id="i1", type="view", ts=T0 + timedelta(seconds=n))
            for n, user in enumerate(["a", "victim", "b", "c"])
        ]
        raws = [RawRecord(e.model_dump_json().encode(), e.user_id.encode(), "t", 0, n) for n, e in enumerate(events)]
        delivered: list[Any] = []

        async def deliver(outcome: Any) -> None:
            delivered.append(outcome)

        outcome = await runtime.run_batch(raws, [time.monotonic()] * 4, deliver)
        assert [d.reason for d in outcome.dead_letters] == [DeadLetterReason.PROCESSING_FAILED]
        assert outcome.dead_letters[0].source_offset == 1 and "WRONGTYPE" in outcome.dead_letters[0].error
        assert sorted(r.user_id for r in outcome.recommendations) == ["a", "b", "c"]
        assert await runtime.store.user_stats("victim") == {}  # not marked applied (the claim is written last)
        assert not await client.exists(Keys().user_offsets("victim"), Keys().user_ids("victim"))
        assert [(await runtime.store.user_stats(u)).get("applied") for u in "abc"] == [1, 1, 1]
    finally:
        await runtime.close()
        await client.aclose()


async def test_a_batch_whose_recommendations_cannot_be_produced_is_retried_without_applying_features_twice(
    settings_factory: Callable[..., Settings],
) -> None:
    # Delivery fails as aiokafka fails a send to an unreachable broker, after the features were written.
    from streams.runtime import Runtime
    from streams.validation import RawRecord

    runtime = Runtime(settings_factory(), max_backoff_seconds=0.05)
    events = [
        Event(event_id=f"d{n}", user_id=f"u{n % 3}", item_id=f"i{n % 5}", type="view", ts=T0 + timedelta(seconds=n))
        for n in range(12)
    ]
    raws = [RawRecord(e.model_dump_json().encode(), e.user_id.encode(), "t", 0, n) for n, e in enumerate(events)]
    attempts: list[list[str]] = []

    async def deliver(outcome: Any) -> None:
        attempts.append(sorted(r.trigger_event_id for r in outcome.recommendations))
        if len(attempts) <= 3:
            raise KafkaTimeoutError

    try:
        outcome = await runtime.run_batch(raws, [time.monotonic()] * len(raws), deliver)
        assert attempts == [["d10", "d11", "d9"]] * 4  # the same recommendations, until one delivery succeeds
        assert sorted(r.user_id for r in outcome.recommendations) == ["u0", "u1", "u2"]
        assert [(await runtime.store.user_stats(f"u{k}")).get("applied") for k in range(3)] == [4, 4, 4]
        assert runtime.metrics.registry.get_sample_value("streamrec_batch_retries_total") == 3
    finally:
        await runtime.close()
