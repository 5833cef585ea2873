"""Freshness and gate safety of continual learning: event -> served by every worker, and regressions promoted.

Brings up what it needs with `streamrec.stack.LocalStack` (the code behind `streamrec stack up`; a running stack
is reused and left running), fresh topics under a random prefix and a leased Redis DB (8..15). A base model of
`--model` size (`default`: `ModelConfig()` as `streamrec train` builds it; `small`: d=32, 1 block, 20 events) is
trained on the first half of a `model.drifting_stream.drifting_stream` and promoted into a temporary store (it is the
anchor). `--workers` `streamrec worker` processes and one `streamrec learner` (a cycle every `--window` events)
start; a few first-half events warm the workers up, then the second half (the drift: other users walking the
rings backwards, a new item cluster) streams in at `--rate` events/s, in laps (each lap: new user ids, times
one lap later), until `--cycles` learner cycles have run and every promoted version has been timed.

- `freshness_s`: for each promoted version, from the moment its window's *oldest* event was produced to the first
  recommendation stamped with it on *every* recommendations partition (hence every worker: both topics are keyed
  by user with the same partition count); a learner behind the stream trains on the newest `--max-window`
  events (the older ones feed histories and replay only), and the window is that trained part. Worst over the
  run; the breakdown per version is printed (window span,
  wait for the learner, learner cycle, publish -> served everywhere). A version replaced before it reached every
  partition is not timed (`superseded`).
- `regressions_promoted`: after the run, every promoted version is compared with its parent (and the anchor) on
  the events of the *next* window — the future for both — with the gate's own rule (`model.gate.gate`: paired
  bootstrap of NDCG@10 on next-new targets, anchor margin). A promoted version that this out-of-sample check
  refuses counts as a regression promoted.

    nice -n 10 .venv/bin/python bench/freshness.py --model default --rate 1000

Last line: `RESULT freshness_s=<worst> ... regressions_promoted=<n> ...`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import torch
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from contracts import Event, Settings
from model.artifacts import save_model
from model.continual import Ranker
from model.drifting_stream import drifting_stream
from model.gate import GateConfig, gate
from model.history import UserHistory
from model.splits import TestPoint
from model.store import ModelStore
from model.train import TrainConfig, train
from model.transformer import ModelConfig
from streamrec.child_processes import free_port, leased_redis_db, terminate, worker_env
from streamrec.stack import LocalStack, topic_specs
from streamrec.stack_config import StackConfig
from streamrec.stack_topics import delete_topics, ensure_topics
from streams.learner.service import LOG_FILE

MODELS = {"default": ModelConfig(), "small": ModelConfig(max_len=20, d_model=32, n_layers=1, n_heads=2)}


def _log(store: Path) -> list[dict[str, Any]]:
    path = store / LOG_FILE
    return [json.loads(line) for line in path.read_text().splitlines() if line] if path.is_file() else []


def _wall(iso: str) -> float:
    return datetime.fromisoformat(iso).timestamp()


class Recs:
    """First wall time each (partition, model_version) was seen on the recommendations topic."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.first: dict[tuple[int, str], float] = {}

    async def run(self) -> None:
        consumer = AIOKafkaConsumer(
            self.settings.topics.recommendations,
            bootstrap_servers=self.settings.kafka_bootstrap,
            group_id=None,
            auto_offset_reset="earliest",
        )
        await consumer.start()
        try:
            while True:
                for tp, messages in (await consumer.getmany(timeout_ms=100)).items():
                    now = time.time()
                    for m in messages:
                        self.first.setdefault((tp.partition, json.loads(m.value)["model_version"]), now)
        finally:
            await consumer.stop()


