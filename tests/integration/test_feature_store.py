"""The feature store on the real Redis: idempotent, crash-safe, event-time decay, batch reads."""

from __future__ import annotations

import math
import random
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import redis.asyncio as aioredis

from contracts import Event, EventType, Item, ServiceUnavailable
from feature_store.config import FeatureConfig
from feature_store.records import Position
from feature_store.store import FeatureStore

T0 = datetime(2024, 3, 1, 9, 0, tzinfo=UTC)
KINDS = [EventType.VIEW] * 6 + [EventType.CLICK, EventType.ADD_TO_CART, EventType.REMOVE_FROM_CART, EventType.PURCHASE]


def _stream(n: int, seed: int = 7) -> list[Event]:
    rng = random.Random(seed)
    events = []
    for i in range(n):
        kind = rng.choice(KINDS)
        events.append(
            Event(
                event_id=f"e{i}",
                user_id=f"u{rng.randrange(12)}",
                item_id=f"i{rng.randrange(40)}",
                type=kind,
                ts=T0 + timedelta(seconds=37 * i),
                session_id=f"s{i // 50}",
            )
        )
    events.append(Event(event_id="q1", user_id="u1", type=EventType.SEARCH, query="red mug", ts=T0))
    return events


async def _dump(client: aioredis.Redis, namespace: str) -> dict[str, Any]:
    """Every key of a namespace (namespace stripped) with its value, TTLs ignored."""
    out: dict[str, Any] = {}
    async for key in client.scan_iter(match=f"{namespace}:*"):
        name = key.decode().split(":", 1)[1]
        kind = (await client.type(key)).decode()
        if kind == "string":
            out[name] = await client.get(key)
        elif kind == "list":
            out[name] = await client.lrange(key, 0, -1)
        elif kind == "hash":
            out[name] = await client.hgetall(key)
        elif kind == "set":
            out[name] = sorted(await client.smembers(key))
        elif kind == "zset":
            out[name] = await client.zrange(key, 0, -1, withscores=True)
    return out


async def _catalog(store: FeatureStore) -> None:
    items = [Item(item_id=f"i{k}", title=f"Thing {k}", category=f"c{k % 4}", ts=T0) for k in range(40)]
    await store.upsert_items(items)


async def test_replaying_a_batch_changes_nothing(redis_db: aioredis.Redis) -> None:
    store = FeatureStore(redis_db, FeatureConfig(namespace="a"))
    await _catalog(store)
    events = _stream(400)
    first = await store.apply_events(events)
    before = await _dump(redis_db, "a")
    again = await store.apply_events(events)
    assert len(first.applied) == len(events) and not first.duplicates
    assert not again.applied and len(again.duplicates) == len(events)
    assert await _dump(redis_db, "a") == before
    stats = [await store.user_stats(f"u{k}") for k in range(12)]
    assert sum(s.get("applied", 0) for s in stats) == len(events)


