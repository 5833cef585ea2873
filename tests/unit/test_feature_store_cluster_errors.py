"""What a cluster client raises mid-failover reaches the worker as transient (`ServiceUnavailable`), and a
program error does not: the batch is retried in the first case and split / dead-lettered in the second."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from redis import exceptions as redis_errors

from contracts import Event, EventType, ServiceUnavailable
from feature_store import FeatureStore
from streams.settle import is_retriable

EVENT = Event(event_id="e1", user_id="u1", item_id="i1", type=EventType.VIEW, ts=datetime.now(UTC))


class _Pipe:
    def __init__(self, client: _Client) -> None:
        self.client = client

    def __getattr__(self, _name: str) -> Any:
        return lambda *args, **kwargs: self  # queued commands

    async def execute(self) -> list[Any]:
        self.client.sent += 1
        raise self.client.errors.pop(0)


class _Client:
    """Answers every pipeline with the next error of `errors` (and loads scripts without complaint)."""

    def __init__(self, *errors: BaseException) -> None:
        self.errors, self.sent = list(errors), 0

    def pipeline(self, transaction: bool = False) -> _Pipe:
        return _Pipe(self)


def _loads_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    async def load(client: Any, sources: Any) -> None:
        return None

    monkeypatch.setattr("feature_store.store.load_scripts", load)


@pytest.mark.parametrize(
    "error",
    [
        redis_errors.MovedError("3999 127.0.0.1:17001"),
        redis_errors.AskError("3999 127.0.0.1:17001"),
        redis_errors.TryAgainError("Multiple keys request during rehashing of slot"),
        redis_errors.ClusterDownError("The cluster is down"),
        redis_errors.ClusterError("TTL exhausted."),
        redis_errors.SlotNotCoveredError("Slot 3999 is not covered by the cluster."),
        redis_errors.RedisClusterUnreachableError("no node answered"),
        redis_errors.ConnectionError("Connection refused"),
    ],
    ids=lambda e: type(e).__name__,
)
async def test_failover_errors_are_transient(error: BaseException) -> None:
    store = FeatureStore(_Client(error))  # type: ignore[arg-type]  # a stand-in with the pipeline API only
    with pytest.raises(ServiceUnavailable) as raised:
        await store.apply_events([EVENT])
    assert is_retriable(raised.value)


async def test_noscript_twice_is_transient_once_is_reloaded(monkeypatch: pytest.MonkeyPatch) -> None:
    _loads_nothing(monkeypatch)
    client = _Client(redis_errors.NoScriptError("No matching script"), redis_errors.NoScriptError("again"))
    store = FeatureStore(client)  # type: ignore[arg-type]
    with pytest.raises(ServiceUnavailable, match="lost the feature store's scripts again"):
        await store.read_batch(["u1"])  # its first round trip is the scripts' pipeline
    assert client.sent == 2  # sent, scripts loaded, sent again, then given up as transient


async def test_a_cross_slot_error_is_not_transient() -> None:
    error = redis_errors.RedisClusterException("EVALSHA - all keys must map to the same key slot")
    store = FeatureStore(_Client(error))  # type: ignore[arg-type]
    with pytest.raises(redis_errors.RedisClusterException) as raised:
        await store.apply_events([EVENT])
    assert not is_retriable(raised.value)