@dataclass
class Stream:
    """Sends events at a steady rate, in laps; remembers each (partition, offset)'s event and send time."""

    producer: AIOKafkaProducer
    topic: str
    events: list[Event]  # one lap, in time order
    rate: float
    lap: timedelta  # how much later each lap's events are stamped
    laps: int
    sent: dict[tuple[int, int], tuple[float, Event]] = field(default_factory=dict)

    async def run(self) -> None:
        pending: list[tuple[asyncio.Future[Any], float, Event]] = []
        start = time.monotonic()
        n = 0
        for lap in range(self.laps):
            for e in self.events:
                event = e if lap == 0 else self._later(e, lap)
                future = await self.producer.send(
                    self.topic, event.model_dump_json().encode(), key=event.user_id.encode()
                )
                pending.append((future, time.time(), event))
                n += 1
                if len(pending) >= 50:
                    await self._settle(pending)
                    pending = []
                await asyncio.sleep(max(0.0, start + n / self.rate - time.monotonic()))  # steady: the rate never drifts
        await self._settle(pending)

    def _later(self, e: Event, lap: int) -> Event:
        """The event as lap `lap` sends it: other users (ids suffixed), stamped `lap` laps later."""
        update = {"event_id": f"{e.event_id}-l{lap}", "user_id": f"{e.user_id}-l{lap}", "ts": e.ts + lap * self.lap}
        return e.model_copy(update=update)

    async def _settle(self, pending: list[tuple[asyncio.Future[Any], float, Event]]) -> None:
        for future, sent_at, event in pending:
            meta = await future
            self.sent[(meta.partition, meta.offset)] = (sent_at, event)

    def window(self, offsets: dict[str, list[int]]) -> list[tuple[float, Event]]:
        """Send times and events of a cycle's offset window (only ours)."""
        keys = ((int(p), o) for p, (start, end) in offsets.items() for o in range(start, end))
        return [self.sent[k] for k in keys if k in self.sent]


