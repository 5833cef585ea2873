"""Which held-back events count as ranking targets in the learner's gate: the "next-new" rule of
`model.splits.is_target` (one rule for offline evaluation, training validation and the gate).

A target is an event whose item differs from the item of that user's previous event: re-viewing the item just
seen is trivially predicted by the repeat bonus and says nothing about ranking quality.
"""

from __future__ import annotations

from collections.abc import Iterable

from model.splits import TestPoint, is_target

__all__ = ["next_new_points"]


def next_new_points(points: Iterable[TestPoint]) -> list[TestPoint]:
    """The points whose target is a next-new target given the events in their state (order kept)."""
    out = []
    for point in points:
        events = point.state.events
        previous = events[-1].item_id if events else None
        if is_target("next-new", point.target, previous, bool(events)):
            out.append(point)
    return out
