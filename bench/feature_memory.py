"""Redis memory the feature store keeps per event and per user, over a fixed user/item population.

Applies `bench/pipeline.py`'s seeded stream (uniform users, Zipf-like items, a 20k-item catalog by default) to a
leased DB of the local stack's Redis (started if needed), as the worker does (`FeatureStore.apply_events` in
batches of 1,024 with each event's topic position), and after each checkpoint sums `MEMORY USAGE` over the DB's
keys (its own keys only: the server may hold other DBs). Once every user has a full history (50 events), a
layout whose state grows with users and items keeps the total flat: `bytes_per_event_retained` is the growth
per event between the first and the last checkpoint.

    nice -n 10 .venv/bin/python bench/feature_memory.py --checkpoints 100000 1000000

Last line: `RESULT bytes_per_event_retained=... bytes_per_user=... keys=... mem_<n>=... events_per_s=...`.
"""

from __future__ import annotations

import argparse
import asyncio
import inspect
import sys
import time
from pathlib import Path

import redis.asyncio as aioredis

sys.path.insert(0, str(Path(__file__).resolve().parent))
from pipeline import Stream, catalog  # noqa: E402 (the pipeline bench's generator)

from feature_store import FeatureConfig, FeatureStore, store_client  # noqa: E402
from streamrec.child_processes import leased_redis_db  # noqa: E402
from streamrec.stack import LocalStack  # noqa: E402
from streamrec.stack_config import StackConfig  # noqa: E402

_BATCH = 1024


async def db_bytes(client: aioredis.Redis) -> tuple[int, int]:
    """(sum of MEMORY USAGE, key count) over the client's DB."""
    total = count = 0
    keys: list[bytes] = []
    async for key in client.scan_iter(count=1000):
        keys.append(key)
    for start in range(0, len(keys), 1000):
        pipe = client.pipeline(transaction=False)
        for key in keys[start : start + 1000]:
            pipe.memory_usage(key, samples=0)
        for used in await pipe.execute():
            total += int(used or 0)
            count += 1
    return total, count


async def apply(store: FeatureStore, stream: Stream, n: int, offset: int) -> int:
    """Apply the stream's next `n` events in worker-sized batches; returns the next offset."""
    # Layouts before v4 had no positions (a claim key per event instead): the same bench measures them too.
    positional = "positions" in inspect.signature(store.apply_events).parameters
    for start in range(0, n, _BATCH):
        events = stream.take(min(_BATCH, n - start))
        if positional:
            from feature_store import Position  # noqa: PLC0415

            at = [Position("events", 0, offset + i) for i in range(len(events))]
            await store.apply_events(events, at)
        else:
            await store.apply_events(events)
        offset += len(events)
    return offset


async def bench(args: argparse.Namespace) -> None:
    """Apply up to each checkpoint, measure, print a table and the RESULT line."""
    info = LocalStack(StackConfig()).up()
    with leased_redis_db(info.redis_url, ttl_seconds=3600) as url:
        client = store_client(url)
        store = FeatureStore(client, FeatureConfig(namespace="mem"))
        await store.upsert_items(catalog(args.items))
        stream, done, rows = Stream(args.users, args.items, args.seed), 0, []
        start = time.perf_counter()
        for checkpoint in sorted(args.checkpoints):
            done = await apply(store, stream, checkpoint - done, done)
            used, keys = await db_bytes(client)
            rows.append((checkpoint, used, keys))
            print(f"{checkpoint:>10,} events  {used / 1e6:9.1f} MB  {keys:>9,} keys  {used / args.users:9,.0f} B/user")
        rate = done / (time.perf_counter() - start)
        await client.aclose()
    (first, used0, _), (last, used1, keys1) = rows[0], rows[-1]
    per_event = (used1 - used0) / max(1, last - first)
    mems = " ".join(f"mem_{n}={u}" for n, u, _ in rows)
    print(
        f"RESULT bytes_per_event_retained={per_event:.2f} bytes_per_user={used1 / args.users:.0f} keys={keys1} "
        f"{mems} users={args.users} items={args.items} events_per_s={rate:.0f}"
    )


def main() -> None:
    """Parse arguments and run."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoints", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--users", type=int, default=5000)
    parser.add_argument("--items", type=int, default=20_000)
    parser.add_argument("--seed", type=int, default=7)
    asyncio.run(bench(parser.parse_args()))


if __name__ == "__main__":
    main()
