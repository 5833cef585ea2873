"""Topic names, all derived from one configurable prefix."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Literal

__all__ = ["EVENTS_TOPIC_CONFIGS", "IDEMPOTENCY_HORIZON_SECONDS", "TOPICS", "TopicNames", "TopicSpec", "topic_specs"]

# The shortest time a user's features (and with them the offsets that make replays change nothing) outlive the
# user's newest event: the feature store's user TTL is at least this. The events topic keeps records for less,
# retention plus one segment roll (Kafka deletes whole segments), so any event a consumer can still read (a
# replay, a reset to the earliest offset after its committed offsets expired) finds its user's watermark.
IDEMPOTENCY_HORIZON_SECONDS = 7 * 86400
EVENTS_TOPIC_CONFIGS = {"retention.ms": str(6 * 86400 * 1000), "segment.ms": str(3600 * 1000)}


@dataclass(frozen=True)
class TopicNames:
    """The five topics of a deployment: `<prefix>.<role>` with `-` for `_`, e.g. `streamrec.dead-letter`."""

    prefix: str = "streamrec"
    events: str = field(init=False)  # user events, key = user_id
    items: str = field(init=False)  # catalog items, compacted, key = item_id
    recommendations: str = field(init=False)  # recommendations out, key = user_id
    dead_letter: str = field(init=False)  # records that could not be processed, with the reason and source offset
    model_updates: str = field(init=False)  # announcements of newly promoted model versions

    def __post_init__(self) -> None:
        """Name every topic field after the prefix."""
        for f in fields(self):
            if not f.init:
                object.__setattr__(self, f.name, f"{self.prefix}.{f.name.replace('_', '-')}")


@dataclass(frozen=True)
class TopicSpec:
    """A topic to create: name, partitions and topic-level configs (replication factor is 1 locally)."""

    name: str
    partitions: int
    configs: dict[str, str] = field(default_factory=dict)


# The five topics, declared once: `streamrec stack up` creates them, the worker declares them to Faust, and
# `docker-compose.yml`'s one-shot `topics` service creates the same (a unit test holds it to this table). Every
# topic but `recommendations` gets the events' partition count, so Faust tables fed from any of them are
# co-partitioned with the events stream (Faust rejects a source topic whose partition count differs).
TOPICS: tuple[tuple[str, Literal["events", "recommendations"], dict[str, str]], ...] = (
    ("events", "events", EVENTS_TOPIC_CONFIGS),
    ("recommendations", "recommendations", {}),
    ("items", "events", {"cleanup.policy": "compact"}),
    ("dead_letter", "events", {}),
    ("model_updates", "events", {}),
)


def topic_specs(names: TopicNames, events_partitions: int, recommendations_partitions: int) -> list[TopicSpec]:
    """`TOPICS` under `names`' prefix with these partition counts."""
    counts = {"events": events_partitions, "recommendations": recommendations_partitions}
    return [TopicSpec(getattr(names, role), counts[count], dict(cfg)) for role, count, cfg in TOPICS]
