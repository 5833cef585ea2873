"""The learner's Kafka plumbing: the model-update publisher and the history replay on restart.

Topic followers (catalog, recommendations) are `streams.kafka_clients.follow_partitions`, shared with the worker.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from contracts import ModelUpdate, Settings
from streams.kafka_clients import client_kwargs

if TYPE_CHECKING:
    from model.artifacts import Manifest  # only a type here: importing this module stays free of torch

__all__ = ["MODEL_UPDATE_KEY", "model_update", "publish_update", "replay_before"]

MODEL_UPDATE_KEY = b"model"  # one key: every update lands on one partition, in order


def model_update(manifest: Manifest, uri: str, metrics: dict[str, float] | None = None) -> ModelUpdate:
    """The `ModelUpdate` announcing `manifest`'s version at `uri`."""
    return ModelUpdate(
        version=manifest.version,
        uri=uri,
        sha256=manifest.sha256,
        metrics=dict(manifest.metrics if metrics is None else metrics),
        parent_version=manifest.parent_version,
        created_at=datetime.now(UTC),
    )


async def publish_update(settings: Settings, update: ModelUpdate, producer: AIOKafkaProducer | None = None) -> None:
    """Send `update` to `<prefix>.model-updates` and wait for acks=all (own producer unless one is given)."""
    own = producer is None
    if producer is None:
        producer = AIOKafkaProducer(acks="all", **client_kwargs(settings))
        await producer.start()
    try:
        await producer.send_and_wait(
            settings.topics.model_updates, update.model_dump_json().encode(), key=MODEL_UPDATE_KEY
        )
    finally:
        if own:
            await producer.stop()


async def replay_before(
    settings: Settings,
    ends: Mapping[TopicPartition, int],
    per_partition: int,
    handle: Callable[[TopicPartition, int, bytes | None, bytes | None], None],
) -> dict[str, list[int]]:
    """Re-read up to `per_partition` records just before each end offset (no group); returns the ranges read.

    Used on restart: the events before the committed offsets rebuild the user histories the learner lost.
    `handle(tp, offset, key, value)` is called in offset order per partition.
    """
    wanted = {tp: end for tp, end in ends.items() if end > 0}
    if not wanted or per_partition <= 0:
        return {}
    consumer = AIOKafkaConsumer(group_id=None, enable_auto_commit=False, **client_kwargs(settings))
    await consumer.start()
    try:
        consumer.assign(list(wanted))
        firsts = await consumer.beginning_offsets(list(wanted))
        ranges = {tp: [max(firsts[tp], end - per_partition), end] for tp, end in wanted.items()}
        for tp, (start, _) in ranges.items():
            consumer.seek(tp, start)
        open_ = {tp for tp, (start, end) in ranges.items() if start < end}
        idle = 0
        while open_ and idle < 10:  # 10 s without a record: the rest is gone (retention); use what was read
            batch = await consumer.getmany(*open_, timeout_ms=1000)
            idle = 0 if batch else idle + 1
            for tp, messages in batch.items():
                for m in messages:
                    if m.offset < ranges[tp][1]:
                        handle(tp, m.offset, m.key, m.value)
                if messages and messages[-1].offset + 1 >= ranges[tp][1]:
                    open_.discard(tp)
        return {str(tp.partition): [start, end] for tp, (start, end) in ranges.items()}
    finally:
        await consumer.stop()
