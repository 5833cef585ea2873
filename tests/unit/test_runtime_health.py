"""`Runtime.redis_reachable`, behind /healthz: false (quickly, no exception) when nothing answers."""

from __future__ import annotations

import socket
import time

import fakeredis

from contracts import Settings
from streams.runtime import Runtime


def _closed_port() -> int:
    with socket.socket() as sock:  # bound then closed: nothing listens there
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_unreachable_redis_is_reported_not_raised() -> None:
    runtime = Runtime(Settings(redis_url=f"redis://127.0.0.1:{_closed_port()}/0"))
    started = time.monotonic()
    assert await runtime.redis_reachable(timeout=1.0) is False
    assert time.monotonic() - started < 5  # bounded by the timeout (and redis-py's connect error), not hanging
    await runtime.close()


async def test_answering_redis_is_reachable() -> None:
    runtime = Runtime(Settings())
    _ = runtime.store
    runtime._redis = fakeredis.FakeAsyncRedis()  # the client the store would use, answering PING
    assert await runtime.redis_reachable() is True
    await runtime.close()
