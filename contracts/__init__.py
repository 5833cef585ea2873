"""Shared contracts: the records on every topic, settings, topic names and errors.

Every other package may import this one; it imports none of them.
"""

from contracts.errors import (
    ChecksumMismatch,
    ConfigError,
    InvalidEvent,
    ModelError,
    ServiceUnavailable,
    StreamrecError,
)
from contracts.records import (
    DeadLetter,
    DeadLetterReason,
    Event,
    EventType,
    Evidence,
    Explanation,
    Item,
    ModelUpdate,
    Reason,
    ReasonKind,
    Recommendation,
    RecommendedItem,
)
from contracts.settings import Settings
from contracts.state import ItemContext, PastEvent, UserState
from contracts.topics import EVENTS_TOPIC_CONFIGS, IDEMPOTENCY_HORIZON_SECONDS, TopicNames, TopicSpec, topic_specs

__all__ = [
    "EVENTS_TOPIC_CONFIGS",
    "IDEMPOTENCY_HORIZON_SECONDS",
    "ChecksumMismatch",
    "ConfigError",
    "DeadLetter",
    "DeadLetterReason",
    "Event",
    "EventType",
    "Evidence",
    "Explanation",
    "InvalidEvent",
    "Item",
    "ItemContext",
    "ModelError",
    "ModelUpdate",
    "PastEvent",
    "Reason",
    "ReasonKind",
    "Recommendation",
    "RecommendedItem",
    "ServiceUnavailable",
    "Settings",
    "StreamrecError",
    "TopicNames",
    "TopicSpec",
    "UserState",
    "topic_specs",
]
