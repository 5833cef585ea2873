"""What the feature store needs of the Redis server, checked before a worker starts."""

from __future__ import annotations

from redis import exceptions as redis_errors
from redis.asyncio import Redis

from contracts import ConfigError

__all__ = ["require_noeviction"]


async def require_noeviction(client: Redis) -> str:
    """Return the server's `maxmemory-policy`, or raise `ConfigError` unless it is `noeviction`.

    An evicting Redis loses data silently: `volatile-*` policies evict exactly the idempotency claims (the only
    keys with a TTL), so replayed events would count twice; `allkeys-*` evicts any feature. Under `noeviction` a
    full Redis refuses writes with `OOM` instead, which the worker retries without acknowledging the batch.
    """
    try:
        reply = await client.config_get("maxmemory-policy")
        policy = reply.get("maxmemory-policy")
    except redis_errors.ResponseError:  # CONFIG renamed or disabled (managed Redis): INFO still reports it
        policy = (await client.info("memory")).get("maxmemory_policy")
    policy = policy.decode() if isinstance(policy, bytes) else policy
    if policy != "noeviction":
        msg = (
            f"Redis maxmemory-policy is {policy!r}; streamrec needs 'noeviction' (an evicting Redis drops features "
            "and the claims that make replays harmless). Set `maxmemory-policy noeviction` in redis.conf."
        )
        raise ConfigError(msg)
    return str(policy)
