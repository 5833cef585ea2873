"""Edge validation: raw Kafka bytes become an `Event` or a `DeadLetter` with its reason, never an exception."""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from datetime import datetime, timedelta

from pydantic import ValidationError

from contracts import DeadLetter, DeadLetterReason, Event, EventType

__all__ = ["RawRecord", "validate_event"]

_TYPES = {t.value for t in EventType}


@dataclass(frozen=True, slots=True)
class RawRecord:
    """A record as it came off the topic."""

    value: bytes | None
    key: bytes | None
    topic: str
    partition: int
    offset: int


def validate_event(
    record: RawRecord, *, max_bytes: int, max_future_skew: timedelta, now: datetime
) -> Event | DeadLetter:
    """Decode and check one record; `now` is the worker's clock, used only for the future-timestamp check."""
    value = record.value or b""

    def reject(reason: DeadLetterReason, error: str) -> DeadLetter:
        return DeadLetter(
            reason=reason,
            error=error[:2048],
            payload_b64=base64.b64encode(value).decode(),
            key_b64=None if record.key is None else base64.b64encode(record.key).decode(),
            source_topic=record.topic,
            source_partition=record.partition,
            source_offset=record.offset,
            received_at=now,
        )

    if len(value) > max_bytes:
        return reject(DeadLetterReason.OVERSIZE, f"payload of {len(value)} bytes exceeds {max_bytes}")
    try:
        doc = json.loads(value)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        return reject(DeadLetterReason.UNDECODABLE, f"not UTF-8 JSON: {exc}")
    if not isinstance(doc, dict):
        return reject(DeadLetterReason.SCHEMA_VIOLATION, f"expected a JSON object, got {type(doc).__name__}")
    if doc.get("type") not in _TYPES:
        return reject(DeadLetterReason.UNKNOWN_TYPE, f"unknown event type {doc.get('type')!r}")
    missing = [f for f in ("event_id", "user_id", "ts") if f not in doc or doc[f] is None]
    if missing:
        return reject(DeadLetterReason.MISSING_KEY_FIELD, f"missing {', '.join(missing)}")
    if doc["type"] != EventType.SEARCH.value and doc.get("item_id") is None:
        return reject(DeadLetterReason.MISSING_ITEM, f"a {doc['type']} event needs item_id")
    try:
        event = Event.model_validate(doc)
    except ValidationError as exc:
        naive = any(e["type"] == "timezone_aware" for e in exc.errors())
        reason = DeadLetterReason.NAIVE_TIMESTAMP if naive else DeadLetterReason.SCHEMA_VIOLATION
        return reject(reason, str(exc))
    if event.ts - now > max_future_skew:
        return reject(DeadLetterReason.FUTURE_TIMESTAMP, f"event time {event.ts.isoformat()} is ahead of {now}")
    if record.key is not None and record.key != event.user_id.encode():
        return reject(DeadLetterReason.KEY_MISMATCH, "record key differs from user_id (breaks per-user order)")
    return event
