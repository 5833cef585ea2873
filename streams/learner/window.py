"""Which offsets a learner cycle used: the window per partition, the part trained on, what to commit.

The learner consumes while a cycle trains; `Windows` records every consumed record's offset (and, for valid
events, their order in the `StreamBuffer`), and `cut` closes the current window: the whole consumed range per
partition `[first, end)` (committed once the cycle has finished, so a restart never skips a window), and — when
the learner is behind the stream — the newest `max_events` events kept for training, the older ones moved to the
histories and the replay reservoir only (`skipped_to_newest`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from aiokafka import TopicPartition

from model.continual import ReplayReservoir
from model.stream_buffer import StreamBuffer

__all__ = ["Cut", "Windows"]


@dataclass(frozen=True, slots=True)
class Cut:
    """One closed window."""

    offsets: dict[str, list[int]]  # partition -> [first, end) consumed
    commit: dict[TopicPartition, int]  # what to commit once the cycle has used it
    log: dict[str, Any]  # `skipped_to_newest` and `trained_offsets` for the cycle's log line


@dataclass
class Windows:
    """Offsets consumed since the last cut (see the module docstring)."""

    ends: dict[TopicPartition, int] = field(default_factory=dict)  # next offset per partition (all time)
    starts: dict[TopicPartition, int] = field(default_factory=dict)  # first offset of the open window
    positions: list[tuple[int, int]] = field(default_factory=list)  # (partition, offset) per pending event

    def consumed(self, tp: TopicPartition, offset: int, buffered: bool) -> None:
        """Record one consumed record; `buffered`: it was a valid event added to the buffer."""
        self.starts.setdefault(tp, offset)
        self.ends[tp] = offset + 1
        if buffered:
            self.positions.append((tp.partition, offset))

    def cut(self, buffer: StreamBuffer, reservoir: ReplayReservoir, max_events: int) -> Cut:
        """Close the window; call right before `buffer.cut` (`max_events` 0: train on every pending event)."""
        offsets = {str(tp.partition): [start, self.ends[tp]] for tp, start in self.starts.items()}
        skipped = max(0, len(self.positions) - max_events) if max_events else 0
        if skipped:
            reservoir.add(buffer.drop_oldest(skipped))
        firsts: dict[str, int] = {}
        for partition, offset in self.positions[skipped:]:
            firsts.setdefault(str(partition), offset)
        trained = {p: [first, offsets[p][1]] for p, first in firsts.items()}
        self.starts, self.positions = {}, []
        return Cut(offsets, dict(self.ends), {"skipped_to_newest": skipped, "trained_offsets": trained})
