"""Faust agents, one module per concern."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, cast

import faust

__all__ = ["as_stream", "delivered", "unacked_unless_done"]


def as_stream(stream: faust.StreamT[Any]) -> faust.Stream[Any]:
    """The stream an agent is given, typed as what it is: `take_events` is on `Stream`, not the `StreamT` protocol."""
    return cast("faust.Stream[Any]", stream)


@contextmanager
def unacked_unless_done(batch: Sequence[faust.EventT[Any]]) -> Iterator[None]:
    """Keep `batch` from being acknowledged if the block does not finish (the worker stops or crashes mid-batch).

    `take_events` acknowledges every event of a batch in a `finally` once the agent's body lets go of it, even
    when the body is cancelled or raised, and Faust then commits those offsets. A message already marked `acked`
    is skipped by that acknowledgement, so its offset is never committed here: the partition's next owner
    processes it again, which the idempotent feature store makes harmless.
    """
    try:
        yield
    except BaseException:
        for event in batch:
            event.message.acked = True
        raise


async def delivered(pending: Sequence[Awaitable[Any]]) -> None:
    """Wait for every send; raise the first failure only once all have finished (none is left unobserved)."""
    for result in await asyncio.gather(*pending, return_exceptions=True):
        if isinstance(result, BaseException):
            raise result
