"""A small in-process cache with a time-to-live, for item-side reads shared by many micro-batches."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Any

__all__ = ["TtlCache"]

_MISSING = object()


class TtlCache:
    """Key → value for `ttl_seconds` (0 disables caching); cleared whole when it outgrows `max_entries`."""

    def __init__(
        self, ttl_seconds: float, max_entries: int = 200_000, clock: Callable[[], float] = time.monotonic
    ) -> None:
        """Args: time to live (s), size bound, monotonic clock (injectable for tests)."""
        self.ttl_seconds = ttl_seconds
        self._max = max_entries
        self._clock = clock
        self._data: dict[str, tuple[float, Any]] = {}

    def split(self, keys: Iterable[str]) -> tuple[dict[str, Any], list[str]]:
        """(fresh values by key, keys to fetch) for `keys` (duplicates are looked up once)."""
        hits: dict[str, Any] = {}
        misses: list[str] = []
        if self.ttl_seconds <= 0:
            return hits, list(dict.fromkeys(keys))
        now = self._clock()
        for key in dict.fromkeys(keys):
            found = self._data.get(key)
            if found is not None and found[0] > now:
                hits[key] = found[1]
            else:
                misses.append(key)
        return hits, misses

    def put(self, values: dict[str, Any]) -> None:
        """Store fetched values (no-op when disabled)."""
        if self.ttl_seconds <= 0 or not values:
            return
        if len(self._data) + len(values) > self._max:
            self._data.clear()
        expires = self._clock() + self.ttl_seconds
        for key, value in values.items():
            self._data[key] = (expires, value)

    def drop(self, keys: Iterable[str]) -> None:
        """Forget `keys` (after this process wrote them)."""
        for key in keys:
            self._data.pop(key, None)
