"""Continual learning on the real broker and Redis: `streamrec learner` + `streamrec worker` subprocesses.

Drift: `model.drifting_stream.drifting_stream(seed=7)` — users walk item rings forwards before the shift and backwards
after it, and a third of the later users browse items that did not exist before. The base model is trained on
the first half only; the learner then follows the second half. Prequential NDCG@10 (each cycle's held-back
window, scored before anything is trained on it) of the model the learner keeps serving must beat the frozen
base model by a clear margin; every user still gets a recommendation for their last event while versions swap.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import torch
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient

from contracts import Event, EventType, Item, Settings
from model.artifacts import save_model
from model.drifting_stream import drifting_stream
from model.store import ModelStore
from model.train import TrainConfig, train
from model.transformer import ModelConfig, SeqRecModel
from model.vocab import ItemVocab
from streamrec.child_processes import free_port, terminate, worker_env
from streams.learner.kafka import model_update, publish_update
from streams.learner.service import LOG_FILE, ONLINE_FILE

pytestmark = pytest.mark.integration

SMALL = ModelConfig(max_len=20, d_model=32, n_layers=1, n_heads=2)


def _env(settings: Settings, store: Path) -> dict[str, str]:
    return worker_env(
        settings, free_port(), STREAMREC_MODEL_DIR=str(store), STREAMREC_BACKEND="torch", STREAMREC_DEVICE="cpu"
    )


@pytest.fixture
def store_dir(tmp_path: Path) -> Path:
    """The test's model store (empty)."""
    return tmp_path / "store"


@pytest.fixture
def settings(settings_factory: Callable[..., Settings], store_dir: Path) -> Settings:
    """The test's settings (own topics and Redis DB) with `store_dir` as the model store."""
    return settings_factory(model_dir=store_dir)


@pytest.fixture
def spawn(tmp_path: Path) -> Iterator[Callable[..., subprocess.Popen[bytes]]]:
    """Start `streamrec ...` subprocesses; each is stopped (SIGTERM, then SIGKILL) after the test."""
    procs: list[subprocess.Popen[bytes]] = []

    def start(args: Sequence[str], env: dict[str, str], name: str) -> subprocess.Popen[bytes]:
        log = open(tmp_path / f"{name}.log", "wb")  # noqa: SIM115 (closed with the process)
        cmd = [sys.executable, "-m", "streamrec", *args]
        proc = subprocess.Popen(cmd, env=env, cwd=tmp_path, stdout=log, stderr=subprocess.STDOUT)  # Faust data dir
        procs.append(proc)
        return proc

    yield start
    for proc in procs:
        terminate(proc)


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


def readies(store: Path) -> list[dict[str, Any]]:
    return [r for r in learner_log(store) if r.get("kind") == "ready"]


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
    settings: Settings, store_dir: Path, spawn: Callable[..., subprocess.Popen[bytes]], tmp_path: Path
) -> None:
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
    latest = {e.user_id: e.event_id for e in events}

    def answered(users: set[str]) -> bool:
        return all(any(r["trigger_event_id"] == latest[u] for r in recs.by_user.get(u, [])) for u in users)

    async with Recommendations(settings) as recs:
        spawn(["worker", "--loglevel", "warning"], env, "worker")
        await wait_for(lambda: answered({e.user_id for e in first}), 180, "the worker to serve the first half")
        args = ["learner", "--every-events", "400", "--every-seconds", "4", "--no-text-init", "--min-gate-points", "20",
                "--frozen-version", base.version]  # fmt: skip
        learner = spawn(args, env, "learner")
        await wait_for(lambda: len(readies(store_dir)) == 1, 120, "the learner")
        for n, chunk in enumerate(range(0, len(second), 400)):
            if n == 5:  # crash the learner (SIGKILL) mid-stream: serving goes on, a new one resumes
                learner.kill()
                learner.wait()
                promoted_before = store.current()
                learner = spawn(args, env, "learner-restarted")
                await wait_for(lambda: len(readies(store_dir)) == 2, 120, "the restarted learner")
                assert readies(store_dir)[-1]["base"] == promoted_before  # the latest promoted version
                restored = readies(store_dir)[-1]["restored"]  # histories rebuilt from the topic, not from scratch
                assert not restored["fresh_start"] and restored["events"] >= 5 * 400 and restored["users"] > 0
            await produce(settings, settings.topics.events, events_of(second[chunk : chunk + 400]))
            await asyncio.sleep(2.0)

        def cycles() -> list[dict[str, Any]]:
            return [r for r in learner_log(store_dir) if r.get("kind") == "cycle"]

        await wait_for(lambda: sum(c["events"] for c in cycles()) >= len(second), 240, "the learner to use every event")
        await wait_for(lambda: answered(set(latest)), 120, "a recommendation for every user's last event")
    terminate(learner)
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

    # New items (`n<j>`, never in the base model; rows from the first cycle on) are recommended to the users
    # browsing them once a learner version serves them.
    learned_versions = {c["version"] for c in promoted}
    new_users = {e.user_id for e in second if e.item_id and e.item_id.startswith("n")}
    last_recs = [recs.by_user[u][-1] for u in new_users if recs.by_user[u][-1]["model_version"] in learned_versions]
    with_new = [r for r in last_recs if any(i["item_id"].startswith("n") for i in r["items"])]
    print(f"new items recommended to {len(with_new)}/{len(last_recs)} of their users (learner versions)")
    assert len(last_recs) >= 20 and len(with_new) >= 0.8 * len(last_recs), (len(with_new), len(last_recs))

    # Online effects: the recommendations of learner versions were joined with the later events.
    online = store.read_json(ONLINE_FILE)["versions"]
    assert sum(online.get(v, {}).get("impressions", 0) for v in learned_versions) > 0, online
    assert any("online_serving" in c for c in log)

    # Offsets were committed after the cycles (the restart resumed there: nothing skipped, at most one cycle's
    # events seen twice).
    assert await committed_offsets(settings, f"{settings.topic_prefix}-learner") == len(events)
    assert len(second) <= sum(c["events"] for c in log) <= len(second) + 2000
    assert_no_window_lost(log, readies(store_dir)[0]["positions"], settings.topics.events)


