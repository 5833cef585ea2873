"""The compiled codec (`contracts.codec`, msgspec) judges events like `schemas/event.json` and the pydantic path.

On generated valid and broken records, `decode_event_fast` accepts exactly what the JSON Schema (with
`jsonschema_rs`: ECMA-262 patterns, formats checked; Python's `jsonschema` would use `re.search`, whose `$` also
matches before a final newline, unlike the schema and pydantic) and pydantic accept, with the same field values,
and `decode_event` (the worker's) returns `validate_event`'s verdict, the same dead letter for a rejected record,
while every valid record goes through the compiled path. The one documented decline: a number beyond the double
range (`1e400`, which Python reads as inf) is left to the pydantic path. Recommendations out:
`test_recommendation_codec.py`.
"""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import jsonschema_rs
import msgspec
import pytest
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st

from contracts import DeadLetter, DeadLetterReason, Event, EventType
from contracts.codec import EventDoc, EventFields, WireEvent, decode_event_fast, python_pattern
from streams.validation import EventLimits, RawRecord, decode_event, validate_event
from tests.unit.json_text import json_object

SCHEMAS = Path(__file__).parents[2] / "schemas"
EVENT_SCHEMA = json.loads((SCHEMAS / "event.json").read_text())
EVENT_VALIDATOR = jsonschema_rs.Draft202012Validator(EVENT_SCHEMA, validate_formats=True)
NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
SKEW = timedelta(minutes=5)
MAX_BYTES = 16384
LIMITS = EventLimits(MAX_BYTES, SKEW)
GOOD = {"event_id": "e1", "user_id": "u1", "item_id": "i1", "type": "view", "ts": "2026-06-01T11:59:00+00:00"}
FIELDS = ("event_id", "user_id", "item_id", "type", "ts", "session_id", "query", "context")
# Reasons `validate_event` gives only after the schema and pydantic have accepted the record.
AFTER_SCHEMA = {DeadLetterReason.PAST_TIMESTAMP, DeadLetterReason.FUTURE_TIMESTAMP, DeadLetterReason.KEY_MISMATCH}


# --- the msgspec declaration against the generated schema (drift) -------------------------------------------------


