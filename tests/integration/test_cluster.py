"""The feature store on a real Redis Cluster (3 masters + 3 replicas): one slot per script, exactly-once replay,
scripts reloaded after a flush, and a master killed (-9) mid-stream: its replica takes over, the writer retries
what failed, and every event is applied exactly once; the same through `streamrec worker` processes, one of
them killed -9 first."""

from __future__ import annotations

import asyncio
import signal
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path

import pytest
from redis.asyncio.cluster import RedisCluster

from contracts import Event, ServiceUnavailable, Settings
from feature_store import FeatureConfig, FeatureStore, Position
from feature_store.store import store_client
from streamrec.redis_cluster import RedisClusterProcs
from streams.settle import is_retriable
from tests.integration import worker_support as ws

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
    events = ws.generated_events(1000, users=120)
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
    await store.apply_events(ws.generated_events(50, users=30, prefix="a"))
    assert await cluster_client.execute_command("SCRIPT FLUSH", target_nodes=RedisCluster.ALL_NODES)
    events = ws.generated_events(300, users=90, prefix="b")
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
    events = ws.generated_events(6000, users=300, prefix="f")
    batches = [events[at : at + 100] for at in range(0, len(events), 100)]
    # Where the worker read each event (one partition here): a retried batch is then recognised by the watermarks.
    places = [
        [Position("events", 0, at + n) for n in range(len(b))]
        for at, b in zip(range(0, len(events), 100), batches, strict=True)
    ]
    users = sorted({e.user_id for e in events})
    victim = _master_of(redis_cluster, cluster_client, store.keys.user_stats(users[0]))
    (replica,) = redis_cluster.replicas()[victim]
    retried: list[str] = []
    spans: list[tuple[float, float]] = []  # (start, end) of each batch, retries included
    done = asyncio.Event()

    async def writer() -> None:
        # What the worker does (streams/settle.py): a transient error retries the same batch after a pause.
        for batch, at in zip(batches, places, strict=True):
            started = time.monotonic()
            while True:
                try:
                    await store.apply_events(batch, at)
                    break
                except Exception as exc:
                    if not is_retriable(exc):
                        raise
                    retried.append(repr(exc.__cause__ or exc)[:120])
                    await asyncio.sleep(0.1)
            spans.append((started, time.monotonic()))
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
    promoted_at = time.monotonic()
    await asyncio.wait_for(task, timeout=180)
    hit = [end - start for start, end in spans if start < promoted_at and end > killed_at]
    print(f"failover {promoted_at - killed_at:.1f} s; applied before the kill {before}; batches hit {len(hit)}")
    print(f"longest of them {max(hit, default=0):.1f} s; retried by the writer: {retried}")

    # The kill really happened mid-stream: batches were in flight while the master was down (each touches all
    # three masters), so they waited in redis-py's retries or failed and were retried here; and more followed.
    assert 0 < before < len(events)
    assert hit, "no batch was written while the master was down"
    assert spans[-1][0] > promoted_at
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


@pytest.mark.slow
async def test_worker_killed_then_a_master_killed_every_effect_exactly_once(
    redis_cluster: RedisClusterProcs, cluster_settings_factory: Callable[..., Settings], tmp_path: Path
) -> None:
    settings = cluster_settings_factory()
    events = ws.generated_events(8000, users=400, seed=5, prefix="w")
    latest = {e.user_id: e.event_id for e in events}
    # A killed worker's partitions go to the next one after this session timeout (Faust default: 60 s).
    pool = ws.WorkerPool(tmp_path, extra_env={"BROKER_SESSION_TIMEOUT": "10"})
    try:
        await ws.produce(settings, ws.records(events))
        first = pool.start(settings)
        await ws.collect(settings, lambda last, dl: len(last) >= 100, timeout_s=180)
        first.proc.send_signal(signal.SIGKILL)
        first.proc.wait(timeout=30)
        second = pool.start(settings)
        applied = 0.0
        while applied < 500:  # the second worker is applying: kill the master of one user's slot under it
            assert second.proc.poll() is None, second.log.read_text()[-2000:]
            await asyncio.sleep(0.5)
            applied = await second.metric("streamrec_events_applied_total")
        client = store_client(redis_cluster.url, cluster=True)
        assert isinstance(client, RedisCluster)
        try:
            victim = _master_of(redis_cluster, client, FeatureStore(client).keys.user_stats(events[-1].user_id))
        finally:
            await client.aclose()
        (replica,) = redis_cluster.replicas()[victim]
        at_kill = await second.metric("streamrec_events_applied_total")
        redis_cluster.kill_node(victim)
        recs, _ = await ws.collect(
            settings,
            lambda last, dl: all(last.get(u, {}).get("trigger_event_id") == latest[u] for u in latest),
            timeout_s=420,
        )
        # The kill was mid-stream: the second worker went on applying events after it.
        assert await second.metric("streamrec_events_applied_total") > at_kill
    finally:
        pool.stop_all()
    assert _serving(redis_cluster, victim, replica) == replica
    assert {u: r[-1]["trigger_event_id"] for u, r in recs.items()} == latest
    await ws.assert_exactly_once(redis_cluster.url, events, cluster=True)
    redis_cluster.start_node(victim)
    redis_cluster.wait_whole()
