"""Integration fixtures: the real local stack (Kafka KRaft broker + Redis), per-test topics and Redis DBs.

The stack comes from `streamrec.stack.LocalStack`, the same code as `streamrec stack up`. A stack already
running on the configured ports (and state dir) is reused and left running; one started by this session is
stopped at its end. A service that cannot be started fails the tests; it never skips them.

Env overrides (tests only): `STREAMREC_TEST_STACK_DIR` (state dir), `STREAMREC_TEST_KAFKA_PORT`,
`STREAMREC_TEST_CONTROLLER_PORT`, `STREAMREC_TEST_REDIS_PORT`.

The `cluster` tests use a Redis Cluster of their own (`redis_cluster`: 3 masters + 3 replicas from
`streamrec.redis_cluster`, state dir `STREAMREC_TEST_CLUSTER_DIR`, default `~/.cache/streamrec/test-cluster`,
ports from `STREAMREC_TEST_CLUSTER_PORT`, default 17000..17005), started if needed and stopped at the end if
this session started it; a cluster has only DB 0, so each test gets a key namespace (`cluster_namespace`)
whose keys are deleted after it.

`STREAMREC_TEST_REDIS_CLUSTER=1` runs the other integration tests on that cluster too: `redis_test_url` is the
cluster's URL (the whole test cluster flushed before and after each test, under a lock other sessions' cluster
tests also take), `redis_db` a `RedisCluster` client and `settings_factory` sets `redis_cluster=True`. Tests of
single-node features (DB leases, `CONFIG SET maxmemory` on one server) do not apply there.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis
from redis.cluster import RedisCluster as SyncRedisCluster

from contracts.settings import Settings
from feature_store import redis_client
from streamrec.child_processes import leased_redis_db
from streamrec.redis_cluster import ClusterConfig, RedisClusterProcs
from streamrec.stack import LocalStack, StackInfo, topic_specs
from streamrec.stack_config import StackConfig
from streamrec.stack_topics import delete_topics, ensure_topics

# Redis DBs handed to tests; DB 0 is the app's default and holds the leases below.
_LEASE_SECONDS = 900
ON_CLUSTER = os.environ.get("STREAMREC_TEST_REDIS_CLUSTER", "").lower() in {"1", "true", "yes"}


@dataclass(frozen=True)
class StackEndpoints:
    """What the `stack` fixture yields."""

    bootstrap: str
    redis_url: str
    config: StackConfig
    info: StackInfo
    started_here: bool


def _stack_config() -> StackConfig:
    env = os.environ
    base = StackConfig()
    return replace(
        base,
        state_dir=Path(env["STREAMREC_TEST_STACK_DIR"]) if "STREAMREC_TEST_STACK_DIR" in env else base.state_dir,
        kafka_port=int(env.get("STREAMREC_TEST_KAFKA_PORT", base.kafka_port)),
        controller_port=int(env.get("STREAMREC_TEST_CONTROLLER_PORT", base.controller_port)),
        redis_port=int(env.get("STREAMREC_TEST_REDIS_PORT", base.redis_port)),
    )


@pytest.fixture(scope="session")
def stack() -> Iterator[StackEndpoints]:
    """The running local stack (started if needed; stopped at the end only if this session started it)."""
    local = LocalStack(_stack_config())
    already_up = all(row.alive and row.listening for row in local.status())
    info = local.up()  # raises (→ test error, never a skip) when a service cannot be started
    yield StackEndpoints(info.bootstrap, info.redis_url, local.config, info, started_here=not already_up)
    if not already_up:
        local.down()


@pytest.fixture
async def topic_prefix(stack: StackEndpoints) -> AsyncIterator[str]:
    """A fresh topic prefix (`t<8 hex>`) whose five topics exist for this test and are deleted after it."""
    prefix = f"t{uuid.uuid4().hex[:8]}"
    specs = topic_specs(replace(stack.config, topic_prefix=prefix))
    await ensure_topics(stack.bootstrap, specs)
    yield prefix
    await delete_topics(stack.bootstrap, [s.name for s in specs])


@pytest.fixture
def redis_test_url(stack: StackEndpoints, request: pytest.FixtureRequest) -> Iterator[str]:
    """URL of a Redis DB (8..15) leased to this test, flushed before and after (on the cluster: see above)."""
    if ON_CLUSTER:
        procs: RedisClusterProcs = request.getfixturevalue("redis_cluster")
        with _cluster_lock(procs):
            _flush_cluster(procs)
            yield procs.url
            _flush_cluster(procs)
        return
    # Several test sessions share one Redis: the lease keeps them from flushing each other's data.
    with leased_redis_db(stack.redis_url, ttl_seconds=_LEASE_SECONDS) as url:
        yield url


@pytest.fixture
async def redis_db(redis_test_url: str) -> AsyncIterator[aioredis.Redis | aioredis.RedisCluster]:
    """An async Redis client on a flushed DB reserved for this test; closed after."""
    client = redis_client(redis_test_url, cluster=ON_CLUSTER)
    try:
        yield client
    finally:
        await client.aclose()


@pytest.fixture
def settings_factory(stack: StackEndpoints, topic_prefix: str, redis_test_url: str) -> Callable[..., Settings]:
    """Build `Settings` pointing at the stack, this test's topic prefix and Redis DB; kwargs override fields."""
    return partial(_settings, stack, topic_prefix, redis_test_url, ON_CLUSTER)


