"""Start checks of every `streamrec` process: refused credentials or an untrusted certificate stop it at once.

A wrong SCRAM or ACL password, or a broker/Redis certificate signed by an unknown CA, never heals by waiting;
without these checks clients would retry (Kafka's "Unable to bootstrap", Redis connection errors are transient
to the worker) for as long as they run. Each check opens one connection with the process's own settings and, on
a refusal, `require_access` prints one line naming what failed (user, mechanism, address, CA file, never a
secret) and exits with status 2. A service that is merely down passes: processes wait for it as before.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

import typer

from contracts import ConfigError

if TYPE_CHECKING:
    from contracts import Settings

__all__ = ["check_access", "check_redis_access", "require_access"]


async def check_redis_access(settings: Settings, timeout_seconds: float = 10.0) -> None:
    """PING Redis with the process's URL (ACL user, password, TLS CA).

    Raises:
        ConfigError: Redis refused the user or password, or its certificate is not trusted.
    """
    from redis.exceptions import RedisClusterException, RedisError

    from feature_store import redis_client, redis_refusal

    url = settings.redis_url.get_secret_value()
    client = redis_client(url, cluster=settings.redis_cluster, socket_timeout=timeout_seconds)
    try:
        await asyncio.wait_for(client.ping(), timeout_seconds)
    except (RedisError, RedisClusterException, OSError, TimeoutError) as exc:
        reason = redis_refusal(exc, url)
        if reason is not None:
            raise ConfigError(reason) from None
    finally:
        await client.aclose()


async def check_access(settings: Settings, *, kafka: bool = True, redis: bool = False) -> None:
    """`check_kafka_access` and/or `check_redis_access`; raises `ConfigError` on the first refusal."""
    if kafka:
        from streams.kafka_check import check_kafka_access

        await check_kafka_access(settings)
    if redis:
        await check_redis_access(settings)


def require_access(settings: Settings, who: str, *, kafka: bool = True, redis: bool = False) -> None:
    """Run `check_access`; on a refusal print `<who>: <reason>` to stderr and exit with status 2."""
    try:
        asyncio.run(check_access(settings, kafka=kafka, redis=redis))
    except ConfigError as exc:
        typer.echo(f"{who}: {exc}", err=True)
        raise typer.Exit(2) from None