def _branches(prop: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """A property's schema by JSON type (`anyOf` split), without the keywords that state no rule."""
    out = {}
    for branch in prop.get("anyOf", [prop]):
        rules = {k: v for k, v in branch.items() if k not in ("description", "title", "default", "format")}
        out[rules.pop("type", "$ref")] = rules
    return out


def test_the_msgspec_event_states_the_rules_of_schemas_event_json() -> None:
    ours = msgspec.json.schema(EventDoc)["$defs"]
    mine, contract = ours["EventDoc"], EVENT_SCHEMA
    assert set(mine["properties"]) == set(contract["properties"]) == set(FIELDS)
    assert set(mine["required"]) == set(contract["required"])
    assert EventDoc.__struct_config__.forbid_unknown_fields and contract["additionalProperties"] is False
    assert sorted(ours["EventType"]["enum"]) == sorted(contract["$defs"]["EventType"]["enum"])
    for name in FIELDS:
        if name == "type":
            continue
        got, want = _branches(mine["properties"][name]), _branches(contract["properties"][name])
        for rules in want.values():  # the codec's patterns are the schema's, translated for Python's `re`
            if "pattern" in rules:
                rules["pattern"] = python_pattern(rules["pattern"])
        if name == "context":
            kinds = {b["type"] for b in contract["properties"][name]["additionalProperties"]["anyOf"]}
            assert {b["type"] for b in mine["properties"][name]["additionalProperties"]["anyOf"]} == kinds
            continue
        assert got == want, name


def test_wire_events_carry_the_fields_of_the_contract() -> None:
    assert set(WireEvent.__struct_fields__) == set(Event.model_fields) == set(FIELDS)
    assert {n for n in dir(EventFields) if not n.startswith("_")} == set(FIELDS)


def test_python_pattern_ends_at_the_end_of_the_text() -> None:
    assert python_pattern("^a+$") == r"^a+\Z"
    with pytest.raises(ValueError, match="cannot translate"):
        python_pattern("^(a|$)b$")
    with pytest.raises(ValueError, match="cannot translate"):
        python_pattern("^a+")


# --- generated records ---------------------------------------------------------------------------------------------

_ID_CHARS = st.characters(codec="utf-8", min_codepoint=0x20, exclude_categories=("Cs",), exclude_characters="\x7f")
_valid_id = st.text(_ID_CHARS, min_size=1, max_size=128)
_offset = st.sampled_from(["Z", "z", "+00:00", "-00:00", "+05:30", "-23:59", "+14:00", "-01:00"])


@st.composite
def _timestamp(draw: st.DrawFn) -> str:
    """RFC 3339 text mostly within the accepted range, in the forms the schema's pattern allows."""
    when = draw(st.datetimes(min_value=datetime(1969, 12, 30), max_value=datetime(2026, 6, 2)))
    text = when.strftime("%Y-%m-%d") + draw(st.sampled_from("Tt")) + when.strftime("%H:%M:%S")
    digits = draw(st.integers(0, 12))
    if digits:
        text += "." + "".join(draw(st.lists(st.sampled_from("0123456789"), min_size=digits, max_size=digits)))
    return text + draw(_offset)


_bad_ts = st.sampled_from(
    [
        "2024-02-30T00:00:00Z",
        "0000-01-01T00:00:00Z",
        "2024-01-01 10:00:00Z",
        "2024-01-01T10:00:00",
        "2024-01-01T10:00:00.5",
        "2024-01-01T24:00:00Z",
        "2024-01-01T10:00:60Z",
        "2024-01-01T10:00:00+24:00",
        "2024-01-01T10:00:00Z\n",
        "2024-01-01T10:00:00.Z",
        "1714564800",
        "",
        "0001-01-01T00:00:00+01:00",
        "9999-12-31T23:59:59-01:00",
        "2999-01-01T00:00:00Z",
    ]
)
_junk = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(10**30), 10**30),
    st.floats(allow_nan=False, allow_infinity=False),
    st.lists(st.integers(), max_size=2),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
    st.just(""),
    st.text(max_size=4).map(lambda s: s + "\n"),
    st.text(max_size=4).map(lambda s: "a\x00" + s),
    st.just("x" * 129),
    st.just("x" * 1025),
    st.just("é" * 128),
)
# Raw number text spliced into the JSON where a context value goes (NaN/Infinity are not JSON).
_RAW = "@raw@"
_raw_number = st.sampled_from(
    ["NaN", "Infinity", "-Infinity", "1e400", "-1e400", "1e-400", "-0.0", "1E2", "0.1", "18446744073709551616"]
) | st.integers(1, 4400).map(lambda n: "9" * n)
_scalar = (
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=8)
)


@st.composite
def _valid_documents(draw: st.DrawFn) -> dict[str, Any]:
    kind = draw(st.sampled_from([t.value for t in EventType]))
    doc: dict[str, Any] = {"event_id": draw(_valid_id), "user_id": draw(_valid_id), "type": kind}
    doc["ts"] = draw(_timestamp())
    if kind != "search" or draw(st.booleans()):
        doc["item_id"] = draw(_valid_id)
    elif draw(st.booleans()):
        doc["item_id"] = None
    for name in ("session_id", "query"):
        if draw(st.booleans()):
            doc[name] = draw(st.none() | (_valid_id if name == "session_id" else st.text(max_size=1024)))
    if draw(st.booleans()):
        doc["context"] = draw(st.dictionaries(st.text(max_size=6), _scalar, max_size=4))
    return doc


