"""A Redis that accepts connections but never answers: each round trip ends at its deadline as ServiceUnavailable.

The worker's client has no per-reply socket timeout (`store_client`), so this deadline is what keeps a hung
Redis from hanging a batch: the batch is then retried with backoff, as for a refused connection.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest

from contracts import Event, EventType, ServiceUnavailable
from feature_store import FeatureConfig, FeatureStore, store_client


@pytest.fixture
async def silent_port() -> AsyncIterator[int]:
    """A listening TCP port whose connections are held open and never written to."""
    held: list[asyncio.StreamWriter] = []

    async def hold(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)

    server = await asyncio.start_server(hold, "127.0.0.1", 0)
    yield server.sockets[0].getsockname()[1]
    for writer in held:
        writer.close()
    server.close()
    await server.wait_closed()


async def test_a_hung_redis_ends_each_round_trip_at_its_deadline(silent_port: int) -> None:
    client = store_client(f"redis://127.0.0.1:{silent_port}/0")  # the worker's client: no per-reply timer
    store = FeatureStore(client, FeatureConfig(round_trip_timeout_seconds=0.3))
    event = Event(event_id="e1", user_id="u1", item_id="i1", type=EventType.VIEW, ts=datetime.now(UTC))
    for call in (lambda: store.apply_events([event]), lambda: store.read_batch(["u1"])):
        started = time.monotonic()
        with pytest.raises(ServiceUnavailable, match="Redis unavailable"):
            await call()
        assert time.monotonic() - started < 3.0  # the 0.3 s deadline, not a hang (nothing else would end it)
    await client.aclose()
