"""Freshness: events produced -> first recommendation carrying the model version trained on them, in every worker.

On the running local stack (`streamrec stack up`), under a fresh topic prefix: a base model trained on the first
half of `model.drift.drifting_stream(seed=7)` is promoted into a temporary store; `--workers` `streamrec worker`
processes and one `streamrec learner` (a cycle every `--window` events) start, and the second half streams in at
`--rate` events/s (the send time and offset of every event are recorded). Each learner cycle logs the offsets
of its window; when it promotes a version, freshness is measured from the moment the window's *oldest* event
was produced (`freshness_s`; from its newest: `freshness_newest_s`) to the first recommendation stamped with the
new version on *every* recommendations partition. Recommendations are keyed by user like the events and both
topics have the same partition count, so partition p's recommendations come from the worker that owns events
partition p: every partition means every worker. A window the gate refuses produces no version (`rejected`); a
version replaced by the next one before it reached every partition is not timed (`superseded`).

    nice -n 10 .venv/bin/python bench/freshness.py --workers 2 --rounds 3

Needs the stack on STREAMREC_KAFKA_BOOTSTRAP / STREAMREC_REDIS_URL (defaults: the local stack; Redis DB
`--redis-db`, default 5). Last line: `RESULT freshness_s=<worst round> ...`.
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
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import torch
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from contracts import Event, Settings
from model.artifacts import save_model
from model.drift import drifting_stream
from model.store import ModelStore
from model.train import TrainConfig, train
from model.transformer import ModelConfig
from streamrec.child_processes import free_port, terminate
from streamrec.stack import topic_specs
from streamrec.stack_config import StackConfig
from streamrec.stack_topics import ensure_topics
from streams.learner.service import LOG_FILE


def _log(store: Path) -> list[dict[str, Any]]:
    path = store / LOG_FILE
    return [json.loads(line) for line in path.read_text().splitlines() if line] if path.is_file() else []


class Recs:
    """First time (monotonic) each (partition, model_version) was seen on the recommendations topic."""

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
                    now = time.monotonic()
                    for m in messages:
                        self.first.setdefault((tp.partition, json.loads(m.value)["model_version"]), now)
        finally:
            await consumer.stop()


class Stream:
    """Sends events at a steady rate; remembers when each (partition, offset) was produced."""

    def __init__(self, producer: AIOKafkaProducer, settings: Settings, events: list[Event], rate: float) -> None:
        self.producer, self.settings, self.events, self.rate = producer, settings, events, rate
        self.sent: dict[tuple[int, int], float] = {}

    async def run(self) -> None:
        pending = []
        for lap in range(1000):
            for n, e in enumerate(self.events):
                event = e if lap == 0 else e.model_copy(update={"event_id": f"{e.event_id}-r{lap}"})
                t = time.monotonic()
                future = await self.producer.send(
                    self.settings.topics.events, event.model_dump_json().encode(), key=event.user_id.encode()
                )
                pending.append((future, t))
                if n % 20 == 0:
                    for fut, sent_at in pending:
                        meta = await fut
                        self.sent[(meta.partition, meta.offset)] = sent_at
                    pending = []
                await asyncio.sleep(max(0.0, t + 1.0 / self.rate - time.monotonic()))

    def window_times(self, offsets: dict[str, list[int]]) -> tuple[float, float] | None:
        """(oldest, newest) send time of the events in a cycle's offset window (None if any were not ours)."""
        times = [
            self.sent[(int(p), o)] for p, (start, end) in offsets.items() for o in range(start, end)
            if (int(p), o) in self.sent
        ]  # fmt: skip
        return (min(times), max(times)) if times else None


