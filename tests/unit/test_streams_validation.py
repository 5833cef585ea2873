"""Every kind of bad input becomes a dead letter with its reason and source offset; good input passes."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime

import pytest

from contracts import DeadLetter, DeadLetterReason, Event
from streams.validation import EventLimits, RawRecord, validate_event

NOW = datetime(2024, 6, 1, 12, 0, tzinfo=UTC)
GOOD = {"event_id": "e1", "user_id": "u1", "item_id": "i1", "type": "view", "ts": "2024-06-01T11:59:00+00:00"}


def _check(value: bytes, key: bytes | None = b"u1") -> Event | DeadLetter:
    record = RawRecord(value=value, key=key, topic="streamrec.events", partition=3, offset=41)
    return validate_event(record, EventLimits(max_bytes=1024), now=NOW)


def _doc(**changes: object) -> bytes:
    doc = {**GOOD, **changes}
    return json.dumps({k: v for k, v in doc.items() if v != "<drop>"}).encode()


def test_a_good_event_passes() -> None:
    assert _check(_doc()) == Event.model_validate(GOOD)


@pytest.mark.parametrize(
    ("value", "key", "reason"),
    [
        (b"\xff\xfe\x00garbage", b"u1", DeadLetterReason.UNDECODABLE),
        (b"{not json", b"u1", DeadLetterReason.UNDECODABLE),
        (b"[1, 2]", b"u1", DeadLetterReason.SCHEMA_VIOLATION),
        (_doc(type="teleport"), b"u1", DeadLetterReason.UNKNOWN_TYPE),
        (_doc(note="x" * 2000), b"u1", DeadLetterReason.OVERSIZE),
        (_doc(item_id=None), b"u1", DeadLetterReason.MISSING_ITEM),
        (_doc(ts="2024-06-02T12:00:00+00:00"), b"u1", DeadLetterReason.FUTURE_TIMESTAMP),
        (_doc(ts="2024-06-01T11:00:00"), b"u1", DeadLetterReason.NAIVE_TIMESTAMP),
        (_doc(event_id="<drop>"), b"u1", DeadLetterReason.MISSING_KEY_FIELD),
        (_doc(), b"someone-else", DeadLetterReason.KEY_MISMATCH),
        (_doc(extra_field=1), b"u1", DeadLetterReason.SCHEMA_VIOLATION),
        (_doc(event_id="x" * 200), b"u1", DeadLetterReason.SCHEMA_VIOLATION),
    ],
)
def test_bad_input_is_dead_lettered_whole(value: bytes, key: bytes, reason: DeadLetterReason) -> None:
    letter = _check(value, key)
    assert isinstance(letter, DeadLetter)
    assert letter.reason is reason, letter.error
    assert base64.b64decode(letter.payload_b64) == value  # nothing lost
    assert (letter.source_topic, letter.source_partition, letter.source_offset) == ("streamrec.events", 3, 41)
    assert letter.error


def test_a_search_needs_no_item() -> None:
    event = _check(_doc(type="search", item_id=None, query="red mug"))
    assert isinstance(event, Event) and event.query == "red mug"
