"""Settle a micro-batch: every record ends applied and delivered, or dead-lettered; none is acknowledged before.

A failure is one of two kinds (`is_retriable`):
- transient (Redis or Kafka unreachable, timed out, `OOM`, `READONLY`, `LOADING`, `BUSY`, `MISCONF`,
  `TRYAGAIN`, `CLUSTERDOWN`, `MASTERDOWN`, a retriable Kafka error): back off and run the same records again,
  for as long as it takes;
- anything else is taken to be caused by some record: the batch is split in halves and each half settled on its
  own, so the records that can be processed are, and a single record that still fails is dead-lettered with
  reason `processing_failed` and the error.
Running records again is safe because every feature update is idempotent by event id; a recommendation may then
be delivered twice (at least once), never not at all.
A refused password or an untrusted certificate is no record's fault either: it is transient here (credentials
rotated while running; nothing is acknowledged until they are fixed). At start it is never retried: every
process checks its credentials first and stops with one line (`streamrec.preflight`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from aiokafka.errors import AuthenticationFailedError, KafkaTimeoutError, SaslAuthenticationFailed
from redis import exceptions as redis_errors

__all__ = ["Backoff", "Settler", "is_retriable"]

log = logging.getLogger(__name__)

R = TypeVar("R")  # a record
T = TypeVar("T")  # what settling some records gives

# Redis replies that mean "not now" (full, a replica, loading, failing over); redis-py has classes for these.
_TRANSIENT_REDIS = (
    redis_errors.ConnectionError,  # includes BusyLoadingError (LOADING)
    redis_errors.TimeoutError,
    redis_errors.OutOfMemoryError,  # OOM: at maxmemory under noeviction
    redis_errors.ReadOnlyError,  # READONLY: a master became a replica (failover)
    redis_errors.TryAgainError,
    redis_errors.ClusterDownError,  # also MASTERDOWN
)
# A refused login (redis-py's AuthenticationError is a ConnectionError, TLS errors are OSErrors): never dead-letter.
_REFUSED_KAFKA = (SaslAuthenticationFailed, AuthenticationFailedError)
# ... and codes it has none for: a script over busy-reply-threshold, a failing RDB save.
_TRANSIENT_CODES = frozenset({"BUSY", "MISCONF"})


def is_retriable(exc: BaseException) -> bool:
    """Whether `exc` is transient: the same records will succeed once the service recovers."""
    if getattr(exc, "retriable", False):  # ServiceUnavailable, aiokafka's retriable errors
        return True
    # aiokafka marks broker-side transient errors `retriable`, but not its own client-side send timeout.
    if isinstance(exc, (*_TRANSIENT_REDIS, *_REFUSED_KAFKA, KafkaTimeoutError, OSError, TimeoutError)):
        return True
    if isinstance(exc, redis_errors.ResponseError):
        # A pipeline prefixes the reply with "Command # N (<the command>) of pipeline caused error: ".
        reply = str(exc).rsplit("of pipeline caused error: ", 1)[-1]
        return reply.split(" ", 1)[0] in _TRANSIENT_CODES
    return False


@dataclass(frozen=True)
class Backoff:
    """Exponential backoff between retries of one batch: 0.1 s doubling up to `max_seconds`."""

    max_seconds: float = 5.0
    first_seconds: float = 0.1

    async def waits(self) -> Callable[[], Awaitable[None]]:
        """A fresh sequence of waits (call the result before each retry)."""
        delay = self.first_seconds

        async def wait() -> None:
            nonlocal delay
            await asyncio.sleep(delay)
            delay = min(delay * 2, self.max_seconds)

        return wait


@dataclass
class Settler(Generic[R, T]):
    """Runs `attempt` on records until they are settled (see the module docstring).

    attempt: processes and delivers some records; raises on failure (nothing it did is trusted then).
    poison: dead-letters one record that failed with a non-transient error, and delivers that dead letter.
    merge: combines the results of two halves.
    on_retry: told of each transient failure (metrics).
    """

    attempt: Callable[[Sequence[R]], Awaitable[T]]
    poison: Callable[[R, BaseException], Awaitable[T]]
    merge: Callable[[T, T], T]
    on_retry: Callable[[BaseException], None] = lambda exc: None
    backoff: Backoff = field(default_factory=Backoff)

    async def settle(self, records: Sequence[R]) -> T:
        """Settle `records`; returns only when each is applied and delivered, or dead-lettered and delivered."""
        wait = await self.backoff.waits()
        while True:
            try:
                return await self.attempt(records)
            except Exception as exc:
                if is_retriable(exc):
                    self.on_retry(exc)
                    log.warning("%d records retried: %s", len(records), exc)
                    await wait()
                    continue
                if len(records) == 1:
                    log.exception("a record failed for good; dead-lettered")
                    return await self._poison(records[0], exc)
                log.warning("%d records failed (%s); settling each half on its own", len(records), exc)
                half = len(records) // 2
                first = await self.settle(records[:half])
                return self.merge(first, await self.settle(records[half:]))

    async def _poison(self, record: R, error: BaseException) -> T:
        wait = await self.backoff.waits()
        while True:
            try:
                return await self.poison(record, error)
            except Exception as exc:  # a dead letter always fits the producer's limit, so this is the broker
                self.on_retry(exc)
                log.warning("dead letter retried: %s", exc)
                await wait()