def assert_no_window_lost(cycles: Sequence[dict[str, Any]], starts: dict[str, int], topic: str) -> None:
    """Per partition, the cycles' [first, end) offset windows cover everything from where the learner started to
    the last offset, without a gap (across the kill -9: at most overlaps, the uncommitted window read twice)."""
    for key, start in starts.items():
        partition = key.removeprefix(f"{topic}:")
        windows = sorted(tuple(c["offsets"][partition]) for c in cycles if partition in c["offsets"])
        covered = start
        for first, end in windows:
            assert first <= covered, f"partition {partition}: offsets [{covered}, {first}) never used by a cycle"
            covered = max(covered, end)
        assert windows, f"partition {partition}: no cycle used it"  # its end is checked by the committed offsets


def _health(port: int) -> str | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as response:  # noqa: S310
            return str(json.loads(response.read())["model_version"])
    except (OSError, ValueError):
        return None


def _random_model(out: Path, seed: int, items: Sequence[str]) -> Path:
    torch.manual_seed(seed)
    config = ModelConfig(n_items=len(items) + 8, max_len=20, d_model=32, n_layers=1, n_heads=2)
    save_model(out, SeqRecModel(config), ItemVocab(list(items), capacity=config.n_items))
    return out


@pytest.mark.slow
async def test_rollback_reaches_every_worker_and_a_corrupted_version_is_refused(
    settings: Settings, store_dir: Path, spawn: Callable[..., subprocess.Popen[bytes]], tmp_path: Path
) -> None:
    store = ModelStore(store_dir)
    items = [f"i{k}" for k in range(30)]
    v1 = store.promote(_random_model(tmp_path / "m1", 1, items)).version
    v2 = store.promote(_random_model(tmp_path / "m2", 2, items)).version
    ports = []
    for k in range(2):
        env = _env(settings, store_dir)
        ports.append(int(env["STREAMREC_WEB_PORT"]))
        spawn(["worker", "--loglevel", "warning"], env, f"worker{k}")
    await wait_for(lambda: all(_health(p) == v2 for p in ports), 120, f"both workers serving {v2}")

    cli = [sys.executable, "-m", "streamrec", "model", "rollback", v1]
    done = subprocess.run(cli, env=_env(settings, store_dir), capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    assert store.current() == v1
    await wait_for(lambda: all(_health(p) == v1 for p in ports), 60, f"both workers back on {v1}")

    # Recommendations from every partition (hence both workers) carry the rolled-back version.
    now = datetime.now(UTC)
    events = [
        Event(event_id=f"rb{k}", user_id=f"ru{k}", item_id=items[k % 30], type=EventType.VIEW, ts=now)
        for k in range(64)
    ]
    async with Recommendations(settings) as recs:
        await produce(settings, settings.topics.events, events_of(events))
        await wait_for(lambda: len(recs.by_user) == 64, 60, "recommendations for every probe user")
    assert {r["model_version"] for rs in recs.by_user.values() for r in rs} == {v1}

    # A corrupted version is refused: by the store, and by workers that are told about it anyway.
    v3 = store.add(_random_model(tmp_path / "m3", 3, items))
    weights = store.path(v3.version) / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-8] + b"corrupt!")
    bad = subprocess.run(
        [sys.executable, "-m", "streamrec", "model", "rollback", v3.version],
        env=_env(settings, store_dir), capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert bad.returncode == 1 and "sha256" in bad.stderr, bad.stdout + bad.stderr
    assert store.current() == v1
    await publish_update(settings, model_update(v3, store.uri(v3.version)))
    await asyncio.sleep(5.0)
    assert all(_health(p) == v1 for p in ports)
