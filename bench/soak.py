"""Soak: a worker (and, with `--model-dir`, the continual learner) under a steady offered rate for `--minutes`.

Brings up a stack of its own (`LocalStack` on free ports and a temporary state dir, stopped at the end), so
Redis's memory is this run's alone, with a generated catalog over a fixed user/item population, and offers
`--rate` events/s. Every 10 s it samples each process's resident memory (`/proc/<pid>/status` VmRSS) and Redis's
`used_memory`; each event's latency is send → the first recommendation reflecting it (as in `bench/pipeline.py`).
Without `--model-dir` the worker serves the baseline blend and no learner runs (its figure prints as nan); with a
model store (e.g. one `make demo` or `streamrec train` wrote) the worker serves its current model and `streamrec
learner` fine-tunes it from the same stream. At the end the per-user applied counters in Redis are compared with
what was produced: `lost` = events never applied, `duplicated` = events applied more than once, counted once the
worker has caught up (at most `--drain-seconds`; `drain_s` is how long that took, so a worker that fell behind
shows as late, not as lossy). `--warm-events N` first applies N events per user, unmeasured, so the run starts
with full histories (50 events per user are kept): then memory growth is the system's, not histories filling.

Growth figures compare the mean of the first and the last 5 minutes (after a 2-minute warm-up; shorter runs use
the first and last fifth), so one garbage-collection peak does not decide them. Before the RESULT line a table
gives, per minute of the run, the p50/p99 latency of the events sent in that minute, the mean RSS of each process,
Redis's memory, the 1-minute load average (the machine may be shared), the cores each process used, the worker's
model swaps and its milliseconds in garbage-collector passes; `--log-dir` keeps the processes' logs.

    nice -n 10 .venv/bin/python bench/soak.py --minutes 30 --rate 200 [--users 1000 --warm-events 50 --model-dir M]

Last line: `RESULT minutes=... rate=... rss_growth_pct=... learner_rss_growth_pct=... redis_memory_growth_pct=...
p99_ms_first_5min=... p99_ms_last_5min=... lost=... duplicated=... drain_s=...`.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import redis.asyncio as aioredis

sys.path.insert(0, str(Path(__file__).resolve().parent))
from pipeline import (  # noqa: E402
    Proc,
    Resolver,
    Stream,
    _rec_trigger,
    catalog,
    cpu_seconds,
    quantile,
    send,
    start_worker,
    watch,
)

from contracts import Event, Settings  # noqa: E402
from feature_store import FeatureStore  # noqa: E402
from streamrec.child_processes import free_port, scrape_metrics, worker_env  # noqa: E402
from streamrec.stack import LocalStack  # noqa: E402
from streamrec.stack_config import StackConfig  # noqa: E402

_SAMPLE_S = 10.0


def rss_bytes(pid: int) -> int:
    """Resident set size of a process (Linux)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


@dataclass
class Samples:
    """(seconds since start, value) series."""

    worker_rss: list[tuple[float, float]] = field(default_factory=list)
    learner_rss: list[tuple[float, float]] = field(default_factory=list)
    redis_memory: list[tuple[float, float]] = field(default_factory=list)
    load: list[tuple[float, float]] = field(default_factory=list)  # 1-minute load average
    worker_cpu: list[tuple[float, float]] = field(default_factory=list)  # CPU seconds used so far
    learner_cpu: list[tuple[float, float]] = field(default_factory=list)
    versions: list[tuple[float, str]] = field(default_factory=list)  # the worker's serving model version
    worker_gc: list[tuple[float, float]] = field(default_factory=list)  # seconds in collector passes so far


def serving_version(metrics: dict[str, float]) -> str:
    """The version label of `streamrec_model_info` ("" while the worker does not answer)."""
    for name in metrics:
        if name.startswith("streamrec_model_info{"):
            return name.split('version="', 1)[1].split('"', 1)[0]
    return ""


