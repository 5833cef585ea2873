"""What the feature store needs of the Redis server, checked before a worker starts."""

from __future__ import annotations

from redis import exceptions as redis_errors
from redis.asyncio import Redis
from redis.asyncio.cluster import ClusterNode, RedisCluster

from contracts import ConfigError
from feature_store.cluster import StoreClient

__all__ = ["require_noeviction"]


async def require_noeviction(client: StoreClient) -> str:
    """Return the server's `maxmemory-policy`, or raise `ConfigError` unless it is `noeviction`.

    On a cluster every master is asked (each holds a share of the features and watermarks); the message names the
    node that evicts.

    An evicting Redis loses data silently: `volatile-*` policies evict users' keys (their watermarks with them,
    so replayed events would count twice); `allkeys-*` evicts any feature. Under `noeviction` a
    full Redis refuses writes with `OOM` instead, which the worker retries without acknowledging the batch.
    """
    if isinstance(client, RedisCluster):
        if client.get_default_node() is None or not client.get_primaries():
            await client.initialize()
        for node in client.get_primaries():
            policy = await _policy(client, node)
            _must_be_noeviction(policy, f" on cluster master {node.name}")
        return "noeviction"
    _must_be_noeviction(await _policy(client, None), "")
    return "noeviction"


async def _policy(client: Redis | RedisCluster, node: ClusterNode | None) -> str | None:
    target = {} if node is None else {"target_nodes": node}
    try:
        reply = await client.config_get("maxmemory-policy", **target)
        policy = reply.get("maxmemory-policy")
    except redis_errors.ResponseError:  # CONFIG renamed or disabled (managed Redis): INFO still reports it
        policy = (await client.info("memory", **target)).get("maxmemory_policy")
    return policy.decode() if isinstance(policy, bytes) else policy


def _must_be_noeviction(policy: str | None, where: str) -> None:
    if policy != "noeviction":
        msg = (
            f"Redis maxmemory-policy is {policy!r}{where}; streamrec needs 'noeviction' (an evicting Redis drops "
            "features and the watermarks that make replays harmless). Set `maxmemory-policy noeviction` in redis.conf."
        )
        raise ConfigError(msg)
