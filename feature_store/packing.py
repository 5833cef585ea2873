"""Redis commands packed by hiredis (C) instead of redis-py's asyncio packer (Python, one `encode` per argument).

`redis.asyncio` packs every command in Python even when hiredis is installed (only the sync client uses
`hiredis.pack_command`); a micro-batch sends ~60 arguments per event (one `EVALSHA` per event and per user), and
the Python packer was ~8 % of the worker's main-thread time under cProfile. The bytes on the wire are the same
(pinned by `tests/unit/test_feature_store_packing.py`); arguments hiredis cannot pack raise redis-py's
`DataError`, as the sync client's hiredis packer does.
"""

from __future__ import annotations

from typing import Any

from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.connection import Connection
from redis.exceptions import DataError

try:
    import hiredis
except ImportError:  # pragma: no cover - hiredis is a dependency (redis[hiredis]); without it nothing changes
    hiredis = None  # type: ignore[assignment]

__all__ = ["hiredis_packing", "hiredis_packing_cluster", "pack_command"]

_CLASSES: dict[type, type] = {}


def pack_command(*args: Any) -> list[bytes]:
    """One command in RESP, as `redis.asyncio.Connection.pack_command` (the same bytes, in one chunk)."""
    first = args[0]
    if isinstance(first, str):
        args = (*first.encode().split(), *args[1:])
    elif b" " in first:
        args = (*first.split(), *args[1:])
    try:
        return [hiredis.pack_command(args)]
    except TypeError as exc:
        if not any(isinstance(a, (bytearray, memoryview)) for a in args):
            raise DataError(str(exc)) from exc
    # buffers (rare) as bytes, as the sync client's hiredis packer does
    return pack_command(*(bytes(a) if isinstance(a, (bytearray, memoryview)) else a for a in args))


class _HiredisPacking:
    """Mixin for a `redis.asyncio` connection class: commands packed by `pack_command` above."""

    def pack_command(self, *args: Any) -> list[bytes]:
        return pack_command(*args)


def _packing_class(base: type) -> type:
    if issubclass(base, _HiredisPacking):
        return base
    if base not in _CLASSES:
        _CLASSES[base] = type(f"Hiredis{base.__name__}", (_HiredisPacking, base), {})
    return _CLASSES[base]


def hiredis_packing(client: Redis) -> Redis:
    """`client`, its connections (made from now on) packing commands with hiredis; unchanged without hiredis.

    Call before the client's first command: connections already in the pool keep redis-py's packer.
    """
    if hiredis is None:  # pragma: no cover
        return client
    pool = client.connection_pool
    pool.connection_class = _packing_class(pool.connection_class)
    return client


def hiredis_packing_cluster(client: RedisCluster) -> RedisCluster:
    """The same for a `RedisCluster` before its first command: every node it discovers from now on builds its
    connections from the client's (shared) connection kwargs, so the class is swapped there and on the startup
    nodes (one of which the discovery may keep)."""
    if hiredis is None:  # pragma: no cover
        return client
    kwargs = client.connection_kwargs
    kwargs["connection_class"] = _packing_class(kwargs.get("connection_class", Connection))
    for node in client.startup_nodes:
        node.connection_class = _packing_class(node.connection_class)
    return client