def cpu_share(series: list[tuple[float, float]], window: tuple[float, float]) -> float:
    """Cores used on average within `window`, from cumulative CPU seconds."""
    inside = [(t, v) for t, v in series if window[0] <= t <= window[1]]
    if len(inside) < 2 or inside[-1][0] == inside[0][0]:
        return float("nan")
    return (inside[-1][1] - inside[0][1]) / (inside[-1][0] - inside[0][0])


def swaps_in(versions: list[tuple[float, str]], window: tuple[float, float]) -> int:
    """Model version changes the worker made within `window`: sampled versions differing from the one before."""
    known = [(t, v) for t, v in versions if v]
    return sum(v != prev for (_, prev), (t, v) in itertools.pairwise(known) if window[0] < t <= window[1])


def windows(minutes: float) -> tuple[tuple[float, float], tuple[float, float]]:
    """(start, end) seconds of the first and the last comparison window."""
    total = minutes * 60
    if minutes >= 12:
        return (120.0, 420.0), (total - 300.0, total)
    fifth = total / 5
    return (fifth, 2 * fifth), (total - fifth, total)


def mean_in(series: list[tuple[float, float]], window: tuple[float, float]) -> float:
    values = [v for t, v in series if window[0] <= t <= window[1]]
    return statistics.fmean(values) if values else float("nan")


def growth_pct(series: list[tuple[float, float]], first: tuple[float, float], last: tuple[float, float]) -> float:
    a, b = mean_in(series, first), mean_in(series, last)
    return 100.0 * (b - a) / a if a else float("nan")


async def sample(
    samples: Samples, procs: dict[str, Proc], client: aioredis.Redis, start: float, stop: asyncio.Event
) -> None:
    """Every `_SAMPLE_S`: RSS of each process and Redis used_memory; a process that exited ends the run."""
    pids = {name: p.proc.pid for name, p in procs.items()}
    while not stop.is_set():
        for name, p in procs.items():
            if p.proc.poll() is not None:
                sys.exit(f"soak: the {name} exited ({p.proc.returncode}) at {time.monotonic() - start:.0f} s")
        t = time.monotonic() - start
        samples.worker_rss.append((t, rss_bytes(pids["worker"])))
        samples.worker_cpu.append((t, cpu_seconds(pids["worker"])))
        metrics = await scrape_metrics(procs["worker"].web_port or 0)
        samples.versions.append((t, serving_version(metrics)))
        samples.worker_gc.append(
            (t, sum(v for k, v in metrics.items() if k.startswith("streamrec_gc_pause_seconds_sum")))
        )
        if "learner" in pids:
            samples.learner_rss.append((t, rss_bytes(pids["learner"])))
            samples.learner_cpu.append((t, cpu_seconds(pids["learner"])))
        samples.redis_memory.append((t, float((await client.info("memory"))["used_memory"])))
        samples.load.append((t, os.getloadavg()[0]))
        try:
            await asyncio.wait_for(stop.wait(), _SAMPLE_S)
        except TimeoutError:
            pass


async def audit(redis_url: str, produced: dict[str, int]) -> tuple[int, int]:
    """(lost, duplicated) from the store's exact per-user applied counters."""
    client = aioredis.Redis.from_url(redis_url)
    try:
        store = FeatureStore(client)
        lost = duplicated = 0
        for user, count in produced.items():
            applied = (await store.user_stats(user)).get("applied", 0)
            lost += max(0, count - applied)
            duplicated += max(0, applied - count)
        return lost, duplicated
    finally:
        await client.aclose()


def _counts(events: list[Event]) -> dict[str, int]:
    produced: dict[str, int] = {}
    for e in events:
        produced[e.user_id] = produced.get(e.user_id, 0) + 1
    return produced


