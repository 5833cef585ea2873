"""A new item becomes recommendable in a running worker without a model promotion (issue 14).

Real broker and Redis; the default model (`streamrec train` on the committed Online Retail sample: the two-stage
model with the text tower). A shopper views and buys an item; then a new item whose title is close to it is
published on the items topic; the worker's on-demand recommendation for the shopper must contain the new item
with a reason naming the bought item, while the served model version and the store's `CURRENT` stay unchanged.
"""

from __future__ import annotations

import asyncio
import gzip
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiohttp
import pytest
from aiokafka import AIOKafkaProducer

from contracts import Event, EventType, Item, Recommendation, Settings
from model.store import ModelStore
from streamrec.data_import import import_dataset
from streams.kafka_clients import client_kwargs
from tests.integration.worker_support import WorkerPool, collect, produce, records

pytestmark = pytest.mark.integration

SAMPLE = Path(__file__).resolve().parents[2] / "data" / "online-retail"


def _default_model(tmp_path: Path) -> tuple[Path, dict[str, Item], list[Event]]:
    """`streamrec train` with its defaults (fewer epochs) on the committed sample; its data folder's contents."""
    data = tmp_path / "data"
    import_dataset("online-retail", SAMPLE, data)
    model = tmp_path / "model"
    cmd = [sys.executable, "-m", "streamrec", "train", "--data", str(data), "--out", str(model), "--epochs", "4"]
    subprocess.run(cmd, check=True, capture_output=True, timeout=1200)  # noqa: S603 (our own CLI)
    catalog = {i.item_id: i for i in map(Item.model_validate_json, gzip.open(data / "catalog.jsonl.gz"))}
    return model, catalog, [Event.model_validate_json(line) for line in gzip.open(data / "events.jsonl.gz")]


async def _publish(settings: Settings, items: list[Item]) -> None:
    producer = AIOKafkaProducer(acks="all", **client_kwargs(settings))
    await producer.start()
    try:
        for item in items:
            await producer.send(settings.topics.items, item.model_dump_json().encode(), key=item.item_id.encode())
        await producer.flush()
    finally:
        await producer.stop()


async def _recommended(port: int, user: str) -> Recommendation | None:
    url = f"http://127.0.0.1:{port}/users/{user}/recommendations?k=20"
    async with aiohttp.ClientSession() as session, session.get(url, timeout=aiohttp.ClientTimeout(10)) as r:
        return Recommendation.model_validate_json(await r.text()) if r.status == 200 else None


async def test_a_new_item_like_the_one_just_bought_is_recommended_without_a_promotion(
    tmp_path: Path, settings_factory: Callable[..., Settings]
) -> None:
    model_dir, catalog, history = _default_model(tmp_path)
    store = ModelStore(tmp_path / "store")
    version = store.promote(model_dir).version
    bought_counts = Counter(e.item_id for e in history if e.type == EventType.PURCHASE and e.item_id in catalog)
    bought = catalog[next(i for i, _ in bought_counts.most_common() if catalog[i].title)]
    assert bought.title is not None
    fresh = Item(
        item_id="NEW-1", title=f"{bought.title} LARGE", category=bought.category, ts=datetime.now(UTC)
    )  # fmt: skip
    settings = settings_factory(model_dir=store.root)
    env = {"STREAMREC_MODEL_DIR": str(store.root), "STREAMREC_BACKEND": "torch", "STREAMREC_DEVICE": "cpu"}
    pool = WorkerPool(tmp_path, env)
    worker = pool.start(settings)
    try:
        await _publish(settings, list(catalog.values()))
        now = datetime.now(UTC) - timedelta(minutes=1)
        shopper = [
            Event(event_id="s1", user_id="shopper", item_id=bought.item_id, type=EventType.VIEW, ts=now),
            Event(event_id="s2", user_id="shopper", item_id=bought.item_id, type=EventType.PURCHASE,
                  ts=now + timedelta(seconds=20)),
        ]  # fmt: skip
        await produce(settings, records(shopper))
        recs, letters = await collect(
            settings, lambda latest, _: latest.get("shopper", {}).get("trigger_event_id") == "s2", timeout_s=180.0
        )
        assert not letters and recs["shopper"][-1]["model_version"] == version
        assert "NEW-1" not in {i["item_id"] for i in recs["shopper"][-1]["items"]}  # not published yet
        published = time.monotonic()
        await _publish(settings, [fresh])
        found = None
        while found is None and time.monotonic() - published < 120:
            rec = await _recommended(worker.web_port, "shopper")
            found = next((i for i in rec.items if i.item_id == "NEW-1"), None) if rec else None
            await asyncio.sleep(0.5)
        scorable_after = time.monotonic() - published
    finally:
        pool.stop_all()
    assert found is not None, "the new item never appeared in the shopper's recommendations"
    print(f"new item recommended {scorable_after:.1f} s after it was published, at rank {found.rank}")
    assert rec is not None and rec.model_version == version and store.current() == version  # no promotion
    named = [r for r in found.explanation.reasons if r.kind.value == "similar_to" and bought.title in r.detail]
    assert named, found.explanation.reasons  # the reason names the item it is like: the one just bought
