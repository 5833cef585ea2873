"""`follow_partitions` on the real broker: every partition, from the start or the end, and partitions added later."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewPartitions

from contracts import Settings
from streams.kafka_clients import follow_partitions, topic_partitions

pytestmark = pytest.mark.integration


async def _send(settings: Settings, topic: str, records: dict[int, bytes]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap, acks="all")
    await producer.start()
    try:
        for partition, value in records.items():
            await producer.send_and_wait(topic, value, key=value, partition=partition)  # keyed: items is compacted
    finally:
        await producer.stop()


async def _until(check: Callable[[], bool], seconds: float = 30.0) -> None:
    deadline = time.monotonic() + seconds
    while not check() and time.monotonic() < deadline:
        await asyncio.sleep(0.1)


async def test_from_start_reads_every_partition(settings_factory: Callable[..., Settings]) -> None:
    settings = settings_factory()
    topic = settings.topics.items
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    await admin.start()
    try:
        partitions = await topic_partitions(admin, topic)
        assert await topic_partitions(admin, f"{topic}-absent") == set()  # and not auto-created by asking
        assert f"{topic}-absent" not in await admin.list_topics()
    finally:
        await admin.close()
    assert len(partitions) > 1
    await _send(settings, topic, {p: f"before-{p}".encode() for p in partitions})
    seen: list[bytes | None] = []
    task = asyncio.create_task(follow_partitions(settings, topic, seen.append, from_start=True))
    try:
        await _until(lambda: len(seen) == len(partitions))
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert sorted(seen) == sorted(f"before-{p}".encode() for p in partitions)


async def test_from_end_skips_the_past_and_follows_partitions_added_later(
    settings_factory: Callable[..., Settings],
) -> None:
    settings = settings_factory()
    topic = settings.topics.model_updates
    await _send(settings, topic, {0: b"old"})
    ready = asyncio.Event()

    async def on_ready() -> None:
        ready.set()

    seen: list[bytes | None] = []
    follower = follow_partitions(settings, topic, seen.append, from_start=False, on_ready=on_ready, check_seconds=0.5)
    task = asyncio.create_task(follower)
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    await admin.start()
    try:
        await asyncio.wait_for(ready.wait(), 30)
        before = await topic_partitions(admin, topic)
        await _send(settings, topic, {0: b"new"})
        await admin.create_partitions({topic: NewPartitions(total_count=len(before) + 2)})
        await _send(settings, topic, {len(before): b"added-1", len(before) + 1: b"added-2"})
        await _until(lambda: len(seen) >= 3)
    finally:
        await admin.close()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert sorted(seen) == [b"added-1", b"added-2", b"new"]  # not b"old": it was there before the follower
