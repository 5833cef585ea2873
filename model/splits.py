"""Canonical data loading and the offline splits: time-based and leave-one-out.

A split is the training events (what item-side features and models may learn from), the catalog, and the test
points: each a `UserState` built with `model.history.UserHistory` from everything the user did before the target
event (training and earlier test events alike), plus the target item and its event type. Nothing in the history
is masked.

Which test events are targets (`TargetRule`, decided by `is_target` alone):

- `next-new` (default of `streamrec evaluate` and of training validation): an item event whose item differs from
  the item of the same user's previous event (any type; a search has no item, so the event after it is a target).
  Consecutive re-clicks of the item the user is on are never useful recommendations, and serving never shows the
  trigger item (`model.exclude.ExcludeCurrentItem`). Earlier, non-adjacent repeats stay valid targets.
- `every`: every item event (the protocol before issue 11; Split.protocol "time").
"""

from __future__ import annotations

import gzip
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import ValidationError

from contracts import DeadLetterReason, Event, EventType, InvalidEvent, Item
from model.history import HistoryConfig, UserHistory
from model.scoring import UserState

__all__ = [
    "EVENTS_FILE",
    "CATALOG_FILE",
    "Split",
    "TargetRule",
    "TestPoint",
    "cutoff_at_fraction",
    "cutoff_last_day",
    "is_target",
    "load_catalog",
    "load_events",
    "loo_split",
    "split_at",
    "time_split",
]

EVENTS_FILE = "events.jsonl.gz"
CATALOG_FILE = "catalog.jsonl.gz"

TargetRule = Literal["next-new", "every"]


def is_target(rule: TargetRule, item_id: str | None, previous_item_id: str | None, has_previous: bool) -> bool:
    """Whether an event with `item_id` is a test target under `rule`.

    Args:
        rule: `next-new` or `every` (module docstring).
        item_id: The event's item (None for a search: never a target).
        previous_item_id: The item of the same user's previous event (None for a search or no previous event).
        has_previous: Whether the user has any earlier event (without one there is no state to score).

    Example:
        >>> is_target("next-new", "b", "a", True), is_target("next-new", "a", "a", True)
        (True, False)
        >>> is_target("every", "a", "a", True), is_target("every", "a", None, False)
        (True, False)
    """
    if item_id is None or not has_previous:
        return False
    return rule == "every" or item_id != previous_item_id


@dataclass(frozen=True, slots=True)
class TestPoint:
    """One prediction to make: the user's state and the item they acted on next."""

    __test__ = False  # not a pytest test class

    state: UserState
    target: str  # item id of the next event
    target_type: EventType  # what the user did with it (view, purchase, ...)


@dataclass(frozen=True, slots=True)
class Split:
    """Training events, catalog and test points of one protocol."""

    protocol: str  # "next-new", "time" (every event a target) or "loo"
    train: Sequence[Event]
    catalog: Mapping[str, Item]
    points: Sequence[TestPoint]


def _read_jsonl(path: Path) -> Iterable[tuple[int, bytes]]:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as handle:
        for number, line in enumerate(handle, start=1):
            if line.strip():
                yield number, line


def load_events(directory: Path) -> list[Event]:
    """Events of an imported directory (`events.jsonl.gz`), in time order.

    Raises:
        FileNotFoundError: the directory has no events file.
        InvalidEvent: a line is not a valid `contracts.Event` (message names file and line).
    """
    path = Path(directory) / EVENTS_FILE
    if not path.exists():
        msg = f"{path} not found; import the data first (`streamrec data import`)"
        raise FileNotFoundError(msg)
    events = []
    for number, line in _read_jsonl(path):
        try:
            events.append(Event.model_validate_json(line))
        except ValidationError as exc:
            msg = f"{path}:{number}: not a valid event: {exc.errors()[0]['msg']}"
            raise InvalidEvent(DeadLetterReason.SCHEMA_VIOLATION, msg) from exc
    events.sort(key=lambda e: e.ts)
    return events


def load_catalog(directory: Path) -> dict[str, Item]:
    """Catalog of an imported directory (`catalog.jsonl.gz`); empty if the file is absent. Last version wins."""
    path = Path(directory) / CATALOG_FILE
    catalog: dict[str, Item] = {}
    if not path.exists():
        return catalog
    for number, line in _read_jsonl(path):
        try:
            item = Item.model_validate_json(line)
        except ValidationError as exc:
            msg = f"{path}:{number}: not a valid item: {exc.errors()[0]['msg']}"
            raise InvalidEvent(DeadLetterReason.SCHEMA_VIOLATION, msg) from exc
        catalog[item.item_id] = item
    return catalog


