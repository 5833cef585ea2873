"""Serving never recommends the item of the triggering event (`STREAMREC_EXCLUDE_CURRENT_ITEM`, default on).

The worker path (`Runtime.run_batch` and the query API's `Runtime.recommend_now`) runs on an in-memory feature
store; the baseline blend ranks the user's most recent item first, so without the policy the trigger item would
lead every list.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from contracts import Event, ItemContext, PastEvent, Settings, UserState
from feature_store.records import ApplyResult
from streams.runtime import Runtime
from streams.validation import RawRecord

NOW = datetime.now(UTC) - timedelta(minutes=1)


class _MemoryStore:
    """The three `FeatureStore` calls a batch makes, kept in dicts."""

    def __init__(self) -> None:
        self.events: dict[str, list[PastEvent]] = {}

    async def apply_events(self, events: Sequence[Event], positions: object = None) -> ApplyResult:
        for e in events:
            stored = PastEvent(e.event_id, e.item_id, e.type, e.ts, e.query)
            self.events.setdefault(e.user_id, []).append(stored)
        return ApplyResult(tuple(e.event_id for e in events), ())

    async def read_batch(self, users: Sequence[str]) -> tuple[list[UserState], ItemContext]:
        features = [UserState(u, tuple(self.events.get(u, ())), {}, frozenset(), frozenset()) for u in users]
        popular = [("p1", 1.0), ("p2", 0.9), ("a", 0.8), ("b", 0.7)]
        return features, ItemContext(popular=popular, cooccurring={"b": [("a", 1.0), ("c", 0.5)]})

    async def catalog(self, ids: Sequence[str]) -> tuple[dict[str, str], dict[str, str]]:
        return {}, {}


def _record(n: int, user: str, item: str) -> RawRecord:
    event = Event(event_id=f"e{n}", user_id=user, item_id=item, type="view", ts=NOW + timedelta(seconds=n))
    return RawRecord(event.model_dump_json().encode(), user.encode(), "streamrec.events", 0, n)


async def _delivered(outcome: object) -> None:
    """Delivery always succeeds here (the settle/retry path has its own tests)."""


async def _lists(settings: Settings) -> tuple[dict[str, list[str]], list[str]]:
    runtime = Runtime(settings)
    runtime._store = _MemoryStore()  # type: ignore[assignment]
    first = await runtime.run_batch([_record(0, "u1", "a"), _record(1, "u2", "a")], [0.0, 0.0], _delivered)
    second = await runtime.run_batch(
        [_record(2, "u1", "b"), _record(3, "u2", "b"), _record(4, "u2", "a")], [0.0] * 3, _delivered
    )
    lists = {f"{r.user_id}/{r.trigger_event_id}": [i.item_id for i in r.items] for r in first.recommendations}
    lists |= {f"{r.user_id}/{r.trigger_event_id}": [i.item_id for i in r.items] for r in second.recommendations}
    now = await runtime.recommend_now("u1", 5)
    assert now is not None
    return lists, [i.item_id for i in now.items]


async def test_the_trigger_item_is_never_recommended_but_earlier_items_are() -> None:
    lists, now = await _lists(Settings(top_k=5))
    trigger = {"u1/e0": "a", "u2/e1": "a", "u1/e2": "b", "u2/e4": "a"}
    assert set(lists) == set(trigger)
    for key, items in lists.items():
        assert trigger[key] not in items, key
    assert sorted(lists["u1/e2"]) == ["a", "c", "p1", "p2"]  # every other item; a (seen earlier) stays eligible
    assert "b" in lists["u2/e4"]
    assert "b" not in now and "a" in now  # the query API obeys the same policy


async def test_the_policy_can_be_turned_off() -> None:
    lists, now = await _lists(Settings(top_k=5, exclude_current_item=False))
    assert lists["u1/e0"][0] == "a" and lists["u2/e1"][0] == "a"  # the blend puts a lone current item first
    assert "b" in lists["u1/e2"] and "a" in lists["u2/e4"]
    assert "b" in now
