"""The partition follower's pieces without a broker: partition ids from metadata, growing the assignment, outages."""

from __future__ import annotations

from typing import Any

import pytest
from aiokafka import TopicPartition
from aiokafka.errors import KafkaConnectionError

from streams import kafka_clients
from streams.kafka_clients import topic_partitions


class _Admin:
    def __init__(self, described: list[dict[str, Any]] | Exception) -> None:
        self.described = described
        self.asked: list[tuple[Any, ...]] = []

    async def describe_topics(self, *topics: Any) -> list[dict[str, Any]]:
        self.asked.append(topics)
        if isinstance(self.described, Exception):
            raise self.described
        return self.described


def _topic(name: str, partitions: int, error_code: int = 0) -> dict[str, Any]:
    return {"topic": name, "error_code": error_code, "partitions": [{"partition": p} for p in range(partitions)]}


class _Consumer:
    """Records what the follower asks of an aiokafka consumer."""

    def __init__(self, positions: dict[TopicPartition, int]) -> None:
        self.positions = dict(positions)
        self.calls: list[tuple[str, Any]] = []

    def assignment(self) -> set[TopicPartition]:
        return set(self.positions)

    async def position(self, tp: TopicPartition) -> int:
        return self.positions[tp]

    def assign(self, tps: list[TopicPartition]) -> None:
        self.calls.append(("assign", sorted(tps)))
        self.positions = dict.fromkeys(tps, -1)  # aiokafka forgets the positions on a new assignment

    def seek(self, tp: TopicPartition, offset: int) -> None:
        self.calls.append(("seek", (tp.partition, offset)))
        self.positions[tp] = offset

    async def seek_to_beginning(self, *tps: TopicPartition) -> None:
        self.calls.append(("seek_to_beginning", sorted(tp.partition for tp in tps)))


async def test_partition_ids_come_from_an_all_topics_request() -> None:
    admin = _Admin([_topic("a", 3), _topic("b", 8), _topic("gone", 2, error_code=3)])
    assert await topic_partitions(admin, "a") == {0, 1, 2}  # type: ignore[arg-type]
    assert await topic_partitions(admin, "gone") == set()  # type: ignore[arg-type]
    assert await topic_partitions(admin, "missing") == set()  # type: ignore[arg-type]
    assert admin.asked == [(), (), ()]  # never a named request: that could auto-create the topic


async def test_an_unreachable_broker_is_no_answer_not_an_error(caplog: pytest.LogCaptureFixture) -> None:
    admin = _Admin(KafkaConnectionError("broker restarting"))
    assert await kafka_clients._partitions_now(admin, "a") is None  # type: ignore[arg-type]  # noqa: SLF001
    assert "partitions not read" in caplog.text


async def test_partitions_added_later_start_at_their_first_offset_and_the_others_keep_their_position() -> None:
    consumer = _Consumer({TopicPartition("a", 0): 41, TopicPartition("a", 1): 7})
    await kafka_clients._add_partitions(consumer, "a", {0, 1, 2, 3})  # type: ignore[arg-type]  # noqa: SLF001
    assert consumer.calls == [
        ("assign", [TopicPartition("a", p) for p in range(4)]),
        ("seek", (0, 41)),
        ("seek", (1, 7)),
        ("seek_to_beginning", [2, 3]),
    ]


@pytest.mark.parametrize("partitions", [None, {0, 1}, {0}])
async def test_no_new_partition_or_no_answer_leaves_the_assignment(partitions: set[int] | None) -> None:
    consumer = _Consumer({TopicPartition("a", 0): 41, TopicPartition("a", 1): 7})
    await kafka_clients._add_partitions(consumer, "a", partitions)  # type: ignore[arg-type]  # noqa: SLF001
    assert consumer.calls == [] and consumer.positions[TopicPartition("a", 0)] == 41
