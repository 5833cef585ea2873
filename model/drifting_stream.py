"""A seeded synthetic stream whose preferences shift halfway, with new items introduced mid-stream.

Items form rings within clusters (as in `model.synthetic`). First half: every user walks a ring forwards (the
next item is the one after the current one). Second half: users walk backwards (the preference shift a frozen
model cannot follow), and a `new_share` of them browse a cluster that did not exist before (new, titled items:
`n<j>`, category `new`). Users are active in one half only and interleaved in time, so the stream flows like a
shop's. Same seed, same stream.

Example:
    >>> from datetime import UTC, datetime
    >>> events, catalog, switch = drifting_stream(n_users=4, length=5, start=datetime(2024, 1, 1, tzinfo=UTC))
    >>> len(events), events[0].ts < switch <= events[-1].ts
    (20, True)
"""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

from contracts import Event, EventType, Item

__all__ = ["drifting_stream"]

_COLOURS = ["red", "blue", "green", "black", "white", "yellow", "purple", "orange"]


def _catalog(n_clusters: int, per_cluster: int, start: datetime) -> dict[str, Item]:
    items = {}
    for c in range(n_clusters):
        for j in range(per_cluster):
            item_id = f"c{c}-i{j}"
            title = f"{_COLOURS[c % len(_COLOURS)]} mug {j}"
            items[item_id] = Item(item_id=item_id, title=title, category=f"cat{c}", ts=start)
    for j in range(per_cluster):
        items[f"n{j}"] = Item(item_id=f"n{j}", title=f"bamboo lamp {j}", category="new", ts=start)
    return items


def drifting_stream(
    n_users: int = 400,
    length: int = 20,
    n_clusters: int = 6,
    per_cluster: int = 10,
    new_share: float = 0.3,
    seed: int = 7,
    start: datetime | None = None,
    span: timedelta = timedelta(hours=2),
) -> tuple[list[Event], dict[str, Item], datetime]:
    """(events in time order, catalog incl. the new items, the time the shift starts).

    Args:
        n_users: Users in all; the first half is active before the shift, the second half after it.
        length: Events per user.
        n_clusters, per_cluster: Ring clusters before the shift (the new cluster has `per_cluster` items too).
        new_share: Share of second-half users who browse the new cluster.
        seed: Everything random (clusters, start positions, times) comes from it.
        start: Time of the first event (default 2024-01-01 UTC); the stream covers `span`.
        span: Duration of the whole stream; each half takes half of it.
    """
    rng = random.Random(seed)
    start = start or datetime(2024, 1, 1, tzinfo=UTC)
    half = span / 2
    switch = start + half
    events = []
    for u in range(n_users):
        second = u >= n_users // 2
        new = second and rng.random() < new_share
        cluster = rng.randrange(n_clusters)
        position = rng.randrange(per_cluster)
        step = -1 if second else 1
        # Each user's session lies inside their half: start early enough that `length` events fit.
        session = timedelta(seconds=length * 10)
        offset = timedelta(seconds=rng.uniform(0, max(1.0, (half - session).total_seconds())))
        ts = (switch if second else start) + offset
        for n in range(length):
            ts += timedelta(seconds=rng.uniform(1, 10))
            if rng.random() < 0.85:
                position = (position + step) % per_cluster
            kind = rng.choices([EventType.VIEW, EventType.ADD_TO_CART, EventType.PURCHASE], [0.8, 0.15, 0.05])[0]
            item = f"n{position}" if new else f"c{cluster}-i{position}"
            events.append(Event(event_id=f"d{seed}-u{u}-e{n}", user_id=f"du{u}", item_id=item, type=kind, ts=ts))
    events.sort(key=lambda e: e.ts)
    return events, _catalog(n_clusters, per_cluster, start), switch
