"""What the demo, the benchmarks and the integration tests all need to run `streamrec` child processes.

A free loopback port, the environment that points a worker at given settings, its Prometheus samples, the
worker group's partition assignment, a graceful stop (SIGTERM, then SIGKILL), and a Redis DB leased on the
shared local Redis so that concurrent runs never flush each other's data.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import uuid
from collections.abc import Iterator

import aiohttp
import redis
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.coordinator.protocol import ConsumerProtocolMemberAssignment

from contracts import Settings

__all__ = [
    "LEASED_DBS",
    "AllDatabasesLeased",
    "free_port",
    "group_assignment",
    "leased_redis_db",
    "scrape_metrics",
    "security_env",
    "terminate",
    "worker_env",
]

LEASED_DBS = range(8, 16)  # DB 0 is the user's; tests and benches lease these
_LEASE_KEY = "streamrec:test-db-lease:{db}"


class AllDatabasesLeased(RuntimeError):
    """Every DB in `LEASED_DBS` is leased (another test session or bench is running, or one is stuck)."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def scrape_metrics(web_port: int) -> dict[str, float]:
    """A worker's Prometheus samples from its `/metrics`, `name{labels}` -> value ({} while it is not serving)."""
    try:
        async with (
            aiohttp.ClientSession() as session,
            session.get(f"http://127.0.0.1:{web_port}/metrics", timeout=aiohttp.ClientTimeout(5)) as resp,
        ):
            body = await resp.text()
    except (aiohttp.ClientError, TimeoutError):
        return {}
    samples = {}
    for line in body.splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            samples[name] = float(value)
    return samples


def security_env(settings: Settings) -> dict[str, str]:
    """The `STREAMREC_KAFKA_*` security settings of `settings` as environment variables (the unset ones left out)."""
    password = settings.kafka_sasl_password.get_secret_value() if settings.kafka_sasl_password else None
    fields = {
        "STREAMREC_KAFKA_SECURITY_PROTOCOL": settings.kafka_security_protocol,
        "STREAMREC_KAFKA_SASL_MECHANISM": settings.kafka_sasl_mechanism,
        "STREAMREC_KAFKA_SASL_USERNAME": settings.kafka_sasl_username,
        "STREAMREC_KAFKA_SASL_PASSWORD": password,
        "STREAMREC_KAFKA_SSL_CAFILE": settings.kafka_ssl_cafile,
        "STREAMREC_KAFKA_SSL_CERTFILE": settings.kafka_ssl_certfile,
        "STREAMREC_KAFKA_SSL_KEYFILE": settings.kafka_ssl_keyfile,
    }
    return {key: str(value) for key, value in fields.items() if value is not None}


def worker_env(settings: Settings, web_port: int, **extra: str) -> dict[str, str]:
    """This process's environment, pointed at `settings`' broker (security included), Redis and topics, serving
    web on `web_port`."""
    return {
        **os.environ,
        **security_env(settings),
        "STREAMREC_KAFKA_BOOTSTRAP": settings.kafka_bootstrap,
        "STREAMREC_REDIS_URL": settings.redis_url.get_secret_value(),
        "STREAMREC_REDIS_CLUSTER": "true" if settings.redis_cluster else "false",
        "STREAMREC_TOPIC_PREFIX": settings.topic_prefix,
        "STREAMREC_WEB_PORT": str(web_port),
        **extra,
    }


async def group_assignment(settings: Settings, topic: str) -> tuple[str, dict[str, set[int]]]:
    """The worker group's state and, per member id, the partitions of `topic` assigned to it."""
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    await admin.start()
    try:
        [response] = await admin.describe_consumer_groups([f"{settings.topic_prefix}-worker"])
    finally:
        await admin.close()
    [group] = response.to_object()["groups"]
    members: dict[str, set[int]] = {}
    for member in group["members"]:
        raw = member["member_assignment"]
        parts: set[int] = set()
        if raw:
            assignment = ConsumerProtocolMemberAssignment.decode(raw)
            parts = {p for t, ps in assignment.assignment for p in ps if t == topic}
        members[member["member_id"]] = parts
    return group["state"], members


def terminate(proc: subprocess.Popen[bytes], timeout: float = 20.0) -> None:
    """SIGTERM `proc` if it runs, SIGKILL it after `timeout` seconds; returns once it has exited."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@contextlib.contextmanager
def leased_redis_db(redis_url: str, ttl_seconds: int = 900) -> Iterator[str]:
    """The URL of a DB from `LEASED_DBS` leased (SET NX with expiry) for the block, flushed before and after.

    Raises:
        AllDatabasesLeased: no DB is free.
    """
    control = redis.Redis.from_url(redis_url)
    owner = uuid.uuid4().hex
    db = next((d for d in LEASED_DBS if control.set(_LEASE_KEY.format(db=d), owner, nx=True, ex=ttl_seconds)), None)
    if db is None:
        control.close()
        msg = f"all Redis DBs {list(LEASED_DBS)} are leased; is another test session or bench running or stuck?"
        raise AllDatabasesLeased(msg)
    url = redis_url.rsplit("/", 1)[0] + f"/{db}"
    with redis.Redis.from_url(url) as client:
        client.flushdb()
    try:
        yield url
    finally:
        with redis.Redis.from_url(url) as client:
            client.flushdb()
        with contextlib.suppress(redis.RedisError):
            if control.get(_LEASE_KEY.format(db=db)) == owner.encode():
                control.delete(_LEASE_KEY.format(db=db))
        control.close()
