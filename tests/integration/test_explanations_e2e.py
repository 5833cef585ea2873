"""End to end on the real broker and Redis: a worker serving a trained transformer explains every recommendation
with the user's own replayed events (by `event_id`) and names catalog titles, never another user's data."""

from __future__ import annotations

import asyncio
import random
import re
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer

from contracts import Event, EventType, Item, Settings
from feature_store import FeatureStore, redis_client
from model.artifacts import save_model
from model.store import ModelStore
from model.train import TrainConfig, train
from model.transformer import ModelConfig
from tests.integration.worker_support import WorkerPool, collect, produce, records

pytestmark = [pytest.mark.integration, pytest.mark.slow]

N_ITEMS = 40
CATALOG = {
    f"p{n}": Item(
        item_id=f"p{n}",
        title=f"{['Oak', 'Brass', 'Linen', 'Wool', 'Glass'][n % 5]} {['lamp', 'chair', 'vase', 'rug'][n % 4]} no. {n}",
        category=["Lighting", "Seating", "Decor", "Textiles"][n % 4],
        ts=datetime(2024, 1, 1, tzinfo=UTC),
    )
    for n in range(N_ITEMS)
}
TITLES = {i: item.title for i, item in CATALOG.items() if item.title}
KINDS = [EventType.VIEW] * 5 + [EventType.CLICK, EventType.ADD_TO_CART]


def _sessions(prefix: str, users: int, length: int, start: datetime, seed: int) -> list[Event]:
    """Users walking a ring of items (the next item is usually 1-2 steps on), time-ordered, ids `<prefix>-...`."""
    rng = random.Random(seed)
    out = []
    for u in range(users):
        position = rng.randrange(N_ITEMS)
        for j in range(length):
            position = (position + rng.choice([1, 1, 2, 5])) % N_ITEMS
            ts = start + timedelta(seconds=30 * j + u)
            out.append(Event(event_id=f"{prefix}-{u}-{j}", user_id=f"{prefix}{u}", item_id=f"p{position}",
                             type=rng.choice(KINDS), ts=ts))  # fmt: skip
    return sorted(out, key=lambda e: e.ts)


def _trained_store(tmp_path: Path) -> tuple[Path, str]:
    """A tiny transformer trained on ring walks, promoted into a fresh model store."""
    history = _sessions("train", 80, 20, datetime(2024, 2, 1, tzinfo=UTC), seed=3)
    config = TrainConfig(
        model=ModelConfig(max_len=20, d_model=32, n_layers=1, n_heads=2), epochs=3, batch_size=64, patience=2
    )
    result = train(history, CATALOG, config)
    save_model(tmp_path / "model", result.model, result.vocab, metrics=result.metrics)
    store = tmp_path / "store"
    return store, ModelStore(store).promote(tmp_path / "model").version


async def _publish_catalog(settings: Settings) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap, acks="all")
    await producer.start()
    try:
        for item in CATALOG.values():
            await producer.send(settings.topics.items, item.model_dump_json().encode(), key=item.item_id.encode())
        await producer.flush()
    finally:
        await producer.stop()


async def _wait_for_titles(settings: Settings, timeout_s: float = 90.0) -> None:
    client = redis_client(settings.redis_url.get_secret_value(), cluster=settings.redis_cluster)
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            titles, _ = await FeatureStore(client).catalog(list(CATALOG))
            if len(titles) == len(CATALOG):
                return
            if time.monotonic() > deadline:
                pytest.fail(f"catalog not in Redis after {timeout_s:.0f}s ({len(titles)}/{len(CATALOG)} titles)")
            await asyncio.sleep(0.5)
    finally:
        await client.aclose()


def _check_explanations(rec: dict[str, Any], own: dict[str, Event]) -> int:
    """Assert one recommendation's explanations are the user's own; return how many texts quote a title."""
    own_titles = {TITLES[e.item_id] for e in own.values() if e.item_id}
    quoting = 0
    for item in rec["items"]:
        explanation = item["explanation"]
        for evidence in explanation["evidence"]:
            event = own.get(evidence["event_id"])
            assert event is not None, f"evidence {evidence['event_id']} is not one of {rec['user_id']}'s events"
            assert evidence["item_id"] == event.item_id and evidence["type"] == event.type.value
            assert datetime.fromisoformat(evidence["ts"]) == event.ts
        quoted = re.findall(r"'([^']*)'", explanation["text"])
        assert set(quoted) <= own_titles, (rec["user_id"], explanation["text"])  # titles, and only their own
        quoting += bool(quoted)
    return quoting


async def test_every_recommendation_is_explained_by_the_users_own_events_and_titles(
    tmp_path: Path, settings_factory: Callable[..., Settings]
) -> None:
    store, version = _trained_store(tmp_path)
    settings = settings_factory(model_dir=store)
    pool = WorkerPool(tmp_path, {"STREAMREC_MODEL_DIR": str(store), "STREAMREC_BACKEND": "torch",
                                 "STREAMREC_DEVICE": "cpu"})  # fmt: skip
    pool.start(settings)
    try:
        await _publish_catalog(settings)
        await _wait_for_titles(settings)
        replay = _sessions("live", 8, 10, datetime.now(UTC) - timedelta(hours=1), seed=5)
        await produce(settings, records(replay))
        last = {e.user_id: e.event_id for e in replay}
        recs, letters = await collect(
            settings,
            lambda latest, _: all(latest.get(u, {}).get("trigger_event_id") == last[u] for u in last),
            timeout_s=180.0,
        )
    finally:
        pool.stop_all()
    assert not letters, letters
    assert set(recs) == set(last), "some replayed user got no recommendation"
    by_user: dict[str, dict[str, Event]] = {}
    for e in replay:
        by_user.setdefault(e.user_id, {})[e.event_id] = e
    quoting, explained = 0, 0
    for user, docs in recs.items():
        assert docs[-1]["trigger_event_id"] == last[user]
        for rec in docs:
            assert rec["model_version"] == version  # the trained transformer served, not the baseline fallback
            # only events up to the trigger can be evidence: they are the ones the worker had seen
            trigger_ts = by_user[user][rec["trigger_event_id"]].ts
            seen = {i: e for i, e in by_user[user].items() if e.ts <= trigger_ts}
            quoting += _check_explanations(rec, seen)
            explained += sum(bool(item["explanation"]["evidence"]) for item in rec["items"])
    assert explained > 0 and quoting > 0  # evidence and titled texts really appear
