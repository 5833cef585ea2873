"""What the feature store needs of the Redis server, checked before a worker starts.

`redis_refusal` names a refused ACL user/password or an untrusted TLS certificate in one line (never the
password): neither heals by waiting, so a process stops at start instead of retrying forever.
"""

from __future__ import annotations

import ssl
from urllib.parse import urlsplit

from redis import exceptions as redis_errors
from redis.asyncio import Redis
from redis.asyncio.cluster import ClusterNode, RedisCluster

from contracts import ConfigError
from feature_store.cluster import StoreClient

__all__ = ["redis_refusal", "require_noeviction"]


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


def _cause(exc: BaseException, kinds: tuple[type[BaseException], ...]) -> BaseException | None:
    """The first of `kinds` among `exc` and its causes (redis-py wraps an `ssl` error in a `ConnectionError`, a
    cluster client a node's error in its own)."""
    seen: BaseException | None = exc
    for _ in range(5):
        if seen is None or isinstance(seen, kinds):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


def redis_refusal(exc: BaseException, url: str) -> str | None:
    """The one-line reason when `exc` means Redis at `url` refused this client (None: anything else)."""
    parts = urlsplit(url)
    address = f"{parts.hostname}:{parts.port or 6379}"
    if _cause(exc, (redis_errors.AuthenticationError,)) is not None:
        user = parts.username or "default"
        return (
            f"Redis authentication failed for user {user} at {address} (wrong password, user disabled, or none "
            "given where the server requires one); check the user and password in STREAMREC_REDIS_URL"
        )
    if isinstance(exc, (redis_errors.AuthorizationError, redis_errors.NoPermissionError)):
        return f"Redis at {address} denies a command the feature store needs ({exc}); grant the ACL user +@all"
    tls = _cause(exc, (ssl.SSLError,))
    if isinstance(tls, ssl.SSLCertVerificationError):
        return (
            f"Redis TLS certificate of {address} is not trusted ({tls.verify_message or tls.reason}); "
            "check ssl_ca_certs in STREAMREC_REDIS_URL"
        )
    if isinstance(tls, ssl.SSLError):
        return f"Redis TLS handshake with {address} failed ({tls.reason or tls}); check rediss:// vs redis://"
    return None