def _spawn(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    cmd = [sys.executable, "-m", "streamrec", *args]
    # cwd: Faust keeps `<app>-data` in the working directory; keep it in the bench's own work dir.
    return subprocess.Popen(cmd, env=env, cwd=log.parent, stdout=log.open("wb"), stderr=subprocess.STDOUT)  # noqa: S603


async def _wait(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            msg = f"timed out after {timeout:.0f}s waiting for {what}"
            raise TimeoutError(msg)
        await asyncio.sleep(0.2)


@dataclass
class Timing:
    """One promoted version's way from its window to every partition (wall-clock seconds)."""

    cycle: int
    version: str
    freshness_s: float  # oldest event of the window produced -> served on every partition
    span_s: float  # oldest -> newest event of the window
    wait_s: float  # newest event -> the learner's cycle started
    cycle_s: float  # the learner's cycle (fine-tune, gate, save)
    swap_s: float  # published -> served on every partition (load, verify, swap, next batch)


def _timing(cycle: dict[str, Any], window: list[tuple[float, Event]], served: float) -> Timing:
    oldest, newest = min(t for t, _ in window), max(t for t, _ in window)
    started, published = _wall(cycle["at"]), _wall(cycle["published_at"])
    return Timing(cycle["cycle"], cycle["version"], served - oldest, newest - oldest, started - newest,
                  cycle["seconds"], served - published)  # fmt: skip


def regressions(store: ModelStore, cycles: list[dict[str, Any]], stream: Stream) -> list[str]:
    """Promoted versions that the gate's rule refuses against their parent on the next window (the future)."""
    histories: dict[str, UserHistory] = {}
    windows = {
        k: {(int(p), o) for p, (s, e) in c["offsets"].items() for o in range(s, e)} for k, c in enumerate(cycles)
    }
    points: dict[int, list[TestPoint]] = {k: [] for k in windows}
    owner = {key: k for k, keys in windows.items() for key in keys}
    # Second-half users are new users: their whole history is in the stream, replayed in send order.
    for key, (_, event) in sorted(stream.sent.items(), key=lambda kv: kv[1][0]):
        history = histories.setdefault(event.user_id, UserHistory(event.user_id, {}))
        k = owner.get(key)
        if k is not None and event.item_id is not None and history.state().events:
            points[k].append(TestPoint(history.state(), event.item_id, event.type))
        history.add(event)
    anchor_version = store.anchor()
    anchor = Ranker(*_loaded(store, anchor_version)) if anchor_version else None
    out = []
    for k, cycle in enumerate(cycles[:-1]):
        if not cycle["promoted"]:
            continue
        parent = store.manifest(cycle["version"]).parent_version
        assert parent is not None  # noqa: S101 (the learner always records it)
        result = gate(Ranker(*_loaded(store, cycle["version"])), Ranker(*_loaded(store, parent)), anchor,
                      points[k + 1], GateConfig())  # fmt: skip
        verdict = "ok" if result.promote or not result.points else "REGRESSION"
        print(f"  check cycle {cycle['cycle']} {cycle['version']} vs parent on the next window: {verdict} "
              f"({result.reason})")  # fmt: skip
        if verdict != "ok":
            out.append(cycle["version"])
    return out


def _loaded(store: ModelStore, version: str) -> tuple[Any, Any]:
    loaded = store.load(version)
    return loaded.model, loaded.vocab


async def bench(args: argparse.Namespace) -> None:
    """Bring up, train the base, stream, time every promotion, check for regressions, report."""
    load = os.getloadavg()
    config = StackConfig()
    info = LocalStack(config).up()
    prefix = f"fresh{uuid.uuid4().hex[:8]}"
    specs = topic_specs(replace(config, topic_prefix=prefix))
    await ensure_topics(info.bootstrap, specs)
    work = Path(tempfile.mkdtemp(prefix="streamrec-freshness-"))
    store_dir = work / "store"
    with leased_redis_db(info.redis_url, ttl_seconds=3600) as redis_url:
        settings = Settings(kafka_bootstrap=info.bootstrap, redis_url=redis_url, topic_prefix=prefix,
                            events_partitions=config.events_partitions,
                            recommendations_partitions=config.recommendations_partitions)  # fmt: skip
        try:
            await _run(args, settings, store_dir, work, load[0])
        finally:
            await delete_topics(info.bootstrap, [s.name for s in specs])


async def _run(args: argparse.Namespace, settings: Settings, store_dir: Path, work: Path, load: float) -> None:
    users = 2 * int(args.lap_seconds * args.rate / 20 + 1)  # the second half (one lap): users / 2 x 20 events
    laps = int(args.timeout / args.lap_seconds) + 2
    start = datetime.now(UTC) - timedelta(hours=laps + 2)  # lap k is stamped k hours later: the last one ends now
    events, catalog, switch = drifting_stream(users, 20, n_clusters=args.clusters, per_cluster=25, seed=7, start=start)
    first = [e for e in events if e.ts < switch][-args.train_events :]
    second = [e for e in events if e.ts >= switch]
    t = time.perf_counter()
    known = {e.item_id for e in first}
    result = train(first, {k: v for k, v in catalog.items() if k in known},
                   TrainConfig(model=MODELS[args.model], epochs=args.epochs, max_valid_points=500))  # fmt: skip
    save_model(work / "base", result.model, result.vocab, metrics=result.metrics)
    store = ModelStore(store_dir)
    base = store.promote(work / "base")
    cfg = result.model.config
    shape = f"d={cfg.d_model}, {cfg.n_layers} blocks, max_len {cfg.max_len}, {len(result.vocab)} items"
    took = time.perf_counter() - t
    print(f"{len(second)} events a lap; load average {load:.1f}; base model {base.version} ({args.model}: "
          f"{shape}) trained in {took:.1f}s; work dir {work}")  # fmt: skip

    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap, acks=1, linger_ms=5)
    await producer.start()
    for item in catalog.values():
        await producer.send(settings.topics.items, item.model_dump_json().encode(), key=item.item_id.encode())
    for e in first[-args.warmup :]:  # the workers' first recommendations (the base model on every partition)
        await producer.send(settings.topics.events, e.model_dump_json().encode(), key=e.user_id.encode())
    await producer.flush()
    extra = {"STREAMREC_MODEL_DIR": str(store_dir), "STREAMREC_BACKEND": "torch", "STREAMREC_DEVICE": "cpu"}
    procs = [_spawn(["worker", "--loglevel", "warning"], worker_env(settings, free_port(), **extra),
                    work / f"worker{i}.log") for i in range(args.workers)]  # fmt: skip
    every = f"{max(5.0, 2 * args.window / args.rate):g}"  # the timer only matters for the stream's tail
    learner = ["learner", "--every-events", str(args.window), "--every-seconds", every, "--no-text-init",
               "--max-window-events", str(args.max_window)]  # fmt: skip
    procs.append(_spawn(learner, worker_env(settings, free_port(), **extra), work / "learner.log"))
    recs = Recs(settings)
    stream = Stream(producer, settings.topics.events, second, args.rate, timedelta(hours=1), laps)
    tasks = [asyncio.create_task(recs.run())]
    timings: list[Timing] = []
    ours: list[dict[str, Any]] = []
    try:
        await _wait(lambda: any(r.get("kind") == "ready" for r in _log(store_dir)), 300, "the learner")
        partitions = settings.recommendations_partitions
        await _wait(lambda: len({p for p, v in recs.first if v == base.version}) == partitions, 600, "the workers")
        tasks.append(asyncio.create_task(stream.run()))
        ours = await _follow_cycles(args, settings, store_dir, stream, recs, timings)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await producer.stop()
        for proc in procs:
            terminate(proc)
    _report(args, store, ours, stream, timings, load)


async def _follow_cycles(
    args: argparse.Namespace, settings: Settings, store_dir: Path, stream: Stream, recs: Recs, timings: list[Timing]
) -> list[dict[str, Any]]:
    """Wait for `--cycles` cycles on our events; time every promoted version as it reaches every partition."""
    deadline = time.monotonic() + args.timeout
    pending: dict[int, dict[str, Any]] = {}
    ours: dict[int, dict[str, Any]] = {}
    while time.monotonic() < deadline and (len(ours) < args.cycles or pending):
        await asyncio.sleep(0.5)
        for cycle in (r for r in _log(store_dir) if r.get("kind") == "cycle" and r["cycle"] not in ours):
            if not stream.window(cycle.get("offsets", {})):
                continue  # the first half's tail, not timed
            ours[cycle["cycle"]] = cycle
            print(f"cycle {cycle['cycle']}: {cycle['events']} events, {cycle['seconds']:.1f}s, "
                  f"{'promoted' if cycle['promoted'] else 'refused'}: {cycle['reason']}")  # fmt: skip
            if cycle["promoted"]:
                pending[cycle["cycle"]] = cycle
        for number, cycle in list(pending.items()):
            seen = [recs.first.get((p, cycle["version"])) for p in range(settings.recommendations_partitions)]
            if all(t is not None for t in seen):
                served = max(t for t in seen if t is not None)
                trained = cycle.get("trained_offsets") or cycle["offsets"]  # behind the stream: the newest part
                timings.append(_timing(cycle, stream.window(trained), served))
                print(f"  {cycle['version']} on every partition: {timings[-1]}")
                del pending[number]
            elif any(t.cycle > number for t in timings):
                del pending[number]  # a later version reached every partition first: this one was superseded
    return [ours[k] for k in sorted(ours)][: args.cycles]


def _report(
    args: argparse.Namespace,
    store: ModelStore,
    cycles: list[dict[str, Any]],
    stream: Stream,
    timings: list[Timing],
    load: float,
) -> None:
    print("out-of-sample check of every promoted version (its parent and the anchor on the next window):")
    bad = regressions(store, cycles, stream)
    promoted = [c for c in cycles if c["promoted"]]
    timed = {t.cycle for t in timings}
    superseded = len([c for c in promoted if c["cycle"] not in timed])
    nan = float("nan")

    def med(values: list[float]) -> float:
        return statistics.median(values) if values else nan

    worst = max((t.freshness_s for t in timings), default=nan)
    print(f"load average now {os.getloadavg()[0]:.1f} (at start {load:.1f})")
    print(
        f"RESULT freshness_s={worst:.1f} freshness_median_s={med([t.freshness_s for t in timings]):.1f} "
        f"span_s={med([t.span_s for t in timings]):.1f} wait_s={med([t.wait_s for t in timings]):.1f} "
        f"cycle_s={med([t.cycle_s for t in timings]):.1f} swap_s={med([t.swap_s for t in timings]):.1f} "
        f"regressions_promoted={len(bad)} cycles={len(cycles)} promoted={len(promoted)} "
        f"refused={len(cycles) - len(promoted)} timed={len(timings)} superseded={superseded} model={args.model} "
        f"rate_eps={args.rate:g} window_events={args.window} max_window_events={args.max_window} "
        f"skipped_to_newest={sum(c.get('skipped_to_newest', 0) for c in cycles)} workers={args.workers}"
    )


def main() -> None:
    """CLI entry."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=sorted(MODELS), default="default")
    parser.add_argument("--rate", type=float, default=1000.0, help="events per second")
    parser.add_argument("--cycles", type=int, default=10, help="learner cycles on the streamed events")
    parser.add_argument("--window", type=int, default=5000, help="events per learner window (= --every-events)")
    parser.add_argument("--max-window", type=int, default=5000, help="learner --max-window-events (0: no cap)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--train-events", type=int, default=40_000, help="newest first-half events the base sees")
    parser.add_argument("--warmup", type=int, default=2000, help="first-half events sent before the stream")
    parser.add_argument("--lap-seconds", type=float, default=30.0, help="length of one lap of the stream at --rate")
    parser.add_argument("--clusters", type=int, default=20, help="item rings of 25 items before the shift")
    parser.add_argument("--epochs", type=int, default=3, help="base model training epochs")
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds of streaming at most")
    args = parser.parse_args()
    torch.set_num_threads(1)
    asyncio.run(bench(args))


if __name__ == "__main__":
    main()
