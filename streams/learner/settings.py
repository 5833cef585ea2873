"""The learner's tunables, free of torch: `LearnerSettings` (and the automatic rollback's `RollbackConfig`).

`streamrec learner` builds its options from these fields and defaults (so the command imports no model code
before it runs); `streams.learner.service.Learner` reads them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from model.cycle_config import ContinualConfig, GateConfig

__all__ = ["LearnerSettings", "RollbackConfig"]


@dataclass(frozen=True)
class RollbackConfig:
    """When a new version is rolled back to its parent."""

    window_seconds: float = 1800.0  # a version is watched this long after it was written
    min_impressions: int = 200  # per version, before any decision (the first look)
    alpha: float = 0.01  # one-sided level over a version's whole watch (all looks, all rates)
    metrics: tuple[str, ...] = ("ctr", "conversion")  # rates watched (keys of `_COUNTS`)


@dataclass(frozen=True)
class LearnerSettings:
    """The learner's tunables: when to run a cycle and how; `continual`, `gate` and `rollback` hold the rest.

    Built by `streamrec learner` from its options (`streamrec.commands.learner`), passed to `Learner`.
    """

    every_events: int = 500  # a cycle as soon as this many events are pending ...
    every_seconds: float = 30.0  # ... or this long after the previous cycle, with at least `min_events` pending
    min_events: int = 50
    from_beginning: bool = False  # a new consumer group starts at the earliest offset (default: latest)
    text_init: bool = True  # initialise new titled items from MiniLM text (loaded only when needed)
    track_frozen: bool = True  # also score a fixed reference version on each window (drift report) ...
    frozen_version: str | None = None  # ... this one (default: the version this process started from)
    effects_window_seconds: float = 1800.0  # a click/cart/purchase this soon after a recommendation is a hit
    effects_every_seconds: float = 10.0  # how often online.json is rewritten (and the rollback rule checked)
    restore_events: int = 20_000  # on start with committed offsets: events re-read per partition for histories
    max_window_events: int = 0  # a learner behind the stream trains on the newest this many (0: all pending) ...
    # ... the older pending events update the histories and the replay reservoir only (`skipped_to_newest`)
    continual: ContinualConfig = field(default_factory=ContinualConfig)
    gate: GateConfig = field(default_factory=GateConfig)
    rollback: RollbackConfig = field(default_factory=RollbackConfig)
