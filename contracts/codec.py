"""Compiled codecs of the worker's hot path (msgspec): events in, recommendations out; pydantic stays the contract.

- **Events in.** `decode_event_fast` decodes a record's bytes straight into a `WireEvent` (a frozen msgspec
  struct with the fields of `contracts.Event`) and validates it with the rules of `schemas/event.json`: the
  string lengths and patterns, the event-type enum, the required fields and the forbidden extra fields come from
  `Event.model_json_schema()` (the schema that file is generated from), read here at import. It answers None for
  anything it does not accept, and the caller then judges the record with the pydantic path
  (`streams.validation.validate_event`), which names the exact dead-letter reason. So the compiled path only has
  to be right about what it accepts; `tests/unit/test_codec_parity.py` holds it to accepting what the schema and
  pydantic accept, with the same values.
- **Recommendations out.** `encode_recommendation` writes a `contracts.Recommendation` as JSON with msgspec, from
  the records' field values (no pydantic serializer per record): the same document as `model_dump_json` once
  parsed (same fields, same values, same date-time text).

Why not msgspec's own `datetime` for `ts`: it rounds fractions beyond microseconds where pydantic truncates, and
accepts forms the schema's pattern does not. `ts` is decoded as text under the schema's pattern and parsed by
`datetime.fromisoformat` (which truncates, as pydantic does).
"""

from __future__ import annotations

import numbers
from datetime import datetime
from typing import Annotated, Any, Protocol

import msgspec
from pydantic import BaseModel

from contracts.records import Event, EventType, Evidence, Explanation, Reason, Recommendation, RecommendedItem

__all__ = [
    "EventDoc",
    "EventFields",
    "WireEvent",
    "decode_event_fast",
    "encode_recommendation",
    "python_pattern",
]

_EVENT_SCHEMA: dict[str, Any] = Event.model_json_schema(mode="validation")
# The keywords of a string field's schema that `_string_rules` carries over (or that carry no rule).
_STRING_KEYWORDS = {"type", "anyOf", "maxLength", "minLength", "pattern", "format", "default", "description", "title"}


def python_pattern(pattern: str) -> str:
    """A JSON Schema (ECMA-262) pattern as a Python `re` pattern with the same meaning for our patterns.

    In Python, `$` also matches before a final newline (`"a\\n"` would pass `^[^\\x00-\\x1f]+$`); the schema's
    `$` (and pydantic's Rust regex) means the end of the text, which is Python's `\\Z`. A pattern with any other
    `$` is refused rather than guessed at.
    """
    body = pattern.removesuffix("$")
    if "$" in body or body == pattern:
        msg = f"cannot translate pattern {pattern!r} for the compiled codec"
        raise ValueError(msg)
    return body + r"\Z"


def _string_rules(field: str) -> msgspec.Meta:
    """The constraints of the string branch of `Event.<field>` in its JSON Schema, as msgspec metadata."""
    prop = _EVENT_SCHEMA["properties"][field]
    keywords = set(prop) | {k for b in prop.get("anyOf", []) for k in b}
    if not keywords <= _STRING_KEYWORDS:  # at import: a new rule in the contract must be stated here too
        msg = f"Event.{field} has rules {sorted(keywords - _STRING_KEYWORDS)} that contracts.codec does not check"
        raise TypeError(msg)
    [branch] = [b for b in prop.get("anyOf", [prop]) if b.get("type") == "string"]
    pattern = branch.get("pattern")
    return msgspec.Meta(
        min_length=branch.get("minLength"),
        max_length=branch.get("maxLength"),
        pattern=None if pattern is None else python_pattern(pattern),
    )


_EVENT_ID, _USER_ID, _ITEM_ID = _string_rules("event_id"), _string_rules("user_id"), _string_rules("item_id")
_SESSION_ID, _QUERY, _TS = _string_rules("session_id"), _string_rules("query"), _string_rules("ts")


class EventDoc(msgspec.Struct, frozen=True, forbid_unknown_fields=True, gc=False):
    """`contracts.Event` as it is on the wire (`ts` still text); the msgspec twin of `schemas/event.json`."""

    event_id: Annotated[str, _EVENT_ID]
    user_id: Annotated[str, _USER_ID]
    type: EventType
    ts: Annotated[str, _TS]
    item_id: Annotated[str, _ITEM_ID] | None = None
    session_id: Annotated[str, _SESSION_ID] | None = None
    query: Annotated[str, _QUERY] | None = None
    context: dict[str, str | int | float | bool | None] = {}