def _settings(stack: StackEndpoints, topic_prefix: str, url: str, cluster: bool, **overrides: Any) -> Settings:
    fields: dict[str, Any] = {
        "kafka_bootstrap": stack.bootstrap,
        "redis_url": url,
        "redis_cluster": cluster,
        "topic_prefix": topic_prefix,
        "events_partitions": stack.config.events_partitions,
        "recommendations_partitions": stack.config.recommendations_partitions,
    }
    return Settings(**(fields | overrides))


def _cluster_config() -> ClusterConfig:
    env = os.environ
    default = Path.home() / ".cache" / "streamrec" / "test-cluster"
    return ClusterConfig(
        state_dir=Path(env.get("STREAMREC_TEST_CLUSTER_DIR", default)),
        base_port=int(env.get("STREAMREC_TEST_CLUSTER_PORT", "17000")),
    )


@pytest.fixture(scope="session")
def redis_cluster() -> Iterator[RedisClusterProcs]:
    """The tests' Redis Cluster, whole (started if needed; stopped at the end only if this session started it)."""
    procs = RedisClusterProcs(_cluster_config())
    already_up = all(row.pid is not None for row in procs.status())
    procs.up()  # raises (→ test error, never a skip) when the cluster cannot be formed
    yield procs
    if not already_up:
        procs.down()


@pytest.fixture
async def cluster_namespace(redis_cluster: RedisClusterProcs) -> AsyncIterator[str]:
    """A fresh key namespace on the cluster; its keys are deleted from every master after the test."""
    namespace = f"t{uuid.uuid4().hex[:8]}"
    with _cluster_lock(redis_cluster):
        yield namespace
        await _delete_namespace(redis_cluster, namespace)


@contextlib.contextmanager
def _cluster_lock(procs: RedisClusterProcs) -> Iterator[None]:
    """Held by every test on the test cluster: a cluster-wide flush (`ON_CLUSTER`) must not hit another's keys."""
    with (procs.config.state_dir / "tests.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def _flush_cluster(procs: RedisClusterProcs) -> None:
    procs.up()  # whole again if a failover test left a node down
    with SyncRedisCluster.from_url(procs.url) as client:
        client.flushall(target_nodes=SyncRedisCluster.PRIMARIES)


async def _delete_namespace(redis_cluster: RedisClusterProcs, namespace: str) -> None:
    """Delete every key under `namespace:` from every master (once the cluster is whole again)."""
    redis_cluster.up()  # a failover test may have left a node down or restarting: restart it, wait until whole
    client = aioredis.RedisCluster.from_url(redis_cluster.url)
    try:
        keys = [key async for key in client.scan_iter(match=f"{namespace}:*", count=1000)]  # every master
        for at in range(0, len(keys), 500):
            await client.delete(*keys[at : at + 500])  # split per slot by redis-py
    finally:
        await client.aclose()


@pytest.fixture
async def cluster_settings_factory(
    stack: StackEndpoints, topic_prefix: str, redis_cluster: RedisClusterProcs
) -> AsyncIterator[Callable[..., Settings]]:
    """Like `settings_factory`, on the cluster (`redis_cluster=True`). Workers write the default namespace `sr`,
    so this test holds the cluster's `sr` lock and its `sr:*` keys are deleted before and after it."""
    with _cluster_lock(redis_cluster):
        await _delete_namespace(redis_cluster, "sr")
        yield partial(_settings, stack, topic_prefix, redis_cluster.url, True)
        await _delete_namespace(redis_cluster, "sr")
