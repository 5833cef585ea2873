"""Batch failures are classified: transient ones retry the same records, others isolate the failing record."""

from __future__ import annotations

import ssl
from collections.abc import Sequence
from types import SimpleNamespace
from typing import Any

import pytest
from aiokafka.errors import KafkaConnectionError, KafkaTimeoutError, MessageSizeTooLargeError, SaslAuthenticationFailed
from redis import exceptions as redis_errors

from contracts import ServiceUnavailable
from streams.agents import unacked_unless_done
from streams.settle import Backoff, Settler, is_retriable

PIPELINE = "Command # 3 (EVALSHA 9f0c 8 sr:v3:{u:OOM}:claim:e1 x) of pipeline caused error: "


@pytest.mark.parametrize(
    ("exc", "retriable"),
    [
        (ServiceUnavailable("Redis unavailable"), True),
        (redis_errors.OutOfMemoryError("command not allowed when used memory > 'maxmemory'."), True),
        (redis_errors.ReadOnlyError("You can't write against a read only replica."), True),
        (redis_errors.BusyLoadingError("Redis is loading the dataset in memory"), True),
        (redis_errors.ResponseError("BUSY Redis is busy running a script."), True),
        (redis_errors.ResponseError(PIPELINE + "MISCONF Redis is configured to save RDB snapshots"), True),
        (redis_errors.TryAgainError("Multiple keys request during rehashing of slot"), True),
        (redis_errors.ClusterDownError("The cluster is down"), True),
        # Credentials rotated while running: not a record's fault, so never dead-lettered (start checks stop a
        # process whose credentials are refused at start: streamrec.preflight).
        (redis_errors.AuthenticationError("WRONGPASS invalid username-password pair"), True),
        (SaslAuthenticationFailed("invalid credentials with SASL mechanism SCRAM-SHA-512"), True),
        (ssl.SSLCertVerificationError(1, "certificate verify failed"), True),
        (KafkaTimeoutError(), True),
        (KafkaConnectionError(), True),
        (TimeoutError(), True),
        (redis_errors.ResponseError("WRONGTYPE Operation against a key holding the wrong kind of value"), False),
        (redis_errors.ResponseError(PIPELINE + "WRONGTYPE Operation against a key"), False),  # 'OOM' is in the key
        (MessageSizeTooLargeError(), False),
        (ValueError("year 0 is out of range"), False),
        (UnicodeEncodeError("utf-8", "\ud800", 0, 1, "surrogates not allowed"), False),
    ],
)
def test_failures_are_classified(exc: BaseException, retriable: bool) -> None:
    assert is_retriable(exc) is retriable


class _Flaky:
    """`attempt` that fails transiently `transient` times, and always for batches holding a record in `poison`."""

    def __init__(self, transient: int = 0, poison: frozenset[int] = frozenset()) -> None:
        self.transient, self.poison = transient, poison
        self.calls: list[list[int]] = []

    async def attempt(self, records: Sequence[int]) -> list[str]:
        self.calls.append(list(records))
        if self.transient:
            self.transient -= 1
            raise redis_errors.OutOfMemoryError("command not allowed")
        if self.poison & set(records):
            raise redis_errors.ResponseError("WRONGTYPE Operation against a key")
        return [f"ok:{r}" for r in records]


async def _dead_letter(record: int, error: BaseException) -> list[str]:
    return [f"dead:{record}:{type(error).__name__}"]


def _settler(flaky: _Flaky) -> Settler[int, list[str]]:
    return Settler(flaky.attempt, _dead_letter, lambda a, b: a + b, backoff=Backoff(first_seconds=0.001))


async def test_a_transient_failure_runs_the_same_records_again_until_they_succeed() -> None:
    flaky = _Flaky(transient=3)
    assert await _settler(flaky).settle([1, 2, 3]) == ["ok:1", "ok:2", "ok:3"]
    assert flaky.calls == [[1, 2, 3]] * 4


async def test_a_failing_record_is_dead_lettered_and_the_rest_of_the_batch_goes_on() -> None:
    flaky = _Flaky(poison=frozenset({5}))
    out = await _settler(flaky).settle(list(range(8)))
    assert out == [*(f"ok:{r}" for r in range(5)), "dead:5:ResponseError", "ok:6", "ok:7"]
    assert [5] in flaky.calls  # isolated before it was dead-lettered


async def test_a_dead_letter_whose_delivery_fails_transiently_is_retried() -> None:
    failures = [KafkaTimeoutError(), KafkaTimeoutError()]

    async def poison(record: int, error: BaseException) -> list[str]:
        if failures:
            raise failures.pop()
        return [f"dead:{record}"]

    settler = Settler(_Flaky(poison=frozenset({1})).attempt, poison, lambda a, b: a + b, backoff=Backoff(0.01, 0.001))
    assert await settler.settle([1]) == ["dead:1"]


def _batch(n: int) -> list[Any]:
    return [SimpleNamespace(message=SimpleNamespace(acked=False)) for _ in range(n)]


def test_a_batch_left_unfinished_is_marked_so_take_events_does_not_ack_it() -> None:
    batch = _batch(3)
    with pytest.raises(KeyboardInterrupt), unacked_unless_done(batch):
        raise KeyboardInterrupt
    assert all(e.message.acked for e in batch)  # faust's Message.ack skips messages already marked acked
    done = _batch(2)
    with unacked_unless_done(done):
        pass
    assert not any(e.message.acked for e in done)
