"""Seeded synthetic shop data with learnable sequential structure, for tests and benchmarks.

Items form clusters (categories) laid out as rings; a user browses one cluster, mostly stepping to the next
item of the ring, sometimes re-viewing the previous one (repeats), carting and buying now and then, and
searching for the cluster's name. A sequential model can learn "next item on the ring"; popularity cannot.
"""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

from contracts import Event, EventType, Item

__all__ = ["synthetic_catalog", "synthetic_events"]

_START = datetime(2024, 1, 1, tzinfo=UTC)


def synthetic_catalog(n_clusters: int = 6, per_cluster: int = 10, extra_cold: int = 0) -> dict[str, Item]:
    """Items `c<k>-i<j>` titled "<colour> thing <j>", category `cat<k>`; `extra_cold` items never appear in events."""
    colours = ["red", "blue", "green", "black", "white", "yellow", "purple", "orange"]
    items = {}
    for c in range(n_clusters):
        for j in range(per_cluster + (extra_cold if c == 0 else 0)):
            item_id = f"c{c}-i{j}"
            title = f"{colours[c % len(colours)]} thing {j}"
            items[item_id] = Item(item_id=item_id, title=title, category=f"cat{c}", ts=_START)
    return items


def synthetic_events(
    n_users: int = 120, length: int = 25, n_clusters: int = 6, per_cluster: int = 10, seed: int = 0
) -> list[Event]:
    """Events of `n_users` users, `length` events each, in time order (users interleaved over ~10 days)."""
    rng = random.Random(seed)
    events = []
    for u in range(n_users):
        cluster = rng.randrange(n_clusters)
        position = rng.randrange(per_cluster)
        ts = _START + timedelta(seconds=rng.randrange(10 * 86400))
        for n in range(length):
            ts += timedelta(seconds=rng.choice([5, 30, 120, 600, 3600]))
            if rng.random() < 0.05:
                kind, item, query = EventType.SEARCH, None, f"cat{cluster} things"
            else:
                if rng.random() < 0.8:
                    position = (position + 1) % per_cluster
                kind = rng.choices([EventType.VIEW, EventType.ADD_TO_CART, EventType.PURCHASE], [0.8, 0.15, 0.05])[0]
                item, query = f"c{cluster}-i{position}", None
            events.append(Event(event_id=f"u{u}-e{n}", user_id=f"u{u}", item_id=item, type=kind, ts=ts, query=query))
    events.sort(key=lambda e: e.ts)
    return events
