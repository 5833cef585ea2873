"""Faults operators meet weekly, on a real broker and Redis: each ends with every event applied exactly once and
every user's latest event answered.

The broker and Redis restarts run on a private stack (own ports and state dir), so stopping a service never
disturbs other tests sharing the session stack.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from contracts import Settings
from streamrec.child_processes import free_port
from streamrec.stack import LocalStack, StackInfo
from streamrec.stack_config import StackConfig
from tests.integration.worker_support import (
    WorkerPool,
    answered_exactly_once,
    generated_events,
    produce_events,
    wait_for_answers,
)

pytestmark = [pytest.mark.faults, pytest.mark.slow]


@pytest.fixture(scope="module")
def private_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LocalStack, StackInfo]]:
    """A stack of this module's own: its services may be stopped and restarted by the tests."""
    base = StackConfig()
    config = replace(
        base,
        state_dir=tmp_path_factory.mktemp("fault-stack"),
        kafka_port=free_port(),
        controller_port=free_port(),
        redis_port=free_port(),
    )
    local = LocalStack(config)
    try:
        info = local.up()
    except BaseException:
        local.down()  # what started before the failure (e.g. Redis when Kafka would not format) must not linger
        raise
    yield local, info
    local.down()


@pytest.fixture
def pool(tmp_path: Path) -> Iterator[WorkerPool]:
    """Workers started by the test, stopped after it."""
    workers = WorkerPool(tmp_path, extra_env={"BROKER_SESSION_TIMEOUT": "10"})
    yield workers
    workers.stop_all()


@pytest.mark.parametrize("service", ["kafka", "redis"])
async def test_a_restart_mid_replay_loses_nothing_and_applies_nothing_twice(
    service: str, private_stack: tuple[LocalStack, StackInfo], pool: WorkerPool, tmp_path: Path
) -> None:
    local, info = private_stack
    prefix = f"f{service}"
    local_cfg = replace(local.config, topic_prefix=prefix)
    LocalStack(local_cfg).up()  # this test's topics (the services are running already)
    settings = Settings(kafka_bootstrap=info.bootstrap, redis_url=info.redis_url, topic_prefix=prefix)
    await _flush(settings)
    events = generated_events(6000, users=300, seed=23)
    await produce_events(settings, events)
    worker = pool.start(settings)
    await wait_for_answers(settings, users=60, timeout_s=180)
    local.stop(service)  # SIGTERM: the broker shuts down cleanly, Redis writes its AOF
    await asyncio.sleep(5)
    local.up()
    await answered_exactly_once(settings, events, timeout_s=420)
    assert worker.proc.poll() is None, f"the worker died; see {worker.log}"


async def _flush(settings: Settings) -> None:
    client = aioredis.Redis.from_url(settings.redis_url.get_secret_value())
    try:
        await client.flushdb()
    finally:
        await client.aclose()
