"""Edge validation: raw Kafka bytes become an event or a `DeadLetter` with its reason, never an exception.

Accepts exactly what `schemas/event.json` accepts (UTF-8 JSON without NaN/Infinity, `ts` an RFC 3339 string with
an offset), plus the checks a schema cannot state: the `EventLimits` (payload size, event time within [`min_time`,
now + skew]) and a record key equal to `user_id` (the partitioning that keeps each user's events in order).
`tests/unit/test_validation_fuzz.py` holds it to that on arbitrary input.

Two paths with one verdict: `validate_event` (pydantic, the contract itself) names the reason of every rejected
record; `decode_event`, the worker's, first tries the compiled codec (`contracts.codec`, msgspec) and hands any
record that codec or the checks here do not accept to `validate_event`, so a valid record never builds a pydantic
object and a rejected one gets exactly the dead letter the pydantic path gives (`tests/unit/test_codec_parity.py`).
"""

from __future__ import annotations

import base64
import json
import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from pydantic import ValidationError

from contracts import DeadLetter, DeadLetterReason, Event, EventType, Settings
from contracts.codec import EventFields, decode_event_fast
from contracts.records import TIMESTAMP_PATTERN

__all__ = [
    "MAX_KEY_COPY_BYTES",
    "MAX_PAYLOAD_COPY_BYTES",
    "EventLimits",
    "RawRecord",
    "dead_letter",
    "decode_event",
    "processing_failed",
    "validate_event",
]

_TYPES = {t.value for t in EventType}
_TIMESTAMP = re.compile(TIMESTAMP_PATTERN)
_NAIVE = re.compile(TIMESTAMP_PATTERN.removesuffix(r"([Zz]|[+-]([01][0-9]|2[0-3]):[0-5][0-9])$") + "$")
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")
_DEFAULTS = Settings.model_fields  # EventLimits() is what Settings() gives: one place holds the defaults

# A dead letter carries a copy of the record; base64 adds a third, so 512 KiB + 4 KiB stay well inside the
# producer's 1,000,000-byte request limit whatever arrived (a larger copy made the send fail and the batch stall).
MAX_PAYLOAD_COPY_BYTES = 512 * 1024
MAX_KEY_COPY_BYTES = 4 * 1024


@dataclass(frozen=True, slots=True)
class EventLimits:
    """The edge's limits beyond the schema; the defaults are `contracts.Settings`'."""

    max_bytes: int = _DEFAULTS["max_event_bytes"].default  # larger payloads: `oversize`
    # event times further ahead of the clock: `future_timestamp`
    max_future_skew: timedelta = timedelta(seconds=_DEFAULTS["max_future_skew_seconds"].default)
    min_time: datetime = _DEFAULTS["min_event_time"].default  # earlier event times: `past_timestamp`

    @classmethod
    def from_settings(cls, settings: Settings) -> EventLimits:
        """`STREAMREC_MAX_EVENT_BYTES`, `STREAMREC_MAX_FUTURE_SKEW_SECONDS` and `STREAMREC_MIN_EVENT_TIME`."""
        skew = timedelta(seconds=settings.max_future_skew_seconds)
        return cls(settings.max_event_bytes, skew, settings.min_event_time)


@dataclass(frozen=True, slots=True)
class RawRecord:
    """A record as it came off the topic."""

    value: bytes | None
    key: bytes | None
    topic: str
    partition: int
    offset: int

    @classmethod
    def of(cls, message: Any) -> RawRecord:
        """The record of a consumed message (anything with value, key, topic, partition, offset: Faust's
        `Message`, aiokafka's `ConsumerRecord`)."""
        return cls(message.value, message.key, message.topic, message.partition, message.offset)


def processing_failed(record: RawRecord, error: BaseException, now: datetime) -> DeadLetter:
    """The dead letter of a record whose processing failed for good (`streams.settle` isolated it)."""
    return dead_letter(record, DeadLetterReason.PROCESSING_FAILED, f"{type(error).__name__}: {error}", now)


def dead_letter(record: RawRecord, reason: DeadLetterReason, error: str, now: datetime) -> DeadLetter:
    """The dead letter of `record`: reason, error and a copy of its bytes, cut short to fit the producer's limit."""
    value, key = record.value or b"", record.key
    truncated = len(value) > MAX_PAYLOAD_COPY_BYTES or (key is not None and len(key) > MAX_KEY_COPY_BYTES)
    return DeadLetter(
        reason=reason,
        error=error[:2048],
        payload_b64=base64.b64encode(value[:MAX_PAYLOAD_COPY_BYTES]).decode(),
        key_b64=None if key is None else base64.b64encode(key[:MAX_KEY_COPY_BYTES]).decode(),
        payload_bytes=len(value),
        truncated=truncated,
        source_topic=record.topic,
        source_partition=record.partition,
        source_offset=record.offset,
        received_at=now,
    )