@st.composite
def _mutated(draw: st.DrawFn) -> tuple[bytes, str | None]:
    """A valid document, then 0-3 mutations of its fields, then maybe one of its bytes; and its user id."""
    doc = draw(_valid_documents())
    for _ in range(draw(st.integers(0, 3))):
        field = draw(st.sampled_from([*FIELDS, "extra"]))
        action = draw(st.sampled_from(["drop", "junk", "ts", "type", "raw", "null"]))
        if action == "drop":
            doc.pop(field, None)
        elif action == "junk":
            doc[field] = draw(_junk)
        elif action == "null":
            doc[field] = None
        elif action == "ts":
            doc["ts"] = draw(_bad_ts | _timestamp())
        elif action == "type":
            doc["type"] = draw(st.sampled_from(["teleport", "VIEW", "", "search", "view", 3]))
        else:
            base = doc.get("context")
            doc["context"] = {**base, "n": _RAW} if isinstance(base, dict) else {"n": _RAW}
    text = json.dumps(doc, ensure_ascii=draw(st.booleans()))
    if _RAW in text:
        text = text.replace(json.dumps(_RAW), draw(_raw_number))
    value = text.encode("utf-8", errors="surrogatepass")
    mangle = draw(st.sampled_from(["none"] * 6 + ["bom", "utf16", "byte", "cut", "tail", "dup", "space", "surrogate"]))
    if mangle == "bom":
        value = b"\xef\xbb\xbf" + value
    elif mangle == "utf16":
        value = text.encode("utf-16", errors="surrogatepass")
    elif mangle == "byte":
        at = draw(st.integers(0, len(value)))
        value = (
            value[:at] + draw(st.sampled_from([b"\xff", b"\xc3", b"\xed\xa0\x80", b"\x00", b"\n", b"}"])) + value[at:]
        )
    elif mangle == "cut":
        value = value[: draw(st.integers(0, len(value) - 1))]
    elif mangle == "tail":
        value += draw(st.sampled_from([b" ", b"\n", b"x", b"{}", b"\x00"]))
    elif mangle == "dup":  # a repeated key: the last one counts (as Python's json reads it)
        value = b'{"user_id": "dup", ' + value[1:] if len(value) > 2 else value
    elif mangle == "space":
        value = b" \t\r\n" + value + b"\n"
    elif mangle == "surrogate":
        value = value.replace(b'"e', b'"\\ud800e', 1).replace(b'"u', b'"\\ud83d\\ude00u', 1)
    user = doc.get("user_id")
    return value, user if isinstance(user, str) else None


def _schema_accepts(value: bytes) -> dict[str, Any] | None:
    """The document if RFC 8259 + `schemas/event.json` accept `value`: UTF-8 JSON text, a schema-valid object."""
    doc = json_object(value)
    if doc is None:
        return None
    # A literal beyond the double range (1e400) is a JSON Schema number, but Python reads it as inf, which
    # jsonschema_rs cannot take as a number: it is judged by a finite stand-in of the same sign.
    context = doc.get("context")
    if isinstance(context, dict) and _beyond_double(doc):
        stand_in = {
            k: math.copysign(1e308, v) if isinstance(v, float) and math.isinf(v) else v for k, v in context.items()
        }
        return doc if EVENT_VALIDATOR.is_valid({**doc, "context": stand_in}) else None
    return doc if EVENT_VALIDATOR.is_valid(doc) else None


def _beyond_double(doc: dict[str, Any]) -> bool:
    """Holds a number Python read as ±inf (its text is beyond the double range): the codec's one decline."""
    context = doc.get("context")
    return isinstance(context, dict) and any(isinstance(v, float) and math.isinf(v) for v in context.values())


def _fields(event: EventFields) -> dict[str, Any]:
    """Every field, with the exact type of each context value (1, 1.0 and True are equal in Python)."""
    out: dict[str, Any] = {name: getattr(event, name) for name in FIELDS}
    out["context"] = {k: (type(v), v) for k, v in event.context.items()}
    out["offset"] = event.ts.utcoffset()
    return out


def _record(value: bytes, key: bytes | None) -> RawRecord:
    return RawRecord(value=value, key=key, topic="streamrec.events", partition=2, offset=11)


def _judge(value: bytes, key: bytes | None) -> None:
    """The assertions of this module, on one record."""
    record = _record(value, key)
    fast = decode_event_fast(value)
    schema_doc = _schema_accepts(value)
    verdict = validate_event(record, LIMITS, now=NOW)
    pydantic_ok = isinstance(verdict, Event) or verdict.reason in AFTER_SCHEMA
    # Where the schema and pydantic differ (year 0000: an RFC 3339 year, not a Python one), the codec declines.
    both = schema_doc is not None and pydantic_ok
    if fast is not None:
        assert both
        assert _fields(fast) == _fields(Event.model_validate(schema_doc))
    else:
        assert not both or (schema_doc is not None and _beyond_double(schema_doc)), schema_doc
    out = decode_event(record, LIMITS, now=NOW)
    event("accepted" if not isinstance(verdict, DeadLetter) else f"dead letter: {verdict.reason.value}")
    if isinstance(verdict, DeadLetter):
        assert out == verdict  # same reason, error, copy of the bytes, source and time
    else:
        assert not isinstance(out, DeadLetter)
        assert _fields(out) == _fields(verdict)
        # Valid records take the compiled path: no pydantic object is built for them.
        assert isinstance(out, WireEvent) or (schema_doc is not None and _beyond_double(schema_doc))