async def test_crash_between_user_and_item_updates_then_replay_equals_a_clean_run(
    redis_db: aioredis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    events = _stream(300)
    clean = FeatureStore(redis_db, FeatureConfig(namespace="clean"))
    crashed = FeatureStore(redis_db, FeatureConfig(namespace="crash"))
    for store in (clean, crashed):
        await _catalog(store)
    at = [Position("events", n % 3, n) for n in range(len(events))]  # as read from a 3-partition topic
    for start in range(0, len(events), 64):
        await clean.apply_events(events[start : start + 64], at[start : start + 64])

    real = FeatureStore._apply_item_side

    async def dies_once(self: FeatureStore, *args: Any) -> None:
        monkeypatch.setattr(FeatureStore, "_apply_item_side", real)
        raise ServiceUnavailable("simulated crash after the user scripts")

    await crashed.apply_events(events[:64], at[:64])
    monkeypatch.setattr(FeatureStore, "_apply_item_side", dies_once)
    with pytest.raises(ServiceUnavailable):
        await crashed.apply_events(events[64:128], at[64:128])  # user side applied, item side lost
    for start in range(40, len(events), 64):  # the worker replays from its last committed offset (or earlier)
        await crashed.apply_events(events[start : start + 64], at[start : start + 64])
    assert await _dump(redis_db, "crash") == await _dump(redis_db, "clean")
    assert await crashed.popularity_counts() == await clean.popularity_counts()


async def test_affinity_decays_by_event_time_not_wall_clock(redis_db: aioredis.Redis) -> None:
    config = FeatureConfig(namespace="d", affinity_half_life_seconds=3600.0)
    store = FeatureStore(redis_db, config)
    await store.upsert_items(
        [Item(item_id="shoe", category="shoes", ts=T0), Item(item_id="hat", category="hats", ts=T0)]
    )
    await store.apply_events(
        [
            Event(event_id="1", user_id="u", item_id="shoe", type=EventType.ADD_TO_CART, ts=T0),
            Event(event_id="2", user_id="u", item_id="hat", type=EventType.VIEW, ts=T0 + timedelta(hours=2)),
        ]
    )
    [user], _ = await store.read_batch(["u"])
    assert user.category_affinity["hats"] == pytest.approx(1.0)
    assert user.category_affinity["shoes"] == pytest.approx(3.0 * 0.25)  # two half-lives later
    assert user.cart == frozenset({"shoe"})


async def test_cart_and_just_purchased(redis_db: aioredis.Redis) -> None:
    store = FeatureStore(redis_db, FeatureConfig(namespace="c"))
    ts = [T0 + timedelta(minutes=m) for m in range(6)]
    await store.apply_events(
        [
            Event(event_id="1", user_id="u", item_id="a", type=EventType.ADD_TO_CART, ts=ts[0]),
            Event(event_id="2", user_id="u", item_id="b", type=EventType.ADD_TO_CART, ts=ts[1]),
            Event(event_id="3", user_id="u", item_id="c", type=EventType.ADD_TO_CART, ts=ts[2]),
            Event(event_id="4", user_id="u", item_id="a", type=EventType.REMOVE_FROM_CART, ts=ts[3]),
            Event(event_id="5", user_id="u", item_id="b", type=EventType.PURCHASE, ts=ts[4]),
        ]
    )
    [user], _ = await store.read_batch(["u"])
    assert user.cart == frozenset({"c"})
    assert user.purchased_recently == frozenset({"b"})
    assert [e.event_id for e in user.events] == ["1", "2", "3", "4", "5"]  # oldest first


async def test_catalog_keeps_the_newest_version_and_reads_flag_unavailable(redis_db: aioredis.Redis) -> None:
    store = FeatureStore(redis_db, FeatureConfig(namespace="k"))
    newer = Item(item_id="x", title="Blue mug", category="kitchen", available=False, ts=T0 + timedelta(hours=1))
    older = Item(item_id="x", title="Old mug", category="kitchen", ts=T0)
    assert await store.upsert_items([newer]) == 1
    assert await store.upsert_items([older]) == 0
    await store.apply_events([Event(event_id="1", user_id="u", item_id="x", type=EventType.VIEW, ts=T0)])
    _, items = await store.read_batch(["u"])
    assert items.item_title["x"] == "Blue mug"
    assert "x" in items.unavailable


async def test_read_batch_returns_neighbours_and_popularity(redis_db: aioredis.Redis) -> None:
    store = FeatureStore(redis_db, FeatureConfig(namespace="r", popularity_half_life_seconds=60.0))
    await store.upsert_items([Item(item_id=i, category="mugs", ts=T0) for i in ("a", "b", "c")])
    events = []
    for u in range(5):  # everybody views a then b; c is viewed long before (decayed away)
        events.append(Event(event_id=f"c{u}", user_id=f"v{u}", item_id="c", type=EventType.VIEW, ts=T0))
        later = T0 + timedelta(hours=1, minutes=u)
        events.append(Event(event_id=f"a{u}", user_id=f"u{u}", item_id="a", type=EventType.VIEW, ts=later))
        events.append(Event(event_id=f"b{u}", user_id=f"u{u}", item_id="b", type=EventType.VIEW, ts=later))
    await store.apply_events(events)
    [user], items = await store.read_batch(["u0"])
    assert dict(items.cooccurring["a"])["b"] == pytest.approx(5.0)
    assert dict(items.cooccurring["b"])["a"] == pytest.approx(5.0)
    assert [i for i, _ in items.popular][:2] == ["a", "b"] or [i for i, _ in items.popular][:2] == ["b", "a"]
    scores = dict(items.popular)
    assert scores["c"] < 1e-10 * scores["a"]  # an hour at a 1-minute half-life
    assert items.popular_by_category["mugs"][0][1] == pytest.approx(1.0)
    assert math.isclose(sum(user.category_affinity.values()), 2.0, rel_tol=1e-3)


async def test_scripts_are_reloaded_after_redis_forgets_them(redis_db: aioredis.Redis) -> None:
    # Scripts run by SHA; a restarted (or flushed) Redis answers NOSCRIPT and the store loads them and resends.
    store = FeatureStore(redis_db, FeatureConfig(namespace="n"))
    events = _stream(20)
    await store.apply_events(events[:10])
    await redis_db.script_flush()
    result = await store.apply_events(events)
    assert len(result.applied) == len(events) - 10 and len(result.duplicates) == 10
    await redis_db.script_flush()
    users, _ = await store.read_batch(["u1"])
    assert users[0].events


async def test_popularity_stays_finite_and_ranks_right_over_any_event_time_span(redis_db: aioredis.Redis) -> None:
    # The first event anchors the epoch in 1970; a linear scale (v2) overflowed to inf ~1,024 days later.
    cfg = FeatureConfig(namespace="p")
    store = FeatureStore(redis_db, cfg)
    now = datetime.now(UTC).replace(microsecond=0)
    plan = [("old", datetime(1970, 1, 2, tzinfo=UTC), EventType.PURCHASE), ("now", now, EventType.VIEW)]
    plan += [("steady", now - timedelta(days=30 * k), EventType.VIEW) for k in range(49)]  # 4 years, monthly
    plan += [("burst", now - timedelta(days=3 * 365, minutes=k), EventType.PURCHASE) for k in range(400)]
    plan += [("recent", now - timedelta(hours=k), EventType.CLICK) for k in range(1, 4)]
    events = [
        Event(event_id=f"p{n}", user_id=f"u{n % 7}", item_id=item, type=kind, ts=ts)
        for n, (item, ts, kind) in enumerate(plan)
    ]
    for start in range(0, len(events), 100):
        await store.apply_events(events[start : start + 100])

    tau = cfg.popularity_half_life_seconds / math.log(2.0)
    expected: dict[str, list[float]] = {}  # item -> log-terms relative to now (exact, in Python)
    for item, ts, kind in plan:
        expected.setdefault(item, []).append(math.log(cfg.event_weights[kind]) - (now - ts).total_seconds() / tau)
    best = {i: max(xs) + math.log(math.fsum(math.exp(x - max(xs)) for x in xs)) for i, xs in expected.items()}
    stored = dict(await redis_db.zrange(store.keys.popularity(), 0, -1, withscores=True))
    assert len(stored) == len(expected) and all(math.isfinite(s) for s in stored.values())
    assert [i.decode() for i in sorted(stored, key=stored.__getitem__, reverse=True)] == sorted(
        best, key=best.__getitem__, reverse=True
    )
    _, items = await store.read_batch(["u0"])
    shares = dict(items.popular)
    assert all(math.isfinite(v) and 0.0 <= v <= 1.0 for v in shares.values())
    # Shares of the best equal the decayed sums' ratios (where they do not underflow).
    top = max(best.values())
    assert shares["recent"] == pytest.approx(math.exp(best["recent"] - top), rel=1e-6)
    assert shares["steady"] == pytest.approx(math.exp(best["steady"] - top), rel=1e-6)


async def test_a_replay_from_any_offset_changes_nothing_and_no_key_is_kept_per_event(redis_db: aioredis.Redis) -> None:
    # 1,200 events of 12 users: ~100 per user, twice the id window of 50, so only the watermarks can tell.
    store = FeatureStore(redis_db, FeatureConfig(namespace="w"))
    await _catalog(store)
    events = _stream(1200)
    at = [Position("events", n % 2, n // 2) for n in range(len(events))]
    for start in range(0, 600, 100):
        await store.apply_events(events[start : start + 100], at[start : start + 100])
    keys_after_half = len([k async for k in redis_db.scan_iter(match="w:*")])
    for start in range(600, len(events), 100):
        await store.apply_events(events[start : start + 100], at[start : start + 100])
    before = await _dump(redis_db, "w")
    assert len(before) == keys_after_half  # twice the events, no more keys: state grows with users and items

    replay = await store.apply_events(events, at)  # a reset to the earliest offset
    assert not replay.applied and len(replay.duplicates) == len(events)
    assert await _dump(redis_db, "w") == before
    stats = [await store.user_stats(f"u{k}") for k in range(12)]
    assert sum(s.get("applied", 0) for s in stats) == len(events)


async def test_a_producer_resend_at_a_new_offset_is_a_duplicate(redis_db: aioredis.Redis) -> None:
    store = FeatureStore(redis_db, FeatureConfig(namespace="s"))
    await _catalog(store)
    events = _stream(30)
    await store.apply_events(events, [Position("events", 0, n) for n in range(len(events))])
    before = await _dump(redis_db, "s")
    resent = await store.apply_events(events[5:10], [Position("events", 0, 100 + n) for n in range(5)])
    assert not resent.applied and len(resent.duplicates) == 5
    assert await _dump(redis_db, "s") == before
    counts = await store.popularity_counts()
    assert sum(counts.values()) == sum(1 for e in events if e.item_id and e.type != EventType.REMOVE_FROM_CART)


async def test_user_features_expire_after_the_user_ttl(redis_db: aioredis.Redis) -> None:
    store = FeatureStore(redis_db, FeatureConfig(namespace="t", user_ttl_seconds=8 * 86400))
    await store.apply_events(_stream(40))
    user_keys = [k async for k in redis_db.scan_iter(match="t:*{u:*")]
    assert user_keys
    ttls = [await redis_db.ttl(k) for k in user_keys]
    assert all(8 * 86400 - 60 < t <= 8 * 86400 for t in ttls), ttls
    with pytest.raises(ValueError, match="idempotency horizon"):
        FeatureConfig(user_ttl_seconds=86400)
