"""Topic names, all derived from one configurable prefix."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["EVENTS_TOPIC_CONFIGS", "IDEMPOTENCY_HORIZON_SECONDS", "TopicNames"]

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
