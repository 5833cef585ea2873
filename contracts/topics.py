"""Topic names, all derived from one configurable prefix."""

from __future__ import annotations

from dataclasses import dataclass, field
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
    """The five topics of a deployment, e.g. `streamrec.events` for prefix `streamrec`."""

    prefix: str = "streamrec"

    @property
    def events(self) -> str:
        """User events, key = user_id."""
        return f"{self.prefix}.events"

    @property
    def items(self) -> str:
        """Catalog items, compacted, key = item_id."""
        return f"{self.prefix}.items"

    @property
    def recommendations(self) -> str:
        """Recommendations out, key = user_id."""
        return f"{self.prefix}.recommendations"

    @property
    def dead_letter(self) -> str:
        """Records that could not be processed, with the reason and source offset."""
        return f"{self.prefix}.dead-letter"

    @property
    def model_updates(self) -> str:
        """Announcements of newly promoted model versions."""
        return f"{self.prefix}.model-updates"


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
