"""Readiness probes and idempotent topic creation for the local stack (aiokafka admin client, redis-py)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Coroutine, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import redis
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.errors import KafkaError, TopicAlreadyExistsError

from contracts.errors import ServiceUnavailable
from contracts.topics import TopicSpec
from streamrec.stack_config import parse_host_port, port_open

__all__ = ["TopicSpec", "delete_topics", "ensure_topics", "kafka_answers", "redis_answers", "run_sync"]

logger = logging.getLogger(__name__)
T = TypeVar("T")


def run_sync(coro: Coroutine[Any, Any, T]) -> T:
    """Run `coro` to completion from sync code, even when called inside a running event loop (demo, benches)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    # A loop runs in this thread: asyncio.run would refuse, so use a private loop in a helper thread.
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, coro).result()


def redis_answers(url: str) -> bool:
    """Whether Redis at `url` answers PING."""
    client = redis.Redis.from_url(url, socket_timeout=1.0, socket_connect_timeout=1.0)
    try:
        return bool(client.ping())
    except redis.RedisError:
        return False
    finally:
        client.close()


async def _metadata(bootstrap: str, timeout_seconds: float, security: Mapping[str, Any]) -> list[str]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=int(timeout_seconds * 1000), **security)
    try:
        await asyncio.wait_for(admin.start(), timeout_seconds)
        return await asyncio.wait_for(admin.list_topics(), timeout_seconds)
    finally:
        with contextlib.suppress(Exception):
            await admin.close()


def kafka_answers(bootstrap: str, timeout_seconds: float = 3.0, security: Mapping[str, Any] | None = None) -> bool:
    """Whether the broker at `bootstrap` answers a metadata request (`security`: aiokafka's TLS/SASL kwargs)."""
    host, port = parse_host_port(bootstrap.split(",")[0], 9092)
    if not port_open(host, port):
        return False  # aiokafka would log a connection error on every probe while the broker starts
    try:
        run_sync(_metadata(bootstrap, timeout_seconds, security or {}))
    except (KafkaError, OSError, TimeoutError):
        return False
    return True


async def ensure_topics(
    bootstrap: str,
    specs: list[TopicSpec],
    timeout_seconds: float = 60.0,
    security: Mapping[str, Any] | None = None,
) -> list[str]:
    """Create the topics in `specs` that do not exist yet; returns the names created now.

    `security` holds aiokafka's TLS/SASL keyword arguments (`KafkaSecurity.aiokafka_kwargs()`) for a secured broker.

    Existing topics keep their partition counts; their topic-level configs are set to the spec's (so a stack
    made before a config was added, e.g. the events topic's retention, gets it too).

    Raises:
        ServiceUnavailable: The broker did not answer within `timeout_seconds`.
    """
    admin = AIOKafkaAdminClient(
        bootstrap_servers=bootstrap, request_timeout_ms=int(timeout_seconds * 1000), **(security or {})
    )
    try:
        await asyncio.wait_for(admin.start(), timeout_seconds)
        existing = set(await admin.list_topics())
        missing = [s for s in specs if s.name not in existing]
        configured = [s for s in specs if s.name in existing and s.configs]
        if configured:
            await admin.alter_configs([ConfigResource(ConfigResourceType.TOPIC, s.name, s.configs) for s in configured])
        if not missing:
            return []
        new = [NewTopic(s.name, s.partitions, 1, topic_configs=dict(s.configs)) for s in missing]
        try:
            await admin.create_topics(new, timeout_ms=int(timeout_seconds * 1000))
        except TopicAlreadyExistsError:
            logger.info("a topic was created concurrently; keeping it")
        return [s.name for s in missing]
    except (KafkaError, TimeoutError) as exc:
        msg = f"Kafka at {bootstrap} did not accept topic creation: {exc!r}"
        raise ServiceUnavailable(msg) from exc
    finally:
        with contextlib.suppress(Exception):
            await admin.close()


async def delete_topics(bootstrap: str, names: list[str]) -> None:
    """Delete the topics `names` (a test's or a bench's own topics, after it)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.delete_topics(names)
    finally:
        await admin.close()
