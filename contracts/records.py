"""The records on streamrec's topics, declared once; `schemas/*.json` is generated from these."""

from __future__ import annotations

import re
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any, Self

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_validator, model_validator

__all__ = [
    "TIMESTAMP_PATTERN",
    "DeadLetter",
    "DeadLetterReason",
    "Event",
    "EventType",
    "Evidence",
    "Explanation",
    "Item",
    "ModelUpdate",
    "Reason",
    "ReasonKind",
    "Recommendation",
    "RecommendedItem",
]

# No control characters: ids become parts of Redis keys and `\x1f`-joined lists (`feature_store/KEYS.md`).
Id = Annotated[str, Field(min_length=1, max_length=128, pattern=r"^[^\x00-\x1f\x7f]+$")]
ContextValue = str | int | float | bool | None
# RFC 3339 date-time with an offset (what `format: date-time` means), as text only: pydantic alone would also take
# numbers, unix-time strings and naive times. The validator and `schemas/event.json` share it.
TIMESTAMP_PATTERN = (
    r"^[0-9]{4}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])[Tt]([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](\.[0-9]+)?"
    r"([Zz]|[+-]([01][0-9]|2[0-3]):[0-5][0-9])$"
)
_TIMESTAMP = re.compile(TIMESTAMP_PATTERN)


class _Record(BaseModel):
    # Frozen: a record is a fact; unknown fields are a contract violation, not something to drop silently.
    model_config = ConfigDict(frozen=True, extra="forbid")


class EventType(StrEnum):
    """What the user did."""

    VIEW = "view"
    CLICK = "click"
    ADD_TO_CART = "add_to_cart"
    REMOVE_FROM_CART = "remove_from_cart"
    PURCHASE = "purchase"
    SEARCH = "search"


class Event(_Record):
    """One user action. Topic `<prefix>.events`, key = `user_id`."""

    # The JSON Schema states the same rule as `_item_matches_type`: only a search may lack an item.
    model_config = ConfigDict(
        json_schema_extra={
            "if": {"properties": {"type": {"not": {"const": "search"}}}},
            "then": {"required": ["item_id"], "properties": {"item_id": {"type": "string"}}},
        }
    )

    event_id: Id = Field(description="Globally unique id; a replay with the same id changes nothing.")
    user_id: Id = Field(description="The acting user; also the partition key.")
    item_id: Id | None = Field(default=None, description="The item acted on; null only for `search`.")
    type: EventType = Field(description="The kind of action.")
    ts: AwareDatetime = Field(
        description="Event time set by the producer (tz-aware); never overwritten.",
        json_schema_extra={"pattern": TIMESTAMP_PATTERN},
    )
    session_id: Id | None = Field(default=None, description="Shop session, if the shop has one.")
    query: Annotated[str, Field(max_length=1024)] | None = Field(
        default=None, description="Search text, for `search` events."
    )
    context: dict[str, ContextValue] = Field(
        default_factory=dict, description="Free-form extras (quantity, price, page, device, ...)."
    )

    @field_validator("ts", mode="before")
    @classmethod
    def _ts_is_rfc3339_text(cls, value: Any) -> Any:
        if isinstance(value, datetime):
            return value
        if not isinstance(value, str) or not _TIMESTAMP.match(value):
            msg = "ts must be an RFC 3339 date-time string with an offset, e.g. 2026-01-31T12:00:00Z"
            raise ValueError(msg)
        return value

    @model_validator(mode="after")
    def _item_matches_type(self) -> Self:
        if self.type is not EventType.SEARCH and self.item_id is None:
            msg = f"item_id is required for a {self.type.value} event"
            raise ValueError(msg)
        return self


class Item(_Record):
    """One catalog entry. Topic `<prefix>.items` (compacted), key = `item_id`."""

    item_id: Id = Field(description="Catalog id.")
    title: Annotated[str, Field(max_length=512)] | None = Field(default=None, description="Display title.")
    category: Annotated[str, Field(max_length=256)] | None = Field(default=None, description="Category path or id.")
    price: Annotated[float, Field(ge=0)] | None = Field(default=None, description="Unit price in shop currency.")
    brand: Annotated[str, Field(max_length=256)] | None = Field(default=None, description="Brand name.")
    available: bool = Field(default=True, description="False hides the item from recommendations.")
    ts: AwareDatetime = Field(description="When this version of the item was published (tz-aware).")


class ReasonKind(StrEnum):
    """Structured reason kinds; only reasons true for this user and item are attached."""

    SIMILAR_TO = "similar_to"
    CATEGORY_AFFINITY = "category_affinity"
    CART_COMPLEMENT = "cart_complement"
    SEARCH_MATCH = "search_match"
    TRENDING = "trending"
    BOUGHT_TOGETHER = "bought_together"
    SEEN_BEFORE = "seen_before"


