"""Durable learner state: histories and replay reservoir rebuilt from the events before the committed offsets."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta

import pytest
from aiokafka import TopicPartition

from contracts import Event, EventType, Settings
from model.continual import ReplayReservoir
from model.stream_buffer import StreamBuffer
from streams.learner.restore import restore_histories

T0 = datetime.now(UTC) - timedelta(hours=1)
TP = TopicPartition("streamrec.events", 0)


def _events(user: str, n: int, start: int = 0) -> list[Event]:
    return [
        Event(event_id=f"{user}-{k}", user_id=user, item_id=f"i{k}", type=EventType.VIEW, ts=T0 + timedelta(seconds=k))
        for k in range(start, start + n)
    ]


async def test_a_restart_rebuilds_histories_from_the_topic(monkeypatch: pytest.MonkeyPatch) -> None:
    topic = _events("a", 6) + _events("b", 3) + [_events("c", 1)[0]]  # offsets 0..9 of partition 0
    asked: list[tuple[dict[TopicPartition, int], int]] = []

    async def replay(
        settings: Settings,
        ends: Mapping[TopicPartition, int],
        per_partition: int,
        handle: Callable[[TopicPartition, int, bytes | None, bytes | None], None],
    ) -> dict[str, list[int]]:
        asked.append((dict(ends), per_partition))
        start = max(0, ends[TP] - per_partition)
        for offset in range(start, ends[TP]):
            handle(TP, offset, topic[offset].user_id.encode(), topic[offset].model_dump_json().encode())
        handle(TP, 99, b"x", b"not an event")  # invalid records are skipped like live ones
        return {"0": [start, ends[TP]]}

    monkeypatch.setattr("streams.learner.restore.replay_before", replay)
    buffer, reservoir = StreamBuffer(4, {}), ReplayReservoir(100)
    restored = await restore_histories(Settings(), buffer, reservoir, {TP: 10}, per_partition=1000)
    assert asked == [({TP: 10}, 1000)]
    assert restored == {"fresh_start": False, "events": 10, "users": 3, "offsets": {"0": [0, 10]}}
    assert buffer.pending == 0  # used before the crash: not trained on again
    assert sorted(len(s) for s in reservoir.sample(10)) == [3, 4]  # a's newest 4 events, b's 3; c has 1: no pair
    for event in _events("a", 3, start=6):  # the next window after the restart
        buffer.add(event)
    data = buffer.cut(1.0)
    assert [p.target for p in data.points] == ["i6", "i7", "i8"]
    assert [e.item_id for e in data.points[0].state.events] == [f"i{k}" for k in range(6)]  # not from scratch


async def test_a_group_without_committed_offsets_is_logged_as_a_fresh_start(caplog: pytest.LogCaptureFixture) -> None:
    buffer = StreamBuffer(4, {})
    with caplog.at_level(logging.WARNING, logger="streams.learner.restore"):
        restored = await restore_histories(Settings(), buffer, ReplayReservoir(10), {}, per_partition=1000)
    assert restored == {"fresh_start": True, "events": 0, "users": 0}
    assert "fresh start" in caplog.text and buffer.users == 0
