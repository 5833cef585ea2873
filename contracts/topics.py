"""Topic names, all derived from one configurable prefix."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["TopicNames"]


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
