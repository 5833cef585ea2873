"""The feature store's batch cost on one Redis vs a Redis Cluster (3 masters + 3 replicas), side by side.

Brings up what it needs: the local stack's single Redis (`streamrec stack up`, a leased DB) and a cluster of
its own (`streamrec.redis_cluster`, state under `--cluster-dir`, ports `--cluster-port`..+5; stopped at the end
if this run started it). Each round writes one fresh batch of `--batch` events (`FeatureStore.apply_events`,
the worker's client: `store_client`) and reads the batch's users (`read_batch`, item cache off) on each
target in turn, so machine load hits both alike. Wall-clock medians, milliseconds.

    nice -n 10 .venv/bin/python bench/cluster_store.py --batch 1000 --rounds 7

Last line: `RESULT single_write_ms=... cluster_write_ms=... write_ratio=... single_read_ms=... ...`.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from pipeline import Stream, catalog  # noqa: E402 (the pipeline bench's generator)

from feature_store import FeatureConfig, FeatureStore, store_client  # noqa: E402
from streamrec.child_processes import leased_redis_db  # noqa: E402
from streamrec.redis_cluster import ClusterConfig, RedisClusterProcs  # noqa: E402
from streamrec.stack import LocalStack  # noqa: E402
from streamrec.stack_config import StackConfig  # noqa: E402


async def _time(store: FeatureStore, stream: Stream, size: int) -> tuple[float, float]:
    events = stream.take(size)
    started = time.perf_counter()
    result = await store.apply_events(events)
    wrote = time.perf_counter() - started
    assert len(result.applied) == len(events)
    started = time.perf_counter()
    await store.read_batch(list(dict.fromkeys(e.user_id for e in events)))
    return wrote * 1000, (time.perf_counter() - started) * 1000


async def bench(args: argparse.Namespace) -> None:
    """Warm up both, then alternate rounds."""
    info = LocalStack(StackConfig()).up()
    cluster = RedisClusterProcs(ClusterConfig(state_dir=args.cluster_dir, base_port=args.cluster_port))
    ours = not all(row.pid is not None for row in cluster.status())
    print(f"cluster up in {cluster.up():.1f} s ({'started' if ours else 'reused'})")
    config = FeatureConfig(namespace="bench-cluster", item_cache_seconds=0)
    try:
        with leased_redis_db(info.redis_url, ttl_seconds=1800) as url:
            clients = {"single": store_client(url), "cluster": store_client(cluster.url, cluster=True)}
            stores = {name: FeatureStore(c, config) for name, c in clients.items()}
            streams = {name: Stream(args.users, args.items, args.seed) for name in stores}
            times: dict[str, list[tuple[float, float]]] = {name: [] for name in stores}
            for name, store in stores.items():
                await store.upsert_items(catalog(args.items))
                await _time(store, streams[name], args.batch)  # warm-up: scripts loaded, connections open
            for _ in range(args.rounds):
                for name, store in stores.items():
                    times[name].append(await _time(store, streams[name], args.batch))
            for client in clients.values():
                await client.aclose()
    finally:
        if ours:
            cluster.down()
        else:  # leave a reused cluster as found: drop this run's keys
            cleanup = store_client(cluster.url, cluster=True)
            keys = [k async for k in cleanup.scan_iter(match=f"{config.namespace}:*", count=1000)]
            for at in range(0, len(keys), 500):
                await cleanup.delete(*keys[at : at + 500])
            await cleanup.aclose()
    med = {name: (statistics.median(w for w, _ in t), statistics.median(r for _, r in t)) for name, t in times.items()}
    for name, (w, r) in med.items():
        print(f"{name:8s} write {args.batch} events {w:7.1f} ms   read {r:7.1f} ms")
    (sw, sr), (cw, cr) = med["single"], med["cluster"]
    print(
        f"RESULT single_write_ms={sw:.1f} cluster_write_ms={cw:.1f} write_ratio={cw / sw:.2f} "
        f"single_read_ms={sr:.1f} cluster_read_ms={cr:.1f} read_ratio={cr / sr:.2f}"
    )


def main() -> None:
    """Parse options and run."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--batch", type=int, default=1000, help="events per batch")
    parser.add_argument("--rounds", type=int, default=7, help="timed batches per target")
    parser.add_argument("--users", type=int, default=2000)
    parser.add_argument("--items", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=3)
    parser.add_argument("--cluster-dir", type=Path, default=Path.home() / ".cache" / "streamrec" / "bench-cluster")
    parser.add_argument("--cluster-port", type=int, default=17200)
    asyncio.run(bench(parser.parse_args()))


if __name__ == "__main__":
    main()