class WireEvent(msgspec.Struct, frozen=True, gc=False):
    """A valid event decoded by the compiled codec: the fields of `contracts.Event`, `ts` parsed (tz-aware)."""

    event_id: str
    user_id: str
    item_id: str | None
    type: EventType
    ts: datetime
    session_id: str | None
    query: str | None
    context: dict[str, str | int | float | bool | None]


class EventFields(Protocol):
    """What the hot path reads of an event: a `contracts.Event` (pydantic path) or a `WireEvent` (compiled)."""

    @property
    def event_id(self) -> str:
        """Globally unique id."""

    @property
    def user_id(self) -> str:
        """The acting user."""

    @property
    def item_id(self) -> str | None:
        """The item acted on (None only for a search)."""

    @property
    def type(self) -> EventType:
        """The kind of action."""

    @property
    def ts(self) -> datetime:
        """Event time (tz-aware)."""

    @property
    def session_id(self) -> str | None:
        """Shop session."""

    @property
    def query(self) -> str | None:
        """Search text."""

    @property
    def context(self) -> dict[str, str | int | float | bool | None]:
        """Free-form extras."""


_EVENT_DECODER = msgspec.json.Decoder(EventDoc)


def decode_event_fast(value: bytes) -> WireEvent | None:
    """The event in `value` if it is UTF-8 JSON that `schemas/event.json` accepts; None for anything else.

    None does not say why: the caller judges such a record with the pydantic path, which names the reason. The
    event-time range and the record key are the caller's checks (`streams.validation.decode_event`).
    """
    try:
        doc = _EVENT_DECODER.decode(value)
    except (msgspec.MsgspecError, RecursionError):  # not JSON, not UTF-8, a rule broken, too deep
        return None
    if doc.item_id is None and doc.type is not EventType.SEARCH:
        return None
    try:
        # The pattern admits only digits, `-:+.`, `T`/`t` and `Z`/`z`: upper-casing changes only the letters.
        ts = datetime.fromisoformat(doc.ts.upper())
    except ValueError:  # a date that does not exist (2024-02-30), year 0: not a `date-time`
        return None
    return WireEvent(doc.event_id, doc.user_id, doc.item_id, doc.type, ts, doc.session_id, doc.query, doc.context)


# The records a recommendation is made of; each is encoded from its field values (`__dict__`).
_OUTPUT_RECORDS = (Recommendation, RecommendedItem, Explanation, Evidence, Reason)


def _plain_output(cls: type[BaseModel]) -> type[BaseModel]:
    """`cls`, checked to serialise as its field values: no alias, serializer or computed field (else refused at
    import, so a contract change cannot make the compiled output differ from `model_dump_json` silently)."""
    decorators = cls.__pydantic_decorators__
    aliased = any(f.alias is not None or f.serialization_alias is not None for f in cls.model_fields.values())
    custom = decorators.field_serializers or decorators.model_serializers or decorators.computed_fields
    if aliased or custom or cls.model_config.get("extra") != "forbid":
        msg = f"{cls.__name__} does not serialise as its field values: contracts.codec cannot encode it"
        raise TypeError(msg)
    return cls


_PLAIN = frozenset(_plain_output(cls) for cls in _OUTPUT_RECORDS)


def _enc_hook(obj: Any) -> Any:
    if type(obj) in _PLAIN:
        return obj.__dict__  # a frozen, extra="forbid" record: exactly its fields
    if isinstance(obj, float):  # numpy.float64, the explainer's weights (a C-level check, before the ABCs)
        return float(obj)
    if isinstance(obj, numbers.Integral):  # other numpy scalars (pydantic writes them too)
        return int(obj)
    if isinstance(obj, numbers.Real):
        return float(obj)
    msg = f"cannot encode {type(obj).__name__}"
    raise TypeError(msg)


_ENCODER = msgspec.json.Encoder(enc_hook=_enc_hook)


def encode_recommendation(recommendation: Recommendation) -> bytes:
    """`recommendation` as JSON: once parsed, the document `recommendation.model_dump_json()` writes."""
    return _ENCODER.encode(recommendation)
