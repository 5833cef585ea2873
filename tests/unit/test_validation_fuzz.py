"""The validator is total and judges like `schemas/event.json`: arbitrary bytes give an Event or a DeadLetter,
and a JSON document is accepted exactly when the schema accepts it and the key, time-range checks pass."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import jsonschema_rs
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from contracts import DeadLetter, DeadLetterReason, Event
from streams.validation import MAX_PAYLOAD_COPY_BYTES, EventLimits, RawRecord, dead_letter, validate_event
from tests.unit.json_text import json_object

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
SKEW = timedelta(minutes=5)
MAX_BYTES = 16384
LIMITS = EventLimits(MAX_BYTES, SKEW)
SCHEMA = jsonschema_rs.Draft202012Validator(
    json.loads((Path(__file__).parents[2] / "schemas" / "event.json").read_text()), validate_formats=True
)
GOOD = {"event_id": "e1", "user_id": "u1", "item_id": "i1", "type": "view", "ts": "2026-06-01T11:59:00+00:00"}


def _check(value: bytes, key: bytes | None = b"u1") -> Event | DeadLetter:
    record = RawRecord(value=value, key=key, topic="streamrec.events", partition=0, offset=7)
    return validate_event(record, LIMITS, now=NOW)


def _schema_path(value: bytes) -> dict[str, Any] | None:
    """What RFC 8259 + the JSON Schema accept: UTF-8 JSON text, no NaN/Infinity, a schema-valid object."""
    doc = json_object(value)
    return doc if doc is not None and SCHEMA.is_valid(doc) else None


def _in_range(doc: dict[str, Any]) -> bool:
    ts = datetime.fromisoformat(doc["ts"].upper().replace("Z", "+00:00"))
    return datetime(1970, 1, 1, tzinfo=UTC) <= ts <= NOW + SKEW


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=MAX_BYTES + 64), st.none() | st.binary(max_size=16))
@example(b"[" * 1000 + b"]" * 1000, b"u1")
@example(b'{"context": {"n": ' + b"9" * 5000 + b"}}", b"u1")
@example(b"\xef\xbb\xbf" + json.dumps(GOOD).encode(), b"u1")
@example(json.dumps(GOOD).encode("utf-16"), b"u1")
def test_arbitrary_bytes_give_an_event_or_a_dead_letter(value: bytes, key: bytes | None) -> None:
    out = _check(value, key)
    assert isinstance(out, Event | DeadLetter)
    if isinstance(out, DeadLetter):
        assert base64.b64decode(out.payload_b64) == value  # small enough to be kept whole
        assert out.payload_bytes == len(value) and not out.truncated


_id = st.text(st.characters(codec="utf-8"), min_size=0, max_size=130) | st.integers() | st.none()
_ts = st.one_of(
    st.datetimes(
        min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30), timezones=st.just(UTC) | st.timezones()
    ).map(lambda d: d.isoformat()),
    st.datetimes(min_value=datetime(1960, 1, 1), max_value=datetime(2027, 1, 1)).map(lambda d: d.isoformat()),
    st.sampled_from(["2024-02-30T00:00:00Z", "2024-01-01t10:00:00z", "1714564800", "", "2024-01-01 10:00:00Z"]),
    st.integers(-(10**12), 10**12),
    st.floats(),
)
_scalar = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8)
_context = st.dictionaries(st.text(max_size=4), _scalar | st.lists(_scalar, max_size=2), max_size=3)


@st.composite
def _documents(draw: st.DrawFn) -> dict[str, Any]:
    doc: dict[str, Any] = dict(GOOD)
    doc["ts"] = draw(_ts)
    for field in ("event_id", "user_id", "item_id", "session_id", "query"):
        if draw(st.booleans()):
            doc[field] = draw(_id)
    doc["type"] = draw(st.sampled_from(["view", "search", "purchase", "teleport", 3]))
    if draw(st.booleans()):
        doc["context"] = draw(_context)
    for field in draw(st.sets(st.sampled_from([*GOOD, "extra"]), max_size=2)):
        doc.pop(field, None) if field in doc else doc.setdefault(field, 1)
    return doc


@settings(max_examples=1500, suppress_health_check=[HealthCheck.too_slow])
@given(_documents(), st.booleans())
@example({**GOOD, "ts": "0001-01-01T00:00:00+01:00"}, True)  # stored as year 0, unreadable afterwards
@example({**GOOD, "ts": 1780000000}, True)
@example({**GOOD, "context": {"x": float("nan")}}, True)
@example({**GOOD, "context": {"x": float("inf")}}, True)
@example({**GOOD, "user_id": "x}:claim:e"}, True)
@example({**GOOD, "item_id": "a\x1fb"}, True)
@example({**GOOD, "user_id": "\ud800"}, True)
@example(GOOD, False)
def test_the_validator_accepts_exactly_what_the_schema_and_range_checks_accept(
    doc: dict[str, Any], keyed: bool
) -> None:
    value = json.dumps(doc).encode()  # NaN/Infinity are written as bare constants: invalid JSON text
    user = doc.get("user_id")
    key = str(user).encode(errors="surrogatepass") if keyed else None
    expected = _schema_path(value)
    accepted = expected is not None and _in_range(expected) and key == str(expected["user_id"]).encode()
    out = _check(value, key)
    assert isinstance(out, Event) is accepted, out


@pytest.mark.parametrize(
    ("value", "key", "reason"),
    [
        (b"[" * 1000 + b"]" * 1000, b"u1", DeadLetterReason.UNDECODABLE),
        (json.dumps({**GOOD, "context": {"n": 0}}).replace("0}", "9" * 5000 + "}").encode(), b"u1", "undecodable"),
        (json.dumps({**GOOD, "ts": "0001-01-01T00:00:00+01:00"}).encode(), b"u1", DeadLetterReason.PAST_TIMESTAMP),
        (json.dumps({**GOOD, "ts": "1969-12-31T23:59:59Z"}).encode(), b"u1", DeadLetterReason.PAST_TIMESTAMP),
        (json.dumps({**GOOD, "ts": 1780000000}).encode(), b"u1", DeadLetterReason.SCHEMA_VIOLATION),
        (json.dumps({**GOOD, "context": {"x": float("nan")}}).encode(), b"u1", DeadLetterReason.UNDECODABLE),
        (b"\xef\xbb\xbf" + json.dumps(GOOD).encode(), b"u1", DeadLetterReason.UNDECODABLE),
        (json.dumps(GOOD).encode("utf-16"), b"u1", DeadLetterReason.UNDECODABLE),
        (json.dumps(GOOD).encode(), None, DeadLetterReason.KEY_MISMATCH),
        (json.dumps({**GOOD, "user_id": "\ud800"}).encode(), b"u1", DeadLetterReason.UNDECODABLE),
        (json.dumps({**GOOD, "item_id": "a\x1fb"}).encode(), b"u1", DeadLetterReason.SCHEMA_VIOLATION),
    ],
)
def test_each_poison_pill_named_in_the_issue_has_its_reason(value: bytes, key: bytes | None, reason: str) -> None:
    out = _check(value, key)
    assert isinstance(out, DeadLetter) and out.reason == reason, out


def test_a_dead_letter_of_a_huge_record_fits_the_producer_limit() -> None:
    record = RawRecord(value=b"x" * 900_000, key=b"k" * 100_000, topic="t", partition=1, offset=2)
    letter = dead_letter(record, DeadLetterReason.OVERSIZE, "too big", NOW)
    assert len(letter.model_dump_json()) < 1_000_000
    assert letter.truncated and letter.payload_bytes == 900_000
    assert base64.b64decode(letter.payload_b64) == b"x" * MAX_PAYLOAD_COPY_BYTES
