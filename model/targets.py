"""Which held-back events count as ranking targets: the "next-new" rule.

A target is an event whose item differs from the item of that user's previous event: re-viewing the item just
seen is trivially predicted by the repeat bonus and says nothing about ranking quality. Pure functions, shared
by the learner's gate (and meant for offline evaluation as well).

Example:
    >>> is_next_new("a", "b"), is_next_new("a", "a"), is_next_new(None, "a"), is_next_new("a", None)
    (True, False, True, False)
"""

from __future__ import annotations

from collections.abc import Iterable

from model.splits import TestPoint

__all__ = ["is_next_new", "next_new_points"]


def is_next_new(previous_item: str | None, item: str | None) -> bool:
    """True when `item` is a target: it exists and differs from the user's previous event's item (or there
    was no previous item, e.g. a search)."""
    return item is not None and item != previous_item


def next_new_points(points: Iterable[TestPoint]) -> list[TestPoint]:
    """The points whose target differs from the item of the last event in their state (order kept)."""
    out = []
    for point in points:
        previous = point.state.events[-1].item_id if point.state.events else None
        if is_next_new(previous, point.target):
            out.append(point)
    return out