class Evidence(_Record):
    """One of the user's own past events that drove a recommendation."""

    event_id: Id = Field(description="Id of the user's past event.")
    item_id: Id | None = Field(description="Item of that event (null for a search).")
    type: EventType = Field(description="Type of that event.")
    ts: AwareDatetime = Field(description="Event time of that event.")
    weight: float = Field(description="Signed attribution weight; larger = contributed more.")


class Reason(_Record):
    """A structured reason with its strength and a human-readable detail."""

    kind: ReasonKind = Field(description="Reason kind.")
    detail: Annotated[str, Field(max_length=512)] = Field(description="Human detail, e.g. the similar item's title.")
    weight: float = Field(description="Strength of this reason (kind-specific scale, larger = stronger).")


class Explanation(_Record):
    """Why an item was recommended."""

    evidence: list[Evidence] = Field(default_factory=list, description="Driving past events, strongest first.")
    reasons: list[Reason] = Field(default_factory=list, description="Structured reasons, strongest first.")
    text: Annotated[str, Field(max_length=1024)] = Field(description="Short natural-language reason.")


class RecommendedItem(_Record):
    """One recommended item."""

    item_id: Id = Field(description="Recommended item.")
    score: float = Field(description="Scorer's score (higher = better; scale depends on the scorer).")
    rank: Annotated[int, Field(ge=1)] = Field(description="1-based rank.")
    explanation: Explanation = Field(description="Why it is recommended.")


class Recommendation(_Record):
    """Next items for one user. Topic `<prefix>.recommendations`, key = `user_id`."""

    user_id: Id = Field(description="The user.")
    trigger_event_id: Id = Field(description="The user's event that triggered this recommendation.")
    model_version: Annotated[str, Field(min_length=1, max_length=128)] = Field(
        description="Version of the scorer that produced it."
    )
    generated_at: AwareDatetime = Field(description="Wall-clock time it was produced.")
    latency_ms: Annotated[float, Field(ge=0)] = Field(
        description="From the trigger event's arrival at the worker to production, in milliseconds."
    )
    items: list[RecommendedItem] = Field(description="Ranked items, best first.")


class DeadLetterReason(StrEnum):
    """Why a record could not be processed."""

    UNDECODABLE = "undecodable"
    SCHEMA_VIOLATION = "schema_violation"
    UNKNOWN_TYPE = "unknown_type"
    OVERSIZE = "oversize"
    MISSING_ITEM = "missing_item"
    FUTURE_TIMESTAMP = "future_timestamp"
    NAIVE_TIMESTAMP = "naive_timestamp"
    MISSING_KEY_FIELD = "missing_key_field"
    KEY_MISMATCH = "key_mismatch"
    PAST_TIMESTAMP = "past_timestamp"
    PROCESSING_FAILED = "processing_failed"


class DeadLetter(_Record):
    """A record that could not be processed, with a copy of its bytes. Topic `<prefix>.dead-letter`."""

    reason: DeadLetterReason = Field(description="Reason code; also a metrics label.")
    error: Annotated[str, Field(max_length=2048)] = Field(description="Human-readable error.")
    payload_b64: str = Field(description="The original value, base64 (at most its first 512 KiB; see `truncated`).")
    key_b64: str | None = Field(default=None, description="The original key bytes, base64 (at most 4 KiB of them).")
    payload_bytes: Annotated[int, Field(ge=0)] = Field(default=0, description="Size of the original value.")
    truncated: bool = Field(
        default=False,
        description="The value or key copy is cut short, so that a dead letter always fits the producer's 1 MB limit.",
    )
    source_topic: str = Field(description="Topic the record came from.")
    source_partition: Annotated[int, Field(ge=0)] = Field(description="Its partition.")
    source_offset: Annotated[int, Field(ge=0)] = Field(description="Its offset.")
    received_at: AwareDatetime = Field(description="When the worker rejected it.")


class ModelUpdate(_Record):
    """A promoted model version. Topic `<prefix>.model-updates`."""

    version: Annotated[str, Field(min_length=1, max_length=128)] = Field(description="Model version.")
    uri: str = Field(description="Where the model directory is (path or file:// URI).")
    sha256: Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")] = Field(description="sha256 of model.safetensors.")
    metrics: dict[str, float] = Field(default_factory=dict, description="Gate metrics, e.g. ndcg@10.")
    parent_version: str | None = Field(default=None, description="Version it was fine-tuned from.")
    created_at: AwareDatetime = Field(description="When it was promoted (tz-aware).")
