"""What the feature store returns besides `contracts.UserState` / `ItemContext` (the scorers' own view)."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["ApplyResult", "Position"]


@dataclass(frozen=True, slots=True)
class Position:
    """Where an event was read: exactly-once keeps, per user and per item-side slot, the newest offset applied
    from each topic partition (`KEYS.md`), instead of a key per event."""

    topic: str
    partition: int
    offset: int

    @property
    def source(self) -> str:
        """The watermark's field: `topic:partition` (Kafka topic names have no `:`)."""
        return f"{self.topic}:{self.partition}"


@dataclass(frozen=True, slots=True)
class ApplyResult:
    """Outcome of `FeatureStore.apply_events`."""

    applied: tuple[str, ...]  # event ids applied now
    duplicates: tuple[str, ...]  # event ids already applied before (replays)
