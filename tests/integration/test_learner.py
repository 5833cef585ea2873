"""Continual learning on the real broker and Redis: `streamrec learner` + `streamrec worker` subprocesses.

Drift: `model.drift.drifting_stream(seed=7)` — users walk item rings forwards before the shift and backwards
after it, and a third of the later users browse items that did not exist before. The base model is trained on
the first half only; the learner then follows the second half. Prequential NDCG@10 (each cycle's held-back
window, scored before anything is trained on it) of the model the learner keeps serving must beat the frozen
base model by a clear margin; every user still gets a recommendation for their last event while versions swap.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient

from contracts import Event, Item, Settings
from model.artifacts import save_model
from model.drift import drifting_stream
from model.store import ModelStore
from model.train import TrainConfig, train
from model.transformer import ModelConfig
from streams.learner.service import LOG_FILE

pytestmark = pytest.mark.integration

SMALL = ModelConfig(max_len=20, d_model=32, n_layers=1, n_heads=2)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _env(settings: Settings, store: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        STREAMREC_KAFKA_BOOTSTRAP=settings.kafka_bootstrap,
        STREAMREC_REDIS_URL=settings.redis_url.get_secret_value(),
        STREAMREC_TOPIC_PREFIX=settings.topic_prefix,
        STREAMREC_MODEL_DIR=str(store),
        STREAMREC_BACKEND="torch",
        STREAMREC_DEVICE="cpu",
        STREAMREC_WEB_PORT=str(_free_port()),
    )
    return env


@pytest.fixture
def spawn(tmp_path: Path) -> Iterator[Callable[..., subprocess.Popen[bytes]]]:
    """Start `streamrec ...` subprocesses; each is stopped (SIGTERM, then SIGKILL) after the test."""
    procs: list[subprocess.Popen[bytes]] = []

    def start(args: Sequence[str], env: dict[str, str], name: str) -> subprocess.Popen[bytes]:
        log = open(tmp_path / f"{name}.log", "wb")  # noqa: SIM115 (closed with the process)
        cmd = [sys.executable, "-m", "streamrec", *args]
        proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)
        procs.append(proc)
        return proc

    yield start
    for proc in procs:
        stop(proc)


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def base_model(events: Sequence[Event], catalog: dict[str, Item], out: Path) -> Path:
    result = train(events, catalog, TrainConfig(model=SMALL, epochs=5, batch_size=64, patience=2, max_valid_points=300))
    save_model(out, result.model, result.vocab, metrics=result.metrics)
    return out


async def produce(settings: Settings, topic: str, records: Sequence[tuple[bytes, bytes]]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap, acks="all", linger_ms=5)
    await producer.start()
    try:
        for value, key in records:
            await producer.send(topic, value, key=key)
        await producer.flush()
    finally:
        await producer.stop()


def events_of(events: Sequence[Event]) -> list[tuple[bytes, bytes]]:
    return [(e.model_dump_json().encode(), e.user_id.encode()) for e in events]


def learner_log(store: Path) -> list[dict[str, Any]]:
    path = store / LOG_FILE
    return [json.loads(line) for line in path.read_text().splitlines()] if path.is_file() else []


async def wait_for(check: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout_s:.0f}s waiting for {what}")
        await asyncio.sleep(0.5)


class Recommendations:
    """Reads the recommendations topic in the background: per user, in order."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.by_user: dict[str, list[dict[str, Any]]] = {}
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Recommendations:
        consumer = AIOKafkaConsumer(
            self.settings.topics.recommendations,
            bootstrap_servers=self.settings.kafka_bootstrap,
            auto_offset_reset="earliest",
            group_id=None,
        )
        await consumer.start()
        self._task = asyncio.create_task(self._read(consumer))
        return self

    async def _read(self, consumer: AIOKafkaConsumer) -> None:
        try:
            while True:
                for messages in (await consumer.getmany(timeout_ms=300)).values():
                    for m in messages:
                        doc = json.loads(m.value)
                        self.by_user.setdefault(doc["user_id"], []).append(doc)
        finally:
            await consumer.stop()

    async def __aexit__(self, *exc: object) -> None:
        assert self._task is not None
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)


