"""The feature store on a real Redis Cluster (3 masters + 3 replicas): one slot per script, exactly-once replay,
scripts reloaded after a flush, and a master killed (-9) mid-stream: its replica takes over, the writer retries
what failed, and every event is applied exactly once."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import AsyncIterator, Sequence

import pytest
from redis.asyncio.cluster import RedisCluster

from contracts import Event, ServiceUnavailable
from feature_store import FeatureConfig, FeatureStore
from feature_store.store import store_client
from streamrec.redis_cluster import RedisClusterProcs
from streams.settle import is_retriable
from tests.integration.worker_support import generated_events

pytestmark = [pytest.mark.integration, pytest.mark.cluster]


@pytest.fixture
async def cluster_client(redis_cluster: RedisClusterProcs) -> AsyncIterator[RedisCluster]:
    """The store's own cluster client (`store_client(..., cluster=True)`), closed after the test."""
    client = store_client(redis_cluster.url, cluster=True)
    assert isinstance(client, RedisCluster)
    try:
        yield client
    finally:
        await client.aclose()


def _expected(events: Sequence[Event]) -> dict[str, dict[str, int]]:
    """Per-user `stats` counters after applying `events` once."""
    out: dict[str, Counter[str]] = {}
    for e in events:
        c = out.setdefault(e.user_id, Counter())
        c["applied"] += 1
        c[f"type:{e.type.value}"] += 1
    return {u: dict(c) for u, c in out.items()}


async def _stats(store: FeatureStore, users: Sequence[str]) -> dict[str, dict[str, int]]:
    return {u: await store.user_stats(u) for u in users}


def _master_of(procs: RedisClusterProcs, client: RedisCluster, key: str) -> int:
    slot = client.keyslot(key)
    return next(port for port, ranges in procs.masters().items() if any(lo <= slot <= hi for lo, hi in ranges))


async def test_replay_on_the_cluster_changes_nothing(
    redis_cluster: RedisClusterProcs, cluster_client: RedisCluster, cluster_namespace: str
) -> None:
    store = FeatureStore(cluster_client, FeatureConfig(namespace=cluster_namespace))
    events = generated_events(1000, users=120)
    users = sorted({e.user_id for e in events})
    # The users' slots are spread over all three masters, so the pipelines really are split per node.
    assert len({_master_of(redis_cluster, cluster_client, store.keys.user_stats(u)) for u in users}) == 3

    first = await store.apply_events(events)  # one pipeline of 1,000 scripts, split per master
    assert len(first.applied) == len(events) and not first.duplicates
    stats, popularity = await _stats(store, users), await store.popularity_counts()
    assert stats == _expected(events)

    for at in range(0, len(events), 300):  # replayed in other batch sizes
        again = await store.apply_events(events[at : at + 300])
        assert not again.applied and len(again.duplicates) == len(events[at : at + 300])
    assert await _stats(store, users) == stats
    assert await store.popularity_counts() == popularity
    read, items = await store.read_batch(users[:50])
    assert [f.user_id for f in read] == users[:50] and all(f.events for f in read) and items.popular


async def test_scripts_are_reloaded_on_every_master_after_a_flush(
    cluster_client: RedisCluster, cluster_namespace: str
) -> None:
    store = FeatureStore(cluster_client, FeatureConfig(namespace=cluster_namespace))
    await store.apply_events(generated_events(50, users=30, prefix="a"))
    assert await cluster_client.execute_command("SCRIPT FLUSH", target_nodes=RedisCluster.ALL_NODES)
    events = generated_events(300, users=90, prefix="b")
    result = await store.apply_events(events)
    assert len(result.applied) == len(events)
    primaries = cluster_client.get_primaries()
    assert len(primaries) == 3
    for node in primaries:
        exists = await cluster_client.execute_command("SCRIPT EXISTS", *store._sha.values(), target_nodes=node)
        assert [bool(flag) for flag in exists] == [True] * len(store._sha), node.name


@pytest.mark.slow
async def test_master_killed_mid_stream_every_event_applied_exactly_once(
    redis_cluster: RedisClusterProcs, cluster_client: RedisCluster, cluster_namespace: str
) -> None:
    store = FeatureStore(cluster_client, FeatureConfig(namespace=cluster_namespace))
    events = generated_events(6000, users=300, prefix="f")
    batches = [events[at : at + 100] for at in range(0, len(events), 100)]
    users = sorted({e.user_id for e in events})
    victim = _master_of(redis_cluster, cluster_client, store.keys.user_stats(users[0]))
    (replica,) = redis_cluster.replicas()[victim]
    retried: list[str] = []
    took: list[float] = []
    done = asyncio.Event()

    async def writer() -> None:
        # What the worker does (streams/settle.py): a transient error retries the same batch after a pause.
        for batch in batches:
            started = time.monotonic()
            while True:
                try:
                    await store.apply_events(batch)
                    break
                except Exception as exc:
                    if not is_retriable(exc):
                        raise
                    retried.append(repr(exc.__cause__ or exc)[:120])
                    await asyncio.sleep(0.1)
            took.append(time.monotonic() - started)
            await asyncio.sleep(0.02)
        done.set()

    task = asyncio.create_task(writer())
    while await _applied(store, users) < len(events) // 4:  # a quarter in, kill the master of users[0]
        assert not task.done(), task
        await asyncio.sleep(0.05)
    before = await _applied(store, users)
    redis_cluster.kill_node(victim)
    killed_at = time.monotonic()
    while _serving(redis_cluster, victim, replica) is None:
        await asyncio.sleep(0.1)
    failover_seconds = time.monotonic() - killed_at
    await asyncio.wait_for(task, timeout=180)
    print(f"failover {failover_seconds:.1f} s; applied before the kill {before}; retried: {retried}")
    print(f"longest batch {max(took):.1f} s")

    # The kill really happened mid-stream and hit the writer.
    assert 0 < before < len(events)
    assert retried, "no batch failed while its master was down"
    assert _serving(redis_cluster, victim, replica) == replica
    # Nothing lost, nothing applied twice: exact per-user counters, and popularity as one clean pass gives.
    assert await _stats(store, users) == _expected(events)
    clean = FeatureStore(cluster_client, FeatureConfig(namespace=f"{cluster_namespace}c"))
    for batch in batches:
        await clean.apply_events(batch)
    assert await store.popularity_counts() == await clean.popularity_counts()

    redis_cluster.start_node(victim)  # back on its old dir: it rejoins as the replica of its old replica
    redis_cluster.wait_whole()
    assert next(r.role for r in redis_cluster.status() if r.port == victim) == "replica"


async def _applied(store: FeatureStore, users: Sequence[str]) -> int:
    total = 0
    for u in users:
        total += (await store.user_stats(u)).get("applied", 0)
    return total


def _serving(procs: RedisClusterProcs, victim: int, replica: int) -> int | None:
    """The replica's port once it serves the killed master's slots, else None."""
    try:
        masters = procs.masters()
    except ServiceUnavailable:
        return None
    return replica if replica in masters and victim not in masters else None