def _spawn(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    cmd = [sys.executable, "-m", "streamrec", *args]
    # cwd: Faust keeps `<app>-data` in the working directory; keep it in the bench's own work dir.
    return subprocess.Popen(cmd, env=env, cwd=log.parent, stdout=log.open("wb"), stderr=subprocess.STDOUT)  # noqa: S603


async def _wait(check: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            msg = f"timed out after {timeout:.0f}s waiting for {what}"
            raise TimeoutError(msg)
        await asyncio.sleep(0.2)


async def bench(args: argparse.Namespace) -> None:
    prefix = f"fresh{uuid.uuid4().hex[:6]}"
    base_settings = Settings()
    redis_url = base_settings.redis_url.get_secret_value().rsplit("/", 1)[0] + f"/{args.redis_db}"
    settings = base_settings.model_copy(update={"topic_prefix": prefix, "redis_url": redis_url})
    stack = replace(StackConfig(), topic_prefix=prefix, events_partitions=settings.events_partitions)
    await ensure_topics(settings.kafka_bootstrap, topic_specs(stack))
    work = Path(tempfile.mkdtemp(prefix="streamrec-freshness-"))
    store_dir = work / "store"
    events, catalog, switch = drifting_stream(seed=7, start=datetime.now(UTC) - timedelta(hours=3))
    first = [e for e in events if e.ts < switch]
    second = [e for e in events if e.ts >= switch]
    t = time.perf_counter()
    known = {e.item_id for e in first}
    small = ModelConfig(max_len=20, d_model=32, n_layers=1, n_heads=2)
    config = TrainConfig(model=small, epochs=5, max_valid_points=300)
    result = train(first, {k: v for k, v in catalog.items() if k in known}, config)
    save_model(work / "base", result.model, result.vocab, metrics=result.metrics)
    base = ModelStore(store_dir).promote(work / "base")
    print(f"base model {base.version} trained in {time.perf_counter() - t:.1f}s; work dir {work}")

    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap, acks="all", linger_ms=5)
    await producer.start()
    for item in catalog.values():
        await producer.send(settings.topics.items, item.model_dump_json().encode(), key=item.item_id.encode())
    for e in first:
        await producer.send(settings.topics.events, e.model_dump_json().encode(), key=e.user_id.encode())
    await producer.flush()

    env = dict(os.environ, STREAMREC_TOPIC_PREFIX=prefix, STREAMREC_REDIS_URL=redis_url,
               STREAMREC_MODEL_DIR=str(store_dir), STREAMREC_BACKEND="torch", STREAMREC_DEVICE="cpu")  # fmt: skip
    procs = [
        _spawn(["worker", "--loglevel", "warning", "--web-port", str(free_port())], env, work / f"worker{i}.log")
        for i in range(args.workers)
    ]
    learner_args = ["learner", "--every-events", str(args.window), "--every-seconds", "3600", "--no-text-init"]
    procs.append(_spawn(learner_args, env, work / "learner.log"))
    recs = Recs(settings)
    reader = asyncio.create_task(recs.run())
    stream = Stream(producer, settings, second, args.rate)
    streamer: asyncio.Task[None] | None = None
    results: list[tuple[float, float, dict[str, Any]]] = []
    rejected = 0
    try:
        await _wait(lambda: any(r.get("kind") == "ready" for r in _log(store_dir)), 180, "the learner")
        await _wait(lambda: len({p for p, v in recs.first if v == base.version}) >= args.workers, 180, "workers")
        streamer = asyncio.create_task(stream.run())
        done: set[int] = set()
        promoted: set[int] = set()
        deadline = time.monotonic() + args.timeout
        while len(results) < args.rounds and time.monotonic() < deadline:
            await asyncio.sleep(0.5)
            for cycle in [r for r in _log(store_dir) if r.get("kind") == "cycle"]:
                if cycle["cycle"] in done:
                    continue
                window = stream.window_times(cycle.get("offsets", {}))
                if window is None:
                    done.add(cycle["cycle"])
                    continue
                if not cycle["promoted"]:
                    done.add(cycle["cycle"])
                    rejected += 1
                    print(f"cycle {cycle['cycle']}: not promoted ({cycle['reason']})")
                    continue
                promoted.add(cycle["cycle"])
                seen = [recs.first.get((p, cycle["version"])) for p in range(settings.recommendations_partitions)]
                if any(t is None for t in seen):
                    continue  # not yet in every partition
                done.add(cycle["cycle"])
                served = max(t for t in seen if t is not None)
                results.append((served - window[0], served - window[1], cycle))
                print(f"cycle {cycle['cycle']}: {cycle['version']} ({cycle['events']} events, learner "
                      f"{cycle['seconds']:.1f}s) in every partition {served - window[0]:.1f}s after the window's "
                      f"oldest event, {served - window[1]:.1f}s after its newest")  # fmt: skip
    finally:
        for task in (streamer, reader):
            if task is not None:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
        await producer.stop()
        for proc in procs:
            terminate(proc)
    measured = {r[2]["cycle"] for r in results}
    # A version replaced by the next one before it reached every partition is not timed; it is counted.
    superseded = len([c for c in promoted if c not in measured and measured and c < max(measured)])
    oldest = [r[0] for r in results]
    newest = [r[1] for r in results]
    cycle_s = [r[2]["seconds"] for r in results]
    nan = float("nan")
    print(
        f"RESULT freshness_s={max(oldest) if oldest else nan:.1f} "
        f"freshness_median_s={statistics.median(oldest) if oldest else nan:.1f} "
        f"freshness_newest_s={max(newest) if newest else nan:.1f} rounds={len(results)} rejected={rejected} "
        f"superseded={superseded} "
        f"workers={args.workers} rate_eps={args.rate:g} window_events={args.window} "
        f"learner_cycle_s={statistics.median(cycle_s) if cycle_s else nan:.1f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--window", type=int, default=300, help="events per learner window (= --every-events)")
    parser.add_argument("--rate", type=float, default=40.0, help="events per second")
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds of streaming at most")
    parser.add_argument("--redis-db", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(1)
    asyncio.run(bench(args))


if __name__ == "__main__":
    main()
