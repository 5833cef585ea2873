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
"""

from __future__ import annotations

import fcntl
import os
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis
from aiokafka.admin import AIOKafkaAdminClient

from contracts.settings import Settings
from streamrec.child_processes import leased_redis_db
from streamrec.redis_cluster import ClusterConfig, RedisClusterProcs
from streamrec.stack import LocalStack, StackInfo, topic_specs
from streamrec.stack_config import StackConfig
from streamrec.stack_topics import ensure_topics

# Redis DBs handed to tests; DB 0 is the app's default and holds the leases below.
_LEASE_SECONDS = 900


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
    admin = AIOKafkaAdminClient(bootstrap_servers=stack.bootstrap)
    await admin.start()
    try:
        await admin.delete_topics([s.name for s in specs])
    finally:
        await admin.close()


@pytest.fixture
def redis_test_url(stack: StackEndpoints) -> Iterator[str]:
    """URL of a Redis DB (8..15) leased to this test, flushed before and after."""
    # Several test sessions share one Redis: the lease keeps them from flushing each other's data.
    with leased_redis_db(stack.redis_url, ttl_seconds=_LEASE_SECONDS) as url:
        yield url


@pytest.fixture
async def redis_db(redis_test_url: str) -> AsyncIterator[aioredis.Redis]:
    """An async Redis client on a flushed DB reserved for this test; closed after."""
    client = aioredis.Redis.from_url(redis_test_url)
    try:
        yield client
    finally:
        await client.aclose()


@pytest.fixture
def settings_factory(stack: StackEndpoints, topic_prefix: str, redis_test_url: str) -> Callable[..., Settings]:
    """Build `Settings` pointing at the stack, this test's topic prefix and Redis DB; kwargs override fields."""

    def make(**overrides: Any) -> Settings:
        fields: dict[str, Any] = {
            "kafka_bootstrap": stack.bootstrap,
            "redis_url": redis_test_url,
            "topic_prefix": topic_prefix,
            "events_partitions": stack.config.events_partitions,
            "recommendations_partitions": stack.config.recommendations_partitions,
        }
        return Settings(**(fields | overrides))

    return make


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
    yield namespace
    await _delete_namespace(redis_cluster, namespace)


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
    with (redis_cluster.config.state_dir / "sr-namespace.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        await _delete_namespace(redis_cluster, "sr")

        def make(**overrides: Any) -> Settings:
            fields: dict[str, Any] = {
                "kafka_bootstrap": stack.bootstrap,
                "redis_url": redis_cluster.url,
                "redis_cluster": True,
                "topic_prefix": topic_prefix,
                "events_partitions": stack.config.events_partitions,
                "recommendations_partitions": stack.config.recommendations_partitions,
            }
            return Settings(**(fields | overrides))

        yield make
        await _delete_namespace(redis_cluster, "sr")
