"""Catalog items in → Redis (idempotent by item time); bad items → dead letters."""

from __future__ import annotations

import operator
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import faust
from faust.types.tuples import Message
from pydantic import ValidationError

from contracts import DeadLetter, DeadLetterReason, Item, Settings
from streams.agents import as_stream, delivered, unacked_unless_done
from streams.runtime import Runtime
from streams.topics import WorkerTopics
from streams.validation import RawRecord, dead_letter, processing_failed

__all__ = ["attach_catalog_agent", "decode_item"]


def decode_item(message: Message, max_bytes: int) -> Item | DeadLetter:
    """One catalog record → `Item`, or a dead letter with the reason."""
    value: bytes = message.value or b""

    def reject(reason: DeadLetterReason, error: str) -> DeadLetter:
        return dead_letter(RawRecord.of(message), reason, error, _now())

    if len(value) > max_bytes:
        return reject(DeadLetterReason.OVERSIZE, f"payload of {len(value)} bytes exceeds {max_bytes}")
    try:
        return Item.model_validate_json(value)
    except ValidationError as exc:
        return reject(DeadLetterReason.SCHEMA_VIOLATION, str(exc))


def attach_catalog_agent(app: faust.App, topics: WorkerTopics, runtime: Runtime, settings: Settings) -> None:
    """Register the `catalog` agent on `topics.items`."""

    async def attempt(messages: Sequence[Message]) -> int:
        decoded = [decode_item(m, settings.max_event_bytes) for m in messages]
        written = await runtime.store.upsert_items([d for d in decoded if isinstance(d, Item)])
        await _send_dead_letters(runtime, topics, [d for d in decoded if isinstance(d, DeadLetter)])
        return written

    async def poison(message: Message, error: BaseException) -> int:
        await _send_dead_letters(runtime, topics, [processing_failed(RawRecord.of(message), error, _now())])
        return 0

    settler = runtime.settler(attempt, poison, operator.add)

    @app.agent(topics.items, name="catalog")
    async def catalog(stream: faust.StreamT[Any]) -> None:
        async for batch in as_stream(stream).take_events(settings.max_batch, within=settings.max_wait_ms / 1000.0):
            with unacked_unless_done(batch):
                await settler.settle([e.message for e in batch])


async def _send_dead_letters(runtime: Runtime, topics: WorkerTopics, letters: Sequence[DeadLetter]) -> None:
    for letter in letters:
        runtime.metrics.dead_letters.labels(reason=letter.reason.value).inc()
    await delivered([await topics.dead_letter.send(value=d.model_dump_json().encode()) for d in letters])


def _now() -> datetime:
    return datetime.now(UTC)
