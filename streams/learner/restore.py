"""Durable learner state: on restart, rebuild user histories and the replay reservoir from the events topic.

The learner commits its offsets only after a cycle, and its model is the store's `CURRENT`; what it would lose
on a crash is the in-memory user histories and replay reservoir. `restore_histories` re-reads up to
`per_partition` events before each committed offset (the same validation as live events), feeds them to the
histories without queueing them for training again, and offers their sequences to the reservoir. A group
without committed offsets is a fresh start, logged as such.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

from aiokafka import TopicPartition

from contracts import Event, Settings
from model.continual import ReplayReservoir
from model.stream_buffer import StreamBuffer
from streams.learner.kafka import replay_before
from streams.validation import EventLimits, RawRecord, validate_event

__all__ = ["restore_histories"]

log = logging.getLogger(__name__)


async def restore_histories(
    settings: Settings,
    buffer: StreamBuffer,
    reservoir: ReplayReservoir,
    committed: dict[TopicPartition, int],
    per_partition: int,
) -> dict[str, Any]:
    """Warm `buffer` and `reservoir` from the events before `committed`; returns what was restored (for the log)."""
    if not committed:
        log.warning("learner group has no committed offsets: a fresh start, no user history to restore")
        return {"fresh_start": True, "events": 0, "users": 0}
    events: list[Event] = []
    now, limits = datetime.now(UTC), EventLimits.from_settings(settings)

    def keep(tp: TopicPartition, offset: int, key: bytes | None, value: bytes | None) -> None:
        record = RawRecord(value, key, tp.topic, tp.partition, offset)
        checked = validate_event(record, limits, now=now)
        if isinstance(checked, Event):
            events.append(checked)

    ranges = await replay_before(settings, committed, per_partition, keep)
    events.sort(key=lambda e: e.ts)  # partitions interleave by time (stable: a user's ties keep partition order)
    reservoir.add(buffer.warm(events))
    log.info("restored %d users' histories from %d events %s", buffer.users, len(events), ranges)
    return {"fresh_start": False, "events": len(events), "users": buffer.users, "offsets": ranges}
