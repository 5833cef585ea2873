"""Catalog items in → Redis (idempotent by item time); bad items → dead letters."""

from __future__ import annotations

import asyncio
import base64
from datetime import UTC, datetime
from typing import Any

import faust
from pydantic import ValidationError

from contracts import DeadLetter, DeadLetterReason, Item, Settings
from streams.agents import as_stream
from streams.runtime import Runtime
from streams.topics import WorkerTopics

__all__ = ["attach_catalog_agent", "decode_item"]


def decode_item(message: faust.types.tuples.Message, max_bytes: int) -> Item | DeadLetter:
    """One catalog record → `Item`, or a dead letter with the reason."""
    value: bytes = message.value or b""

    def reject(reason: DeadLetterReason, error: str) -> DeadLetter:
        return DeadLetter(
            reason=reason,
            error=error[:2048],
            payload_b64=base64.b64encode(value).decode(),
            key_b64=None if message.key is None else base64.b64encode(message.key).decode(),
            source_topic=message.topic,
            source_partition=message.partition,
            source_offset=message.offset,
            received_at=datetime.now(UTC),
        )

    if len(value) > max_bytes:
        return reject(DeadLetterReason.OVERSIZE, f"payload of {len(value)} bytes exceeds {max_bytes}")
    try:
        return Item.model_validate_json(value)
    except ValidationError as exc:
        return reject(DeadLetterReason.SCHEMA_VIOLATION, str(exc))


def attach_catalog_agent(app: faust.App, topics: WorkerTopics, runtime: Runtime, settings: Settings) -> None:
    """Register the `catalog` agent on `topics.items`."""

    @app.agent(topics.items, name="catalog")
    async def catalog(stream: faust.StreamT[Any]) -> None:
        async for batch in as_stream(stream).take_events(settings.max_batch, within=settings.max_wait_ms / 1000.0):
            decoded = [decode_item(e.message, settings.max_event_bytes) for e in batch]
            await runtime.upsert_items([d for d in decoded if isinstance(d, Item)])
            letters = [d for d in decoded if isinstance(d, DeadLetter)]
            for letter in letters:
                runtime.metrics.dead_letters.labels(reason=letter.reason.value).inc()
            pending = [await topics.dead_letter.send(value=d.model_dump_json().encode()) for d in letters]
            await asyncio.gather(*pending)
