"""Two `streamrec worker`s in one group share the 8 event partitions; when one stops mid-stream (SIGTERM or
kill -9) the other takes its partitions over and every event still has its effect exactly once."""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from contracts import Settings
from tests.integration.worker_support import (
    Worker,
    WorkerPool,
    assert_exactly_once,
    collect,
    generated_events,
    group_assignment,
    produce,
    records,
)

# A killed worker holds its partitions until the broker's session timeout expires; keep that short here.
_SESSION_TIMEOUT_S = 10


@pytest.fixture
def pool(tmp_path: Path) -> Iterator[WorkerPool]:
    """Worker subprocesses with a short Kafka session timeout; all stopped after the test."""
    workers = WorkerPool(tmp_path, extra_env={"BROKER_SESSION_TIMEOUT": str(_SESSION_TIMEOUT_S)})
    yield workers
    workers.stop_all()


async def _wait_for_members(settings: Settings, count: int, timeout_s: float) -> dict[str, set[int]]:
    """The stable assignment of the events topic once the group has `count` members each holding partitions."""
    deadline = time.monotonic() + timeout_s
    last: tuple[str, dict[str, set[int]]] = ("", {})
    while time.monotonic() < deadline:
        last = await group_assignment(settings, settings.topics.events)
        state, members = last
        if state == "Stable" and len(members) == count and all(members.values()):
            return members
        await asyncio.sleep(1.0)
    pytest.fail(f"group never had {count} stable members with partitions within {timeout_s}s: {last}")


async def _wait_for_work(worker: Worker, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if await worker.metric("streamrec_events_in_total") > 0:
            return
        await asyncio.sleep(0.5)
    pytest.fail(f"worker on :{worker.web_port} processed nothing within {timeout_s}s")


async def _stop_one_mid_stream(settings: Settings, pool: WorkerPool, sig: signal.Signals) -> None:
    partitions = set(range(settings.events_partitions))
    first, second = pool.start(settings), pool.start(settings)
    members = await _wait_for_members(settings, 2, timeout_s=180)
    # Both members hold partitions, none twice, all of them covered.
    a, b = members.values()
    assert a and b and not a & b and a | b == partitions, members

    events = generated_events(6000, users=300, seed=23)
    half = len(events) // 2
    await produce(settings, records(events[:half]), rate_per_s=500)
    await asyncio.gather(_wait_for_work(first, 60), _wait_for_work(second, 60))  # both are processing
    first.proc.send_signal(sig)  # mid-stream: the rest is produced while the group rebalances
    await produce(settings, records(events[half:]), rate_per_s=500)
    first.proc.wait(timeout=30)

    [remaining] = (await _wait_for_members(settings, 1, timeout_s=3 * _SESSION_TIMEOUT_S + 60)).values()
    assert remaining == partitions  # the survivor took over every partition

    latest = {e.user_id: e.event_id for e in events}
    recs, _ = await collect(
        settings,
        lambda last, _dl: all(last.get(u, {}).get("trigger_event_id") == latest[u] for u in latest),
        timeout_s=300,
    )
    own = {e.event_id: e.user_id for e in events}
    assert set(recs) == set(latest)
    for user, answers in recs.items():
        assert answers[-1]["trigger_event_id"] == latest[user]  # the user's newest event had its effect
        assert all(own[r["trigger_event_id"]] == user for r in answers)
    await assert_exactly_once(settings.redis_url.get_secret_value(), events, cluster=settings.redis_cluster)
    assert second.proc.poll() is None  # the survivor is still up


@pytest.mark.slow
async def test_sigterm_one_of_two_workers_moves_its_partitions_and_loses_nothing(
    settings_factory: Callable[..., Settings], pool: WorkerPool
) -> None:
    await _stop_one_mid_stream(settings_factory(), pool, signal.SIGTERM)


@pytest.mark.slow
async def test_kill_9_one_of_two_workers_moves_its_partitions_and_loses_nothing(
    settings_factory: Callable[..., Settings], pool: WorkerPool
) -> None:
    await _stop_one_mid_stream(settings_factory(), pool, signal.SIGKILL)
