"""The feature store's Redis Cluster client (`STREAMREC_REDIS_CLUSTER=true`): routing, scripts, errors.

Every script touches one slot (hash tags, `KEYS.md`), so redis-py's `RedisCluster` routes each `EVALSHA` of a
pipeline by its first key and splits the pipeline into one per master, sent concurrently. What differs from
one Redis:
- scripts live in each master's own cache: `load_scripts` loads them on every master (a replica promoted by a
  failover has none until then: its first `EVALSHA` answers NOSCRIPT and the store loads them again);
- redirections (MOVED, ASK) and a failing-over slot (CLUSTERDOWN, TRYAGAIN, a slot no master serves yet) are
  followed and retried by redis-py a few times; what is left is `transient`: the slot will have a master again
  (`FeatureStore` raises it as `ServiceUnavailable`, which the worker retries without acknowledging the batch).
`store_client(url, cluster=True)` packs commands with hiredis as for one Redis (`packing.hiredis_packing_cluster`).
"""

from __future__ import annotations

from collections.abc import Iterable

from redis import exceptions as redis_errors
from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster

__all__ = ["StoreClient", "cluster_client", "load_scripts", "redis_client", "transient"]

StoreClient = Redis | RedisCluster

# Raised by a cluster client while slots move or a master fails over: the same commands succeed later.
transient = (
    redis_errors.AskError,  # and MovedError: a redirection redis-py did not finish following
    redis_errors.TryAgainError,
    redis_errors.ClusterError,  # ClusterDownError, MasterDownError, "TTL exhausted" (too many redirections)
    redis_errors.SlotNotCoveredError,
    redis_errors.RedisClusterUnreachableError,
)


def cluster_client(url: str, *, socket_timeout: float | None = None) -> RedisCluster:
    """A `RedisCluster` discovering the cluster from the node in `url` (DB 0 only, as any cluster).

    As `store_client` for one Redis: by default no timer per reply (`socket_timeout=None`); the store puts one
    deadline on each round trip. Connecting to a dead master fails fast (refused on loopback) or after 2 s.
    """
    return RedisCluster.from_url(url, socket_timeout=socket_timeout, socket_connect_timeout=2.0)


def redis_client(url: str, *, cluster: bool = False, socket_timeout: float = 5.0) -> StoreClient:
    """A client for reads and checks outside the store's write path (web pages, `tail`, tests, start checks):
    `Redis.from_url`, or a `RedisCluster` with `cluster` (`STREAMREC_REDIS_CLUSTER`); replies time out."""
    if cluster:
        return cluster_client(url, socket_timeout=socket_timeout)
    return Redis.from_url(url, socket_timeout=socket_timeout, socket_connect_timeout=socket_timeout)


async def load_scripts(client: StoreClient, sources: Iterable[str]) -> None:
    """`SCRIPT LOAD` each source on every master (or on the one Redis)."""
    if isinstance(client, RedisCluster):
        for text in sources:
            await client.execute_command("SCRIPT LOAD", text, target_nodes=RedisCluster.PRIMARIES)
        return
    pipe = client.pipeline(transaction=False)
    for text in sources:
        pipe.script_load(text)
    await pipe.execute()