async def caught_up(redis_url: str, produced: dict[str, int], timeout: float) -> tuple[int, int]:
    """`audit` once nothing is missing any more, or after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    lost, duplicated = await audit(redis_url, produced)
    while lost and time.monotonic() < deadline:
        await asyncio.sleep(5.0)
        lost, duplicated = await audit(redis_url, produced)
    return lost, duplicated


async def bench(args: argparse.Namespace) -> None:
    """Bring up, run the worker under load for `--minutes`, report."""
    with tempfile.TemporaryDirectory(prefix="streamrec-soak-stack-") as state:
        ports = {"kafka_port": free_port(), "controller_port": free_port(), "redis_port": free_port()}
        stack = LocalStack(replace(StackConfig(), state_dir=Path(state), **ports))
        info = stack.up()
        try:
            await _soak(args, info.bootstrap, info.redis_url)
        finally:
            stack.down()


async def _soak(args: argparse.Namespace, bootstrap: str, redis_url: str) -> None:
    settings = Settings(kafka_bootstrap=bootstrap, redis_url=redis_url)
    client = aioredis.Redis.from_url(redis_url)
    await FeatureStore(client).upsert_items(catalog(args.items))
    stream = Stream(args.users, args.items, args.seed)
    warm = stream.take(args.users * args.warm_events)  # applied before the clock starts: histories are full
    events = stream.take(int(args.rate * args.minutes * 60))
    samples = Samples()
    with tempfile.TemporaryDirectory(prefix="streamrec-soak-") as scratch:
        tmp = args.log_dir or scratch  # the worker's and the learner's logs
        Path(tmp).mkdir(parents=True, exist_ok=True)
        model = {"STREAMREC_MODEL_DIR": str(args.model_dir)} if args.model_dir else {}
        procs = [start_worker(settings, Path(tmp), **model)]
        if args.model_dir:
            procs.append(start_learner(settings, Path(tmp), model))
        named = dict(zip(("worker", "learner"), procs, strict=False))
        try:
            await asyncio.sleep(args.startup_seconds)  # the worker joins its group before the clock starts
            if warm:
                began = time.monotonic()
                await send(settings, warm, None, {})
                left_over, _ = await caught_up(redis_url, _counts(warm), args.drain_seconds)
                print(f"warm-up: {len(warm)} events, {left_over} not applied after {time.monotonic() - began:.0f} s")
            sent: dict[str, float] = {}
            resolver = Resolver(events, sent)
            stop, start = asyncio.Event(), time.monotonic()
            sampler = asyncio.create_task(sample(samples, named, client, start, stop))
            timeout = args.minutes * 60 + 120
            watcher = asyncio.create_task(
                watch(settings, settings.topics.recommendations, _rec_trigger, resolver, timeout)
            )
            await asyncio.sleep(1.0)
            timed = TimedResolver(resolver, sent, start)
            await send(settings, events, args.rate, sent)
            await watcher
            stop.set()
            await sampler
            # A worker that fell behind is still applying: `lost` is what is missing once it has caught up (or
            # after --drain-seconds), so a backlog is not counted as loss; `drain_s` says how far behind it was.
            drained = time.monotonic()
            lost, duplicated = await caught_up(redis_url, _counts([*warm, *events]), args.drain_seconds)
            drain_s = time.monotonic() - drained
        finally:
            for p in procs:
                p.stop()
    await client.aclose()
    report(args, samples, timed, lost, duplicated, resolver.left, drain_s)


@dataclass
class TimedResolver:
    """Latencies with the send time of their event (seconds since start), for per-window quantiles."""

    resolver: Resolver
    sent: dict[str, float]
    start: float

    def by_window(self, window: tuple[float, float]) -> list[float]:
        """Latencies of the events sent within `window` (seconds since start), sorted."""
        pairs = zip(self.resolver.resolved, self.resolver.latency_s, strict=True)
        return sorted(lat for event_id, lat in pairs if window[0] <= self.sent[event_id] - self.start <= window[1])


def start_learner(settings: Settings, workdir: Path, model: dict[str, str]) -> Proc:
    """`streamrec learner` on the bench topics, DB and model store."""
    env = worker_env(settings, free_port(), **model)  # its own web port (0 is no valid STREAMREC_WEB_PORT)
    cmd = [sys.executable, "-m", "streamrec", "learner", "--loglevel", "warning"]
    with (workdir / "learner.log").open("wb") as log:
        proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=workdir)
    return Proc(proc)


def report(
    args: argparse.Namespace, s: Samples, timed: TimedResolver, lost: int, duplicated: int, left: int, drain_s: float
) -> None:
    """Print the series summary and the RESULT line."""
    first, last = windows(args.minutes)
    p99 = [1000 * quantile(timed.by_window(w), 0.99) for w in (first, last)]
    rss, learner = growth_pct(s.worker_rss, first, last), growth_pct(s.learner_rss, first, last)
    redis_growth = growth_pct(s.redis_memory, first, last)
    print(f"windows: first {first[0]:.0f}-{first[1]:.0f} s, last {last[0]:.0f}-{last[1]:.0f} s")
    for name, series in (("worker RSS", s.worker_rss), ("learner RSS", s.learner_rss), ("redis", s.redis_memory)):
        print(f"{name} MiB: first {mean_in(series, first) / 2**20:.1f}, last {mean_in(series, last) / 2**20:.1f}")
    print(f"events without a recommendation 120 s after the run: {left}")
    print_minutes(args.minutes, s, timed)
    print(
        f"RESULT minutes={args.minutes:g} rate={args.rate:g} rss_growth_pct={rss:.1f} "
        f"learner_rss_growth_pct={learner:.1f} redis_memory_growth_pct={redis_growth:.1f} "
        f"p99_ms_first_5min={p99[0]:.0f} p99_ms_last_5min={p99[1]:.0f} lost={lost} duplicated={duplicated} "
        f"drain_s={drain_s:.0f}"
    )


def print_minutes(minutes: float, s: Samples, timed: TimedResolver) -> None:
    """Per minute: p50/p99 latency of the events sent, mean RSS, Redis memory, load, cores used, model swaps and
    the worker's milliseconds in garbage-collector passes."""
    print("minute  events  p50_ms  p99_ms  worker_MiB  learner_MiB  redis_MiB  load1  w_cpu  l_cpu  swaps  gc_ms")
    for m in range(int(math.ceil(minutes))):
        w = (60.0 * m, 60.0 * (m + 1))
        lat = timed.by_window(w)
        p50, p99 = (1000 * quantile(lat, q) if lat else math.nan for q in (0.5, 0.99))
        mib = [mean_in(series, w) / 2**20 for series in (s.worker_rss, s.learner_rss, s.redis_memory)]
        load = mean_in(s.load, w)
        cells = f"{m:6d}  {len(lat):6d}  {p50:6.0f}  {p99:6.0f}"
        cpu = f"{cpu_share(s.worker_cpu, w):5.2f}  {cpu_share(s.learner_cpu, w):5.2f}  {swaps_in(s.versions, w):5d}"
        cpu += f"  {1000 * 60 * cpu_share(s.worker_gc, w):5.0f}"  # ms of collector passes in the minute
        print(f"{cells}  {mib[0]:10.1f}  {mib[1]:11.1f}  {mib[2]:9.1f}  {load:5.2f}  {cpu}")


def main() -> None:
    """Parse arguments and run."""
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    p.add_argument("--minutes", type=float, default=30.0)
    p.add_argument("--rate", type=float, default=200.0, help="offered events/s (one the worker sustains)")
    p.add_argument("--users", type=int, default=5000)
    p.add_argument("--items", type=int, default=20000)
    p.add_argument("--seed", type=int, default=3)
    p.add_argument("--startup-seconds", type=float, default=20.0)
    p.add_argument("--warm-events", type=int, default=0, help="events per user applied before the clock starts")
    p.add_argument("--drain-seconds", type=float, default=900.0, help="longest wait for a behind worker to catch up")
    p.add_argument("--model-dir", type=Path, default=None, help="model store to serve and fine-tune (adds the learner)")
    p.add_argument("--log-dir", type=Path, default=None, help="keep worker.log and learner.log here (default: temp)")
    asyncio.run(bench(p.parse_args()))


if __name__ == "__main__":
    main()