@settings(max_examples=2500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_mutated(), st.sampled_from(["user", "user", "user", "none", "other"]))
@example((json.dumps(GOOD).encode(), "u1"), "user")
@example((json.dumps({**GOOD, "user_id": "u1\n"}).encode(), "u1\n"), "user")  # Python's `$` would take it
@example((json.dumps({**GOOD, "ts": "2026-06-01T11:59:00.9999999Z"}).encode(), "u1"), "user")  # truncated
@example((json.dumps({**GOOD, "ts": "2026-06-01t11:59:00z"}).encode(), "u1"), "user")
@example((json.dumps({**GOOD, "context": {"n": 0}}).replace("0}", "1e400}").encode(), "u1"), "user")
@example((json.dumps({**GOOD, "context": {"n": 0}}).replace("0}", "9" * 4301 + "}").encode(), "u1"), "user")
@example((json.dumps({**GOOD, "context": {"n": 0}}).replace("0}", "9" * 4300 + "}").encode(), "u1"), "user")
@example((b"[" * 1000 + b"]" * 1000, None), "user")
@example((json.dumps({**GOOD, "type": "search", "item_id": None}).encode(), "u1"), "user")
def test_the_fast_path_accepts_what_the_schema_and_pydantic_accept_with_the_same_dead_letters(
    sample: tuple[bytes, str | None], key_kind: str
) -> None:
    value, user = sample
    key = {"user": None if user is None else user.encode(errors="surrogatepass"), "none": None, "other": b"x"}[key_kind]
    _judge(value, key)


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=256), st.none() | st.just(b"u1"))
def test_arbitrary_bytes_get_the_pydantic_verdict(value: bytes, key: bytes | None) -> None:
    _judge(value, key)


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (b"\xff\xfe\x00garbage", DeadLetterReason.UNDECODABLE),
        (json.dumps({**GOOD, "context": {"x": 0}}).replace("0}", "NaN}").encode(), DeadLetterReason.UNDECODABLE),
        (b"[1, 2]", DeadLetterReason.SCHEMA_VIOLATION),
        (json.dumps({**GOOD, "type": "teleport"}).encode(), DeadLetterReason.UNKNOWN_TYPE),
        (json.dumps({**GOOD, "note": "x" * MAX_BYTES}).encode(), DeadLetterReason.OVERSIZE),
        (json.dumps({**GOOD, "item_id": None}).encode(), DeadLetterReason.MISSING_ITEM),
        (json.dumps({**GOOD, "ts": "2026-06-01T11:59:00"}).encode(), DeadLetterReason.NAIVE_TIMESTAMP),
        (json.dumps({**GOOD, "ts": "2026-06-01T13:00:00Z"}).encode(), DeadLetterReason.FUTURE_TIMESTAMP),
        (json.dumps({**GOOD, "ts": "1969-12-31T23:59:59Z"}).encode(), DeadLetterReason.PAST_TIMESTAMP),
        (json.dumps({k: v for k, v in GOOD.items() if k != "event_id"}).encode(), DeadLetterReason.MISSING_KEY_FIELD),
        (json.dumps({**GOOD, "extra": 1}).encode(), DeadLetterReason.SCHEMA_VIOLATION),
        (json.dumps({**GOOD, "user_id": "u1\n"}).encode(), DeadLetterReason.SCHEMA_VIOLATION),
        (json.dumps({**GOOD, "user_id": "u2"}).encode(), DeadLetterReason.KEY_MISMATCH),
    ],
)
def test_each_reason_is_the_pydantic_paths(value: bytes, reason: DeadLetterReason) -> None:
    record = _record(value, b"u1")
    out = decode_event(record, LIMITS, now=NOW)
    assert isinstance(out, DeadLetter) and out.reason == reason, out
    assert out == validate_event(record, LIMITS, now=NOW)


def test_a_number_beyond_the_double_range_is_left_to_the_pydantic_path() -> None:
    value = json.dumps({**GOOD, "context": {"n": 0}}).replace("0}", "1e400}").encode()
    assert decode_event_fast(value) is None
    out = decode_event(_record(value, b"u1"), LIMITS, now=NOW)
    assert isinstance(out, Event) and out.context == {"n": math.inf}
