"""The item-side read cache: fresh hits, expiry, disabled at 0 s, dropped keys, bounded size."""

from __future__ import annotations

from feature_store.cache import TtlCache


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_hits_until_expiry_then_misses() -> None:
    clock = Clock()
    cache = TtlCache(2.0, clock=clock)
    cache.put({"a": 1, "b": None})
    assert cache.split(["a", "b", "c", "a"]) == ({"a": 1, "b": None}, ["c"])
    clock.now += 2.0
    assert cache.split(["a", "b"]) == ({}, ["a", "b"])


def test_zero_ttl_never_caches_and_drop_forgets() -> None:
    off = TtlCache(0.0)
    off.put({"a": 1})
    assert off.split(["a", "a"]) == ({}, ["a"])
    on = TtlCache(5.0)
    on.put({"a": 1, "b": 2})
    on.drop(["a"])
    assert on.split(["a", "b"]) == ({"b": 2}, ["a"])


def test_outgrowing_the_bound_starts_over() -> None:
    cache = TtlCache(5.0, max_entries=3)
    cache.put({"a": 1, "b": 2})
    cache.put({"c": 3, "d": 4})
    assert cache.split(["a", "b", "c", "d"]) == ({"c": 3, "d": 4}, ["a", "b"])
