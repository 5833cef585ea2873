"""hiredis packing sends exactly the bytes redis-py's asyncio packer sends (and rejects what it rejects)."""

from __future__ import annotations

import json
from typing import Any

import pytest
import redis.asyncio as aioredis
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.connection import Connection
from redis.exceptions import DataError

from feature_store import store_client
from feature_store.packing import _HiredisPacking, hiredis_packing, pack_command

_STORED = json.dumps({"event_id": "e1", "item_id": "i\u00e9", "type": "view", "ts": 1.7e9, "query": None})
COMMANDS = [
    # the feature store's commands: EVALSHA with hash-tagged keys, JSON, repr floats, ints, empty strings
    ("EVALSHA", "a" * 40, 3, "sr:{u:u1}:claim:e1", "sr:{u:u1}:events", "sr:{u:u1}:aff", _STORED, "i1", "view")
    + (repr(1732536000.123456), "", "", 50, 604800, repr(86400 / 0.6931471805599453), "1.0", 20),
    ("HMGET", "sr:{i:i1}:meta", "title", "category"),
    ("SCRIPT LOAD", "return 1"),
    (b"CONFIG GET", b"maxmemory"),
    ("SET", b"\x00\xff binary", memoryview(b"view"), bytearray(b"array")),
    ("ZADD", "k", 1.5, "m", 0.1, "n", 1e-7, "o", 1e22, "p", -3, "q", 10**30, "r"),
    ("SET", "big", "x" * 100_000),  # above redis-py's chunking cutoff: chunked there, one piece here
]


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: str(c[0]))
def test_hiredis_packing_sends_the_same_bytes(command: tuple[Any, ...]) -> None:
    assert b"".join(pack_command(*command)) == b"".join(Connection().pack_command(*command))


@pytest.mark.parametrize("bad", [None, True, object()])
def test_unpackable_arguments_raise_data_error(bad: Any) -> None:
    with pytest.raises(DataError):
        Connection().pack_command("SET", "k", bad)
    with pytest.raises(DataError):
        pack_command("SET", "k", bad)


def test_the_client_makes_hiredis_packing_connections() -> None:
    client = hiredis_packing(aioredis.Redis.from_url("redis://127.0.0.1:1/0"))
    pool = client.connection_pool
    conn = pool.make_connection()  # type: ignore[no-untyped-call]  # untyped in redis-py
    assert isinstance(conn, Connection)
    assert b"".join(conn.pack_command(*COMMANDS[0])) == b"".join(Connection().pack_command(*COMMANDS[0]))
    assert conn.pack_command(*COMMANDS[0]) == pack_command(*COMMANDS[0])
    assert hiredis_packing(client).connection_pool.connection_class is pool.connection_class  # idempotent


def test_store_client_packs_with_hiredis_and_arms_no_per_reply_timer() -> None:
    conn = store_client("redis://127.0.0.1:1/3").connection_pool.make_connection()  # type: ignore[no-untyped-call]
    assert conn.pack_command(*COMMANDS[0]) == pack_command(*COMMANDS[0])
    assert conn.socket_timeout is None  # the store's per-round-trip deadline bounds every read instead
    assert conn.db == 3


def test_the_cluster_store_client_packs_with_hiredis_on_every_node_it_makes() -> None:
    client = store_client("redis://127.0.0.1:1/0", cluster=True)  # connects on its first command only
    assert isinstance(client, RedisCluster)
    discovered = ClusterNode("127.0.0.1", 2, **client.connection_kwargs)  # as its nodes manager makes nodes
    for node in [*client.startup_nodes, discovered]:
        conn = node.connection_class(**node.connection_kwargs)
        assert isinstance(conn, _HiredisPacking), type(conn)
        assert conn.pack_command(*COMMANDS[0]) == pack_command(*COMMANDS[0])
        assert b"".join(conn.pack_command(*COMMANDS[0])) == b"".join(Connection().pack_command(*COMMANDS[0]))
        assert conn.socket_timeout is None
