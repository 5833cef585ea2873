"""Learner windows: consumed offsets per partition, what is committed, and skipping to the newest events."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from aiokafka import TopicPartition

from contracts import Event, EventType
from model.continual import ReplayReservoir
from model.stream_buffer import StreamBuffer
from streams.learner.window import Windows

T0 = datetime(2024, 1, 1, tzinfo=UTC)


def _event(k: int) -> Event:
    return Event(
        event_id=f"e{k}", user_id=f"u{k % 2}", item_id=f"i{k}", type=EventType.VIEW, ts=T0 + timedelta(seconds=k)
    )


def test_a_learner_behind_the_stream_trains_on_the_newest_and_commits_everything() -> None:
    buffer, reservoir, windows = StreamBuffer(4, {}), ReplayReservoir(100), Windows()
    p0, p1 = TopicPartition("ev", 0), TopicPartition("ev", 1)
    for k in range(10):  # offsets 100.. on partition k % 2; offset 104 is invalid (not buffered)
        tp, offset = (p0, 100 + k) if k % 2 == 0 else (p1, 200 + k)
        valid = k != 4
        if valid:
            buffer.add(_event(k))
        windows.consumed(tp, offset, valid)
    cut = windows.cut(buffer, reservoir, max_events=4)
    assert cut.offsets == {"0": [100, 109], "1": [201, 210]}  # every consumed record, the invalid one included
    assert cut.commit == {p0: 109, p1: 210}
    assert cut.log == {"skipped_to_newest": 5, "trained_offsets": {"0": [106, 109], "1": [207, 210]}}
    assert buffer.pending == 4 and len(reservoir) == 2  # the 5 oldest: histories + reservoir only
    data = buffer.cut(1.0)
    assert [p.target for p in data.points] == ["i6", "i7", "i8", "i9"]
    assert [e.item_id for e in data.points[0].state.events] == ["i0", "i2"]  # the skipped events are history
    windows.consumed(p0, 110, True)
    buffer.add(_event(10))
    again = windows.cut(buffer, reservoir, max_events=0)  # 0: no cap
    assert again.offsets == {"0": [110, 111]} and again.commit == {p0: 111, p1: 210}
    assert again.log["skipped_to_newest"] == 0 and buffer.pending == 1