def split_at(events: Sequence[Event], cutoff: datetime) -> tuple[list[Event], list[Event]]:
    """(events before `cutoff`, events at or after it)."""
    return [e for e in events if e.ts < cutoff], [e for e in events if e.ts >= cutoff]


def cutoff_last_day(events: Sequence[Event]) -> datetime:
    """The cutoff leaving the last 24 hours of `events` as the test window."""
    return max(e.ts for e in events) - timedelta(days=1)


def cutoff_at_fraction(events: Sequence[Event], fraction: float) -> datetime:
    """The cutoff leaving the newest `fraction` of `events` (by count) as the test window."""
    if not 0.0 < fraction < 1.0:
        msg = f"test fraction must be in (0, 1), got {fraction}"
        raise ValueError(msg)
    ordered = sorted(e.ts for e in events)
    return ordered[min(len(ordered) - 1, int(len(ordered) * (1.0 - fraction)))]


def _item_categories(catalog: Mapping[str, Item]) -> dict[str, str]:
    return {item_id: item.category for item_id, item in catalog.items() if item.category is not None}


def _subsample(points: list[TestPoint], max_points: int | None, seed: int) -> list[TestPoint]:
    if max_points is None or len(points) <= max_points:
        return points
    keep = np.sort(np.random.default_rng(seed).choice(len(points), size=max_points, replace=False))
    return [points[i] for i in keep.tolist()]


def time_split(
    history: Sequence[Event],
    test: Sequence[Event],
    catalog: Mapping[str, Item],
    config: HistoryConfig | None = None,
    max_points: int | None = None,
    seed: int = 0,
    targets: TargetRule = "next-new",
) -> Split:
    """The item events in `test` that `is_target` accepts, each given all of its user's earlier events.

    Earlier events are the history and earlier test events. Users with no earlier event are skipped (no state to
    score). `max_points` subsamples with `seed`. `Split.protocol` is `next-new` or, for `every`, `time`.
    """
    categories = _item_categories(catalog)
    tagged = sorted([(e.ts, 0, e) for e in history] + [(e.ts, 1, e) for e in test], key=lambda t: (t[0], t[1]))
    users: dict[str, UserHistory] = {}
    previous: dict[str, str | None] = {}  # user -> item of their previous event
    points: list[TestPoint] = []
    for _, is_test, event in tagged:
        user = users.get(event.user_id)
        if is_test and is_target(targets, event.item_id, previous.get(event.user_id), user is not None):
            assert user is not None and event.item_id is not None
            points.append(TestPoint(user.state(), event.item_id, event.type))
        if user is None:
            user = users[event.user_id] = UserHistory(event.user_id, categories, config)
        user.add(event)
        previous[event.user_id] = event.item_id
    protocol = "time" if targets == "every" else targets
    return Split(protocol, list(history), catalog, _subsample(points, max_points, seed))


def loo_split(
    events: Sequence[Event],
    catalog: Mapping[str, Item],
    config: HistoryConfig | None = None,
    target: Literal["test", "valid"] = "test",
    max_points: int | None = None,
    seed: int = 0,
) -> Split:
    """Leave-one-out: each user's last item event is the test target, the one before it the validation target.

    Training events are everything before the target of each user (for `valid`, also without the test event).
    """
    drop = 1 if target == "test" else 2
    by_user: dict[str, list[Event]] = {}
    for event in sorted(events, key=lambda e: e.ts):
        by_user.setdefault(event.user_id, []).append(event)
    categories = _item_categories(catalog)
    train: list[Event] = []
    points: list[TestPoint] = []
    for user_id, own in by_user.items():
        item_positions = [i for i, e in enumerate(own) if e.item_id is not None]
        if len(item_positions) <= drop:
            train.extend(own)  # too short to evaluate; still training data
            continue
        cut = item_positions[-drop]
        train.extend(own[:cut])
        history = UserHistory(user_id, categories, config)
        for event in own[:cut]:
            history.add(event)
        goal = own[cut]
        points.append(TestPoint(history.state(), goal.item_id or "", goal.type))
    return Split("loo", train, catalog, _subsample(points, max_points, seed))
