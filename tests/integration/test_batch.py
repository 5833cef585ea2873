"""A micro-batch through validation, the real Redis feature store, a baseline scorer and the explainer."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta

import redis.asyncio as aioredis

from contracts import DeadLetterReason, Event, Item
from explain.explainer import Explainer
from feature_store import FeatureConfig, FeatureStore
from model.baselines import default_blend
from streams.batch import BatchConfig, process_batch
from streams.validation import RawRecord
from tests.integration.worker_support import generated_events

T0 = datetime(2024, 3, 1, 9, 0, tzinfo=UTC)
NOW = T0 + timedelta(days=1)


def _records(events: list[Event], bad: list[bytes]) -> list[RawRecord]:
    good = [RawRecord(e.model_dump_json().encode(), e.user_id.encode(), "ev", 0, i) for i, e in enumerate(events)]
    worse = [RawRecord(b, b"u1", "ev", 0, len(events) + j) for j, b in enumerate(bad)]
    return good + worse


async def _run(store: FeatureStore, records: list[RawRecord]):  # type: ignore[no-untyped-def]
    return await process_batch(
        records,
        arrived=[time.monotonic()] * len(records),
        store=store,
        scorer=default_blend(),
        explainer=Explainer(),
        config=BatchConfig(top_k=5),
        clock=lambda: NOW,
    )


async def test_batch_recommends_every_user_with_real_evidence_and_dead_letters_the_rest(
    redis_db: aioredis.Redis,
) -> None:
    store = FeatureStore(redis_db, FeatureConfig(namespace="b"))
    await store.upsert_items([Item(item_id=f"i{k}", title=f"Mug {k}", category=f"c{k % 3}", ts=T0) for k in range(30)])
    events = generated_events(500, users=20, items=30, seed=3, start=T0)
    bad = [b"\xff", json.dumps({"type": "view", "user_id": "u1"}).encode(), b"[]"]
    outcome = await _run(store, _records(events, bad))

    assert sorted(outcome.applied) == sorted(e.event_id for e in events)
    assert [d.reason for d in outcome.dead_letters] == [
        DeadLetterReason.UNDECODABLE,
        DeadLetterReason.MISSING_KEY_FIELD,
        DeadLetterReason.SCHEMA_VIOLATION,
    ]
    latest = {e.user_id: e.event_id for e in events}
    assert {r.user_id: r.trigger_event_id for r in outcome.recommendations} == latest
    own = {e.event_id: e.user_id for e in events}
    evidence = 0
    for rec in outcome.recommendations:
        assert rec.items and [i.rank for i in rec.items] == list(range(1, len(rec.items) + 1))
        for item in rec.items:
            assert item.explanation.text
            for ev in item.explanation.evidence:
                assert own[ev.event_id] == rec.user_id  # only the user's own events
                evidence += 1
    assert evidence > 0
    assert set(outcome.stage_seconds) == {"decode", "features_write", "features_read", "score", "explain"}
    assert set(outcome.stage_cpu_seconds) == set(outcome.stage_seconds)
    assert all(v >= 0.0 for v in outcome.stage_cpu_seconds.values())


async def test_replayed_batch_is_recognised_and_recommends_the_same(redis_db: aioredis.Redis) -> None:
    store = FeatureStore(redis_db, FeatureConfig(namespace="r"))
    records = _records(generated_events(200, users=20, items=30, seed=3, start=T0), [])
    first = await _run(store, records)
    again = await _run(store, records)
    assert not again.applied and sorted(again.duplicates) == sorted(first.applied)
    assert [r.items for r in again.recommendations] == [r.items for r in first.recommendations]
