"""The local stack against real services: Kafka round trips with aiokafka, Redis, idempotent `up`, topic configs."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import redis.asyncio as aioredis
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from contracts.records import Event, EventType
from contracts.topics import TopicNames
from streamrec.stack import LocalStack
from streamrec.stack_config import StackConfig, is_alive, port_open

pytestmark = pytest.mark.integration


def _events(n_users: int, per_user: int) -> list[Event]:
    start = datetime(2026, 1, 1, tzinfo=UTC)
    return [
        Event(
            event_id=f"e{u}-{i}",
            user_id=f"user-{u}",
            item_id=f"item-{(u * 7 + i) % 13}",
            type=EventType.PURCHASE if i % 5 == 4 else EventType.VIEW,
            ts=start + timedelta(seconds=u * 100 + i),
            context={"page": i, "price": 9.5},
        )
        for u in range(n_users)
        for i in range(per_user)
    ]


async def test_event_round_trip_keeps_user_on_one_partition(stack, topic_prefix: str) -> None:
    topic = TopicNames(topic_prefix).events
    sent = _events(n_users=12, per_user=5)
    producer = AIOKafkaProducer(bootstrap_servers=stack.bootstrap, acks="all", enable_idempotence=True)
    await producer.start()
    try:
        for event in sent:
            await producer.send_and_wait(topic, event.model_dump_json().encode(), key=event.user_id.encode())
    finally:
        await producer.stop()

    group = f"g-{uuid.uuid4().hex[:8]}"
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=stack.bootstrap, group_id=group, auto_offset_reset="earliest", enable_auto_commit=False
    )
    await consumer.start()
    received: list[tuple[int, str, Event]] = []
    try:
        async with asyncio.timeout(60):
            while len(received) < len(sent):
                for tp, records in (await consumer.getmany(timeout_ms=1000)).items():
                    received += [(tp.partition, r.key.decode(), Event.model_validate_json(r.value)) for r in records]
        await consumer.commit()
        assigned = consumer.assignment()
        committed = {tp.partition: await consumer.committed(tp) for tp in assigned}
    finally:
        await consumer.stop()

    assert sorted((e for _, _, e in received), key=lambda e: e.event_id) == sorted(sent, key=lambda e: e.event_id)
    partitions_by_user: dict[str, set[int]] = {}
    for partition, key, event in received:
        assert key == event.user_id
        partitions_by_user.setdefault(key, set()).add(partition)
    assert all(len(p) == 1 for p in partitions_by_user.values()), partitions_by_user
    assert len({next(iter(p)) for p in partitions_by_user.values()}) > 1, "12 users should spread over partitions"
    # Per-user order is preserved within its partition.
    for user in partitions_by_user:
        ids = [e.event_id for _, k, e in received if k == user]
        assert ids == sorted(ids, key=lambda s: int(s.rsplit("-", 1)[1]))
    assert len(assigned) == 8
    per_partition = {p: sum(1 for q, _, _ in received if q == p) for p in committed}
    assert committed == {p: per_partition[p] for p in committed}


async def test_redis_set_get_and_lua(redis_db: aioredis.Redis) -> None:
    assert await redis_db.set("k", "v1")
    assert await redis_db.get("k") == b"v1"
    # Set-if-greater in Lua: the kind of atomic update the feature store relies on.
    script = "local c = tonumber(redis.call('GET', KEYS[1]) or '-1') if tonumber(ARGV[1]) > c then "
    script += "redis.call('SET', KEYS[1], ARGV[1]) return 1 end return 0"
    assert await redis_db.eval(script, 1, "seq", 5) == 1
    assert await redis_db.eval(script, 1, "seq", 3) == 0
    assert await redis_db.get("seq") == b"5"
    assert await redis_db.dbsize() == 2


def test_up_twice_starts_nothing_new(stack) -> None:
    local = LocalStack(stack.config)
    before = {row.name: row.pid for row in local.status()}
    again = local.up()
    assert again.created_topics == ()
    assert (again.kafka_pid, again.redis_pid) == (before["kafka"], before["redis"])
    assert all(pid is not None for pid in before.values())
    assert {row.name: row.pid for row in local.status()} == before


async def test_stack_topics_have_configured_partitions_and_compaction(stack) -> None:
    names = TopicNames(stack.config.topic_prefix)
    admin = AIOKafkaAdminClient(bootstrap_servers=stack.bootstrap)
    await admin.start()
    try:
        described = await admin.describe_topics([names.events, names.recommendations, names.items])
        counts = {t["topic"]: len(t["partitions"]) for t in described}
        (response,) = await admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, names.items)])
    finally:
        await admin.close()
    assert counts[names.events] == stack.config.events_partitions == 8
    assert counts[names.recommendations] == stack.config.recommendations_partitions == 8
    entries = {entry[0]: entry[1] for entry in response.resources[0][4]}
    assert entries["cleanup.policy"] == "compact"


@pytest.mark.slow
def test_down_stops_exactly_its_own_processes(stack, tmp_path: Path) -> None:
    # A second stack on its own ports and state dir; the shared one must survive its `down`.
    cfg = StackConfig(state_dir=tmp_path / "stack", kafka_port=29192, controller_port=29193, redis_port=26479)
    own = LocalStack(cfg)
    try:
        info = own.up()
        assert info.kafka_pid and info.redis_pid and info.kafka_pid != stack.info.kafka_pid
        stopped = own.down(timeout_seconds=30)
    finally:
        own.down(timeout_seconds=5)
    assert stopped == {"kafka": info.kafka_pid, "redis": info.redis_pid}
    assert not is_alive(info.kafka_pid) and not is_alive(info.redis_pid)
    assert not any(port_open("127.0.0.1", p) for p in (29192, 29193, 26479))
    assert not list((tmp_path / "stack" / "pids").glob("*.pid"))
    assert all(row.alive and row.listening for row in LocalStack(stack.config).status())