async def committed_offsets(settings: Settings, group: str) -> int:
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    await admin.start()
    try:
        offsets = await admin.list_consumer_group_offsets(group)
    finally:
        await admin.close()
    return sum(meta.offset for tp, meta in offsets.items() if tp.topic == settings.topics.events and meta.offset > 0)


@pytest.mark.slow
async def test_learner_follows_drift_and_workers_swap_without_losing_recommendations(
    settings_factory: Callable[..., Settings], spawn: Callable[..., subprocess.Popen[bytes]], tmp_path: Path
) -> None:
    store_dir = tmp_path / "store"
    settings = settings_factory(model_dir=store_dir)
    start = datetime.now(UTC) - timedelta(hours=3)
    events, catalog, switch = drifting_stream(seed=7, start=start)
    first = [e for e in events if e.ts < switch]
    second = [e for e in events if e.ts >= switch]
    known = {e.item_id for e in first}
    store = ModelStore(store_dir)
    base = store.promote(base_model(first, {k: v for k, v in catalog.items() if k in known}, tmp_path / "base"))

    items = [(i.model_dump_json().encode(), i.item_id.encode()) for i in catalog.values()]
    await produce(settings, settings.topics.items, items)
    await produce(settings, settings.topics.events, events_of(first))  # before the learner: it starts at the end
    env = _env(settings, store_dir)
    spawn(["worker", "--loglevel", "warning"], env, "worker")
    args = ["learner", "--every-events", "400", "--every-seconds", "4", "--no-text-init", "--min-gate-points", "20"]
    learner = spawn(args, env, "learner")
    await wait_for(lambda: any(r.get("kind") == "ready" for r in learner_log(store_dir)), 120, "the learner")

    async with Recommendations(settings) as recs:
        for chunk in range(0, len(second), 400):
            await produce(settings, settings.topics.events, events_of(second[chunk : chunk + 400]))
            await asyncio.sleep(2.0)

        def cycles() -> list[dict[str, Any]]:
            return [r for r in learner_log(store_dir) if r.get("kind") == "cycle"]

        await wait_for(lambda: sum(c["events"] for c in cycles()) >= len(second), 240, "the learner to use every event")
        latest = {e.user_id: e.event_id for e in events}
        await wait_for(
            lambda: all(any(r["trigger_event_id"] == latest[u] for r in recs.by_user.get(u, [])) for u in latest),
            120,
            "a recommendation for every user's last event",
        )
    stop(learner)
    assert learner.returncode == 0

    log = cycles()
    promoted = [c for c in log if c["promoted"]]
    assert promoted, log
    assert store.current() == promoted[-1]["version"]
    drift = [c for c in log if c.get("last_ts") and c["last_ts"] >= switch.isoformat() and "frozen_ndcg" in c]
    learned = sum(c["serving_ndcg"] for c in drift) / len(drift)
    frozen = sum(c["frozen_ndcg"] for c in drift) / len(drift)
    print(
        f"prequential ndcg@10 over the second half: learner {learned:.4f} vs frozen {frozen:.4f} ({len(drift)} cycles)"
    )
    assert learned > frozen + 0.05, (learned, frozen, drift)

    # Swaps happened while serving; the worker stamped learner versions on recommendations.
    versions = {r["model_version"] for rs in recs.by_user.values() for r in rs}
    assert base.version in versions and versions & {c["version"] for c in promoted}, versions

    # New items (`n<j>`, never in the base model) are recommended to the users browsing them.
    new_users = {e.user_id for e in second if e.item_id and e.item_id.startswith("n")}
    last_recs = [recs.by_user[u][-1] for u in new_users]
    with_new = [r for r in last_recs if any(i["item_id"].startswith("n") for i in r["items"])]
    assert base.version not in {r["model_version"] for r in last_recs}
    assert len(with_new) >= 0.8 * len(last_recs), (len(with_new), len(last_recs))

    # Offsets were committed after the cycles (a restart resumes there).
    assert await committed_offsets(settings, f"{settings.topic_prefix}-learner") == len(events)
