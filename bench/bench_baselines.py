"""Baseline scoring throughput: one micro-batch of 256 users with 50 events each, per scorer.

Run: `.venv/bin/python bench/bench_baselines.py`. Synthetic Zipf catalogue of 20k items; item context built with
`InteractionIndex` from 200k synthetic events. Prints milliseconds per batch (median of 20) and the ratio to the
100 ms budget of one micro-batch.
"""

from __future__ import annotations

import statistics
import time
from datetime import UTC, datetime, timedelta

import numpy as np

from contracts import Event, EventType, Item
from model.baselines import CooccurrenceScorer, PopularityScorer, RecentItemsScorer, default_blend
from model.history import build_user_state
from model.interactions import InteractionIndex

USERS, EVENTS, ITEMS, BUDGET_MS = 256, 50, 20_000, 100.0
TOP_K = 10  # Settings.top_k default


def _events(n_users: int, per_user: int, rng: np.random.Generator) -> list[Event]:
    pop = 1.0 / np.arange(1, ITEMS + 1) ** 1.05
    items = rng.choice(ITEMS, size=(n_users, per_user), p=pop / pop.sum())
    kinds = rng.choice(
        [EventType.VIEW, EventType.ADD_TO_CART, EventType.PURCHASE], size=items.shape, p=[0.9, 0.07, 0.03]
    )
    t0 = datetime(2024, 1, 1, tzinfo=UTC)
    return [
        Event(
            event_id=f"u{u}e{n}",
            user_id=f"u{u}",
            item_id=f"i{items[u, n]}",
            type=kinds[u, n],
            ts=t0 + timedelta(minutes=int(u % 600 + 3 * n)),
        )
        for u in range(n_users)
        for n in range(per_user)
    ]


def main() -> None:
    rng = np.random.default_rng(0)
    catalog = {
        f"i{j}": Item(item_id=f"i{j}", category=f"c{j % 50}", ts=datetime(2024, 1, 1, tzinfo=UTC)) for j in range(ITEMS)
    }
    context = InteractionIndex.build(_events(4000, EVENTS, rng), catalog).item_context()
    categories = dict(context.item_category)
    history = _events(USERS, EVENTS, rng)
    users = [build_user_state(f"u{u}", history[u * EVENTS : (u + 1) * EVENTS], categories) for u in range(USERS)]
    results: dict[str, float] = {}
    for name, scorer in [
        ("popularity", PopularityScorer()),
        ("cooccurrence", CooccurrenceScorer()),
        ("recent", RecentItemsScorer()),
        ("blend", default_blend()),
    ]:
        wall, cpu = [], []
        for _ in range(20):
            start, start_cpu = time.perf_counter(), time.process_time()
            scorer.score(users, context, TOP_K)
            wall.append((time.perf_counter() - start) * 1000.0)
            cpu.append((time.process_time() - start_cpu) * 1000.0)
        # CPU time too: on a shared machine wall time includes waiting for a core.
        cpu_ms = results[f"{name}_cpu_ms"] = statistics.median(cpu)
        print(
            f"{name:13s} wall {statistics.median(wall):7.1f} ms, cpu {cpu_ms:7.1f} ms / batch of {USERS}"
            f"  (cpu {cpu_ms / BUDGET_MS:.2f} of the {BUDGET_MS:.0f} ms budget)"
        )
    print("RESULT " + " ".join(f"{key}={value:.1f}" for key, value in results.items()))


if __name__ == "__main__":
    main()
