"""Helpers for tests that send a worker records it must refuse: build them, produce them among valid events,
and check that each one was dead-lettered with its reason while every valid event still had its effect once."""

from __future__ import annotations

import json
from collections.abc import Collection, Mapping, Sequence
from typing import Any

from contracts import Event, Settings
from tests.integration.worker_support import answered_exactly_once, produce, records

__all__ = ["Record", "answered_with_dead_letters", "bad_record", "produce_with_bad"]

Record = tuple[bytes, bytes | None]
"""(value, key) of one Kafka record."""


def bad_record(doc: dict[str, Any], key: bytes | None = b"u1") -> Record:
    """`doc` as a JSON record value, with `key` (the user id a shop would key it by)."""
    return json.dumps(doc).encode(), key


async def produce_with_bad(
    settings: Settings, events: Sequence[Event], bad: Collection[Record], at: int
) -> list[tuple[int, int]]:
    """Produce `events` with the `bad` records between the first `at` and the rest; the events' (partition, offset)."""
    sent = await produce(settings, records(events[:at]) + list(bad) + records(events[at:]))
    return sent[:at] + sent[at + len(bad) :]


async def answered_with_dead_letters(
    settings: Settings, events: Sequence[Event], bad: Mapping[str, Record], timeout_s: float = 120.0
) -> tuple[dict[str, list[dict[str, Any]]], list[dict[str, Any]]]:
    """`answered_exactly_once`, waiting for one dead letter per `bad` record, then assert that each has the reason
    it is filed under in `bad`. Returns the recommendations per user and the dead letters."""
    recs, letters = await answered_exactly_once(settings, events, dead_letters=len(bad), timeout_s=timeout_s)
    assert sorted(d["reason"] for d in letters) == sorted(bad)  # noqa: S101 (a test helper)
    return recs, letters