def _no_constant(name: str) -> Any:
    msg = f"{name} is not JSON"
    raise ValueError(msg)


def _encodable(doc: dict[str, Any]) -> bool:
    """No lone surrogate (a `\\ud800` escape decodes to a str that cannot be written as UTF-8)."""
    try:
        json.dumps(doc, ensure_ascii=False).encode()
    except (UnicodeEncodeError, RecursionError):
        return False
    return True


def _show(value: Any) -> str:
    """A short, safe rendering of a field value for an error message (no repr of nested input)."""
    return repr(value[:64]) if isinstance(value, str) else type(value).__name__


def validate_event(record: RawRecord, limits: EventLimits, *, now: datetime) -> Event | DeadLetter:
    """Decode and check one record; `now` is the worker's clock, used only for the event-time range."""
    value, max_bytes = record.value or b"", limits.max_bytes

    def reject(reason: DeadLetterReason, error: str) -> DeadLetter:
        return dead_letter(record, reason, error, now)

    if len(value) > max_bytes:
        return reject(DeadLetterReason.OVERSIZE, f"payload of {len(value)} bytes exceeds {max_bytes}")
    try:
        text = value.decode()  # UTF-8 only: json.loads(bytes) would also take UTF-16/32 and a BOM
        doc = json.loads(text, parse_constant=_no_constant)
    except UnicodeDecodeError as exc:
        return reject(DeadLetterReason.UNDECODABLE, f"not UTF-8: {exc}")
    except (ValueError, RecursionError) as exc:  # JSONDecodeError, NaN, a > 4,300-digit integer, deep nesting
        return reject(DeadLetterReason.UNDECODABLE, f"not JSON: {type(exc).__name__}: {str(exc)[:200]}")
    if not isinstance(doc, dict):
        return reject(DeadLetterReason.SCHEMA_VIOLATION, f"expected a JSON object, got {type(doc).__name__}")
    if _SURROGATE_ESCAPE.search(text) and not _encodable(doc):
        return reject(DeadLetterReason.UNDECODABLE, "a string holds a lone UTF-16 surrogate (not UTF-8 text)")
    kind = doc.get("type")
    if not isinstance(kind, str) or kind not in _TYPES:
        return reject(DeadLetterReason.UNKNOWN_TYPE, f"unknown event type {_show(kind)}")
    missing = [f for f in ("event_id", "user_id", "ts") if doc.get(f) is None]
    if missing:
        return reject(DeadLetterReason.MISSING_KEY_FIELD, f"missing {', '.join(missing)}")
    if kind != EventType.SEARCH.value and doc.get("item_id") is None:
        return reject(DeadLetterReason.MISSING_ITEM, f"a {kind} event needs item_id")
    ts = doc["ts"]
    if not isinstance(ts, str) or not _TIMESTAMP.match(ts):
        naive = isinstance(ts, str) and _NAIVE.match(ts)
        reason = DeadLetterReason.NAIVE_TIMESTAMP if naive else DeadLetterReason.SCHEMA_VIOLATION
        return reject(reason, f"ts must be an RFC 3339 date-time with an offset, got {_show(ts)}")
    try:
        event = Event.model_validate(doc)
    except ValidationError as exc:
        return reject(DeadLetterReason.SCHEMA_VIOLATION, str(exc))
    if event.ts < limits.min_time:
        return reject(DeadLetterReason.PAST_TIMESTAMP, f"event time {ts} is before {limits.min_time.isoformat()}")
    if event.ts - now > limits.max_future_skew:
        return reject(DeadLetterReason.FUTURE_TIMESTAMP, f"event time {ts} is ahead of {now.isoformat()}")
    if record.key != event.user_id.encode():
        problem = "has no key" if record.key is None else "key differs from user_id"
        return reject(DeadLetterReason.KEY_MISMATCH, f"record {problem} (the key keeps a user's events in order)")
    return event


def decode_event(record: RawRecord, limits: EventLimits, *, now: datetime) -> EventFields | DeadLetter:
    """`validate_event`'s verdict, reached by the compiled codec for a valid record (a `WireEvent`).

    Any record the codec declines, or that fails the range and key checks, is judged again by `validate_event`:
    its dead letter (reason and error) is the pydantic path's, and should the codec ever decline a record the
    contract accepts, the record is still accepted (as an `Event`).
    """
    value = record.value
    if value is not None and len(value) <= limits.max_bytes:
        event = decode_event_fast(value)
        if (
            event is not None
            and limits.min_time <= event.ts
            and event.ts - now <= limits.max_future_skew
            and record.key == event.user_id.encode()
        ):
            return event
    return validate_event(record, limits, now=now)
