"""Pipeline benchmark: `streamrec worker` vs a raw aiokafka consume→produce passthrough, same broker, one run.

Brings up what it needs with `streamrec.stack.LocalStack` (the code behind `streamrec stack up`; a running stack
is reused and left running), fresh topics under a random prefix, a leased Redis DB (8..15, as the tests lease
them) and a generated catalog. Then, for the worker and for the passthrough in turn (each a subprocess):

1. throughput: a backlog of `--backlog` events is produced first (a saturating producer: the processor never
   waits for input); events/s = slope of events processed between 10 % and 90 % of the backlog;
2. latency at a fixed offered rate: `--rate` events/s for `--seconds`; an event's latency is the time from its
   send to the arrival (at this script's consumer) of the first output that reflects it: for the worker, a
   recommendation for its user triggered by it or a later event of theirs; for the passthrough, its copy.

Each processor's events per CPU-second of its own process is printed too: on a shared box the wall-clock rate
mostly measures the neighbours. The worker's per-stage histograms (`/metrics`, `streams/metrics.py`) give the
breakdown per micro-batch, wall and process CPU, and the worker's CPU outside the stages (Kafka, Faust, JSON).
Prints a CPU calibration (a fixed pure-Python loop) and the load average, because the 2-core machines are shared.

`--scorer transformer` (the default) serves the fine-tuned transformer, as a production worker does: the bench
first trains one on `--train-events` events of the same generator (another seed; same users and catalog, so
every catalog item has a row), one epoch, and makes it the `CURRENT` of a temporary model store the worker
loads (`STREAMREC_MODEL_DIR`). `--scorer two-stage` serves what plain `streamrec train` builds (the same
transformer re-ranked with the counting parts by the learned ranker). `--scorer blend` serves the baseline
blend (the fallback of an empty store).
`--workers N` runs N worker processes in one group (the worker uses one core: one event loop, one torch
thread); rates and CPU are then summed over them. Explanations are on in both. Per event: the worker's CPU
(`worker_us_per_event`, backlog phase, its own processes) and Redis's (`redis_us_per_event`, the server's
`INFO cpu` over the same phase; the server is shared with anything else using the stack, so an upper bound).

    nice -n 10 .venv/bin/python bench/pipeline.py --backlog 10000 --rate 1000 --seconds 15 [--scorer blend]

Last line: `RESULT scorer=... workers=... events_per_s=... p50_ms=... p99_ms=... worker_us_per_event=...
redis_us_per_event=... passthrough_events_per_s=... ratio=...`.
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import itertools
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import redis.asyncio as aioredis
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from contracts import Event, EventType, Item, Settings
from feature_store import FeatureStore
from streamrec.child_processes import (
    AllDatabasesLeased,
    free_port,
    group_assignment,
    leased_redis_db,
    scrape_metrics,
    terminate,
    worker_env,
)
from streamrec.stack import LocalStack, topic_specs
from streamrec.stack_config import StackConfig
from streamrec.stack_topics import TopicSpec, delete_topics, ensure_topics

_KINDS = [EventType.VIEW] * 6 + [EventType.CLICK, EventType.ADD_TO_CART, EventType.REMOVE_FROM_CART, EventType.PURCHASE]
_STAGES = ("decode", "features_write", "features_read", "score", "explain")
_WORKER_CPU = "bench:worker_cpu_seconds"  # the worker processes' CPU over the latency phase (not a metric)


# --------------------------------------------------------------------------- data


class Stream:
    """Seeded events: uniform users, Zipf-like items (s = 0.9) over the catalog, event time = now - 1 h + i ms."""

    def __init__(self, users: int, items: int, seed: int) -> None:
        self._rng = random.Random(seed)
        self._users, self._items = users, items
        self._cum = list(itertools.accumulate(1.0 / (r + 1) ** 0.9 for r in range(items)))
        self._n = 0
        self._t0 = datetime.now(UTC) - timedelta(hours=1)

    def take(self, n: int) -> list[Event]:
        """The next `n` events."""
        rng, out = self._rng, []
        for _ in range(n):
            i, self._n = self._n, self._n + 1
            item = bisect.bisect_left(self._cum, rng.random() * self._cum[-1])
            out.append(
                Event(
                    event_id=f"b{i}",
                    user_id=f"u{rng.randrange(self._users)}",
                    item_id=f"i{item}",
                    type=rng.choice(_KINDS),
                    ts=self._t0 + timedelta(milliseconds=i),
                )
            )
        return out


def catalog(items: int) -> list[Item]:
    """`items` titled items in 50 categories."""
    t = datetime.now(UTC) - timedelta(days=1)
    return [Item(item_id=f"i{k}", title=f"Item {k}", category=f"c{k % 50}", ts=t) for k in range(items)]


# --------------------------------------------------------------------------- environment


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds a process has used so far (Linux `/proc/<pid>/stat`)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def calibration_seconds() -> float:
    """CPU seconds of a fixed pure-Python loop (10 M additions): ~0.4 s on an idle modern core."""
    start, total = time.process_time(), 0
    for i in range(10_000_000):
        total += i
    return time.process_time() - start


# --------------------------------------------------------------------------- measuring


async def send(settings: Settings, events: Sequence[Event], rate: float | None, sent: dict[str, float]) -> None:
    """Produce `events` (key = user), at `rate` events/s or as fast as possible; records each send time."""
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap, acks="all", linger_ms=2)
    await producer.start()
    payloads = [(e.event_id, e.model_dump_json().encode(), e.user_id.encode()) for e in events]
    start = time.monotonic()
    try:
        for n, (event_id, value, key) in enumerate(payloads):
            if rate is not None:
                ahead = start + n / rate - time.monotonic()
                if ahead > 0:
                    await asyncio.sleep(ahead)
            sent[event_id] = time.monotonic()
            await producer.send(settings.topics.events, value, key=key)
        await producer.flush()
    finally:
        await producer.stop()


class Resolver:
    """Event → first output reflecting it: resolves each user's pending events up to the output's trigger."""

    def __init__(self, events: Sequence[Event], sent: dict[str, float]) -> None:
        self._pending: dict[str, list[str]] = {}
        self._seq = {e.event_id: n for n, e in enumerate(events)}
        for e in events:
            self._pending.setdefault(e.user_id, []).append(e.event_id)
        self._sent = sent
        self.latency_s: list[float] = []
        self.resolved: list[str] = []  # the event of each latency, same order
        self.left = len(events)

    def output(self, user: str, trigger: str, arrived: float) -> None:
        """An output for `user` whose newest reflected event is `trigger` arrived at `arrived`."""
        queue, upto = self._pending.get(user), self._seq.get(trigger)
        if not queue or upto is None:
            return  # an output of an earlier phase, or a replay
        done = 0
        while done < len(queue) and self._seq[queue[done]] <= upto:
            self.latency_s.append(arrived - self._sent[queue[done]])
            self.resolved.append(queue[done])
            done += 1
        del queue[:done]
        self.left -= done


async def watch(
    settings: Settings, topic: str, parse: Callable[[bytes], tuple[str, str]], resolver: Resolver, timeout_s: float
) -> None:
    """Consume `topic` from its end until every event is resolved or `timeout_s` passes."""
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=settings.kafka_bootstrap, auto_offset_reset="latest")
    await consumer.start()
    await consumer.seek_to_end()
    deadline = time.monotonic() + timeout_s
    try:
        while resolver.left and time.monotonic() < deadline:
            for messages in (await consumer.getmany(timeout_ms=200)).values():
                now = time.monotonic()
                for m in messages:
                    resolver.output(*parse(m.value), now)
    finally:
        await consumer.stop()


async def measure_latency(
    settings: Settings, topic: str, parse: Callable[[bytes], tuple[str, str]], events: Sequence[Event], rate: float
) -> list[float]:
    """Offer `events` at `rate`; latency (s) of every event that got an output within the phase + 60 s."""
    sent: dict[str, float] = {}
    resolver = Resolver(events, sent)
    watcher = asyncio.create_task(watch(settings, topic, parse, resolver, len(events) / rate + 60))
    await asyncio.sleep(1.0)  # the watcher is at the end of the topic before the first send
    await send(settings, events, rate, sent)
    await watcher
    if resolver.left:
        print(f"  {resolver.left} of {len(events)} events had no output within 60 s after the phase")
    return sorted(resolver.latency_s)


def slope(samples: Sequence[tuple[float, float]], total: float) -> float:
    """Events/s between 10 % and 90 % of `total` from (time, cumulative count) samples."""
    lo = next(((t, c) for t, c in samples if c >= 0.1 * total), None)
    hi = next(((t, c) for t, c in samples if c >= 0.9 * total), None)
    if lo is None or hi is None or hi[0] <= lo[0]:
        return float("nan")
    return (hi[1] - lo[1]) / (hi[0] - lo[0])


def quantile(sorted_values: Sequence[float], q: float) -> float:
    """Nearest-rank quantile of sorted values (nan when empty)."""
    if not sorted_values:
        return float("nan")
    return sorted_values[min(len(sorted_values) - 1, int(q * len(sorted_values)))]


# --------------------------------------------------------------------------- the processors


@dataclass
class Proc:
    """A processor subprocess and how to read its progress."""

    proc: subprocess.Popen[bytes]
    web_port: int | None = None

    def stop(self) -> None:
        """SIGTERM, SIGKILL after 20 s."""
        terminate(self.proc)


def train_bench_model(args: argparse.Namespace, workdir: Path) -> Path:
    """A model trained on the generator's events (seed + 1), made `CURRENT` of a new model store; the store.

    `--scorer transformer`: the transformer alone; `--scorer two-stage`: what plain `streamrec train` builds
    (transformer candidates + counting parts re-ranked by the learned ranker), without the refit, to save time.
    """
    from model.store import ModelStore  # noqa: PLC0415 (torch: only for a trained scorer)
    from model.train import Progress, TrainConfig, train  # noqa: PLC0415

    events = Stream(args.users, args.items, args.seed + 1).take(args.train_events)
    items = {item.item_id: item for item in catalog(args.items)}
    config = TrainConfig(epochs=1, loss="sampled", n_negatives=512, batch_size=256, max_valid_points=500)
    start = time.perf_counter()

    def progress(p: Progress) -> None:
        if p.ndcg is not None:
            print(f"bench model: epoch {p.epoch} loss {p.loss:.3f} validation NDCG@10 {p.ndcg:.4f}")

    store = ModelStore(workdir / "models")
    if args.scorer == "two-stage":
        from model.train_two_stage import TwoStageConfig, train_two_stage  # noqa: PLC0415
        from model.two_stage_store import save_two_stage  # noqa: PLC0415

        two = train_two_stage(events, items, TwoStageConfig(train=config, ranker_points=3000), progress, print)
        save_two_stage(workdir / "two-stage", two)
        manifest = store.add(workdir / "two-stage")
    else:
        result = train(events, items, config, on_progress=progress)
        manifest = store.save(result.model, result.vocab, metrics=result.metrics, training=result.training)
    store.set_current(manifest.version)
    print(f"bench model {manifest.version}: {len(events)} events, {time.perf_counter() - start:.0f} s to train")
    return store.root


async def redis_cpu_seconds(url: str) -> float:
    """The Redis server's own CPU time so far (user + sys)."""
    client = aioredis.Redis.from_url(url)
    try:
        info = await client.info("cpu")
    finally:
        await client.aclose()
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


def start_worker(settings: Settings, workdir: Path, name: str = "worker", **env_extra: str) -> Proc:
    """`streamrec worker` on the bench topics and DB (log `<name>.log`)."""
    port = free_port()
    env = worker_env(settings, port, **env_extra)
    cmd = [sys.executable, "-m", "streamrec", "worker", "--loglevel", "warning"]
    with (workdir / f"{name}.log").open("wb") as log:
        proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=workdir)
    return Proc(proc, port)


async def wait_for_group(settings: Settings, workers: Sequence[Proc], timeout: float) -> None:
    """Until the worker group is stable with every worker holding events partitions (else exit)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for worker in workers:
            if worker.proc.poll() is not None:
                sys.exit(f"bench: a worker exited ({worker.proc.returncode}) before joining its group")
        state, members = await group_assignment(settings, settings.topics.events)
        if state == "Stable" and len(members) == len(workers) and all(members.values()):
            return
        await asyncio.sleep(1.0)
    sys.exit(f"bench: the worker group never had {len(workers)} stable members within {timeout:.0f} s")


async def scrape_all(workers: Sequence[Proc]) -> dict[str, float]:
    """Every worker's Prometheus samples, summed by name (counters and histogram sums add up)."""
    total: dict[str, float] = {}
    for worker in workers:
        for name, value in (await scrape_metrics(worker.web_port or 0)).items():
            total[name] = total.get(name, 0.0) + value
    return total


def workers_cpu(workers: Sequence[Proc]) -> float:
    """CPU seconds of all worker processes so far."""
    return sum(cpu_seconds(w.proc.pid) for w in workers)


async def passthrough(bootstrap: str, source: str, sink: str, group: str) -> None:
    """The yardstick: consume `source`, produce each record unchanged to `sink` (acks=all), commit, repeat."""
    consumer = AIOKafkaConsumer(
        source, bootstrap_servers=bootstrap, group_id=group, auto_offset_reset="earliest", enable_auto_commit=False
    )
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=2)
    await consumer.start()
    await producer.start()
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    try:
        while not stop.is_set():
            batches = await consumer.getmany(timeout_ms=100, max_records=1000)
            pending = [await producer.send(sink, m.value, key=m.key) for ms in batches.values() for m in ms]
            if pending:
                await asyncio.gather(*pending)
                await consumer.commit()
    finally:
        await consumer.stop()
        await producer.stop()


def start_passthrough(settings: Settings, sink: str, workdir: Path) -> Proc:
    """This script in `--passthrough` mode, as a subprocess (its own process, like the worker)."""
    cmd = [sys.executable, __file__, "--passthrough", settings.kafka_bootstrap, settings.topics.events, sink]
    with (workdir / "passthrough.log").open("wb") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=workdir)
    return Proc(proc)


async def sink_counter(settings: Settings, topic: str, counts: list[tuple[float, float]], stop: asyncio.Event) -> None:
    """Cumulative count of records arriving on `topic` (from the start), sampled as they come."""
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=settings.kafka_bootstrap, auto_offset_reset="earliest")
    await consumer.start()
    n = 0
    try:
        while not stop.is_set():
            for messages in (await consumer.getmany(timeout_ms=200)).values():
                n += len(messages)
            counts.append((time.monotonic(), n))
    finally:
        await consumer.stop()


# --------------------------------------------------------------------------- phases


@dataclass
class Result:
    """One processor's figures."""

    events_per_s: float
    latency_s: list[float]
    metrics: dict[str, float]
    events_per_cpu_s: float  # events per CPU-second of the processor process (the box is shared)
    events_per_redis_cpu_s: float = float("nan")  # events per CPU-second of the Redis server


async def run_worker(settings: Settings, stream: Stream, args: argparse.Namespace, workdir: Path) -> Result:
    """Backlog through the worker(s), then the fixed-rate latency phase.

    One worker starts after the backlog is written. With `--workers N > 1` they start first and the backlog is
    written once their group is stable (otherwise the first one drains part of it alone, then rebalances).
    """
    backlog = stream.take(args.backlog)
    env = {"STREAMREC_MODEL_DIR": str(train_bench_model(args, workdir))} if args.scorer != "blend" else {}
    workers: list[Proc] = []
    if args.workers == 1:
        await send(settings, backlog, None, {})
    try:
        workers += [start_worker(settings, workdir, f"worker{n}", **env) for n in range(args.workers)]
        if args.workers > 1:
            await wait_for_group(settings, workers, args.timeout)
            await send(settings, backlog, None, {})
        redis_url = settings.redis_url.get_secret_value()
        samples: list[tuple[float, float]] = []
        cpu: list[tuple[float, float]] = []  # (events seen, workers' CPU s)
        redis: list[tuple[float, float]] = []  # (events seen, Redis CPU s)
        deadline = time.monotonic() + args.timeout
        while time.monotonic() < deadline:
            seen = (await scrape_all(workers)).get("streamrec_events_in_total", 0.0)
            samples.append((time.monotonic(), seen))
            cpu.append((seen, workers_cpu(workers)))
            redis.append((seen, await redis_cpu_seconds(redis_url)))
            if seen >= args.backlog:
                break
            if any(w.proc.poll() is not None for w in workers):
                sys.exit(f"bench: a worker exited; see {workdir}/worker*.log")
            await asyncio.sleep(0.5)
        rate = slope(samples, args.backlog)
        per_cpu, per_redis_cpu = _per_cpu(cpu, args.backlog), _per_cpu(redis, args.backlog)
        print(
            f"{args.workers} worker(s): backlog of {args.backlog} events at {rate:.0f} events/s (10-90 % slope), "
            f"{per_cpu:.0f}/CPU-s"
        )
        before = await scrape_all(workers)
        cpu_before = workers_cpu(workers)
        latency = await measure_latency(
            settings,
            settings.topics.recommendations,
            _rec_trigger,
            stream.take(int(args.rate * args.seconds)),
            args.rate,
        )
        after = await scrape_all(workers)
        deltas = {k: after.get(k, 0.0) - before.get(k, 0.0) for k in after}
        deltas[_WORKER_CPU] = workers_cpu(workers) - cpu_before
        return Result(rate, latency, deltas, per_cpu, per_redis_cpu)
    finally:
        for worker in workers:
            worker.stop()


async def run_passthrough(settings: Settings, stream: Stream, args: argparse.Namespace, workdir: Path) -> Result:
    """The same backlog size and offered rate through the raw aiokafka passthrough."""
    sink = f"{settings.topic_prefix}.passthrough"
    await ensure_topics(settings.kafka_bootstrap, [TopicSpec(sink, settings.events_partitions)])
    # The worker phase left its events in the topic: the passthrough's group starts from the earliest offset,
    # so its backlog is everything produced so far; count it, then measure the same way.
    already = args.backlog + int(args.rate * args.seconds)
    counts: list[tuple[float, float]] = []
    stop = asyncio.Event()
    counter = asyncio.create_task(sink_counter(settings, sink, counts, stop))
    proc = start_passthrough(settings, sink, workdir)
    cpu: list[tuple[float, float]] = []
    try:
        deadline = time.monotonic() + args.timeout
        while (not counts or counts[-1][1] < already) and time.monotonic() < deadline:
            cpu.append((counts[-1][1] if counts else 0.0, cpu_seconds(proc.proc.pid)))
            await asyncio.sleep(0.2)
        stop.set()
        await counter
        rate = slope(counts, already)
        per_cpu = _per_cpu(cpu + [(already, cpu_seconds(proc.proc.pid))], already)
        print(f"passthrough: backlog of {already} events at {rate:.0f} events/s (10-90 % slope), {per_cpu:.0f}/CPU-s")
        latency = await measure_latency(settings, sink, _copy_id, stream.take(int(args.rate * args.seconds)), args.rate)
        return Result(rate, latency, {}, per_cpu)
    finally:
        proc.stop()


def _per_cpu(samples: Sequence[tuple[float, float]], total: float) -> float:
    """Events per CPU-second between 10 % and 90 % of `total`, from (events, CPU s) samples."""
    return slope([(cpu, n) for n, cpu in samples], total)  # `slope` with CPU seconds as the clock


def _rec_trigger(value: bytes) -> tuple[str, str]:
    doc = json.loads(value)
    return doc["user_id"], doc["trigger_event_id"]


def _copy_id(value: bytes) -> tuple[str, str]:
    doc = json.loads(value)
    return doc["user_id"], doc["event_id"]


# --------------------------------------------------------------------------- report


def stage_table(m: dict[str, float]) -> list[str]:
    """Mean wall and CPU ms per micro-batch per stage, batch size, and the worker's CPU outside the stages."""
    batches = m.get("streamrec_batches_total", 0.0)
    size = m.get("streamrec_batch_size_sum", 0.0) / batches if batches else float("nan")
    lines = [f"  micro-batches: {batches:.0f}, mean size {size:.1f} events", f"  {'':15s} {'wall':>8s} {'CPU':>8s}"]
    total = total_cpu = 0.0
    for stage in _STAGES:
        count = m.get(f'streamrec_stage_seconds_count{{stage="{stage}"}}', 0.0)
        seconds = m.get(f'streamrec_stage_seconds_sum{{stage="{stage}"}}', 0.0)
        cpu = m.get(f'streamrec_stage_cpu_seconds_sum{{stage="{stage}"}}', 0.0)
        mean, mean_cpu = (1000 * seconds / count, 1000 * cpu / count) if count else (0.0, 0.0)
        total, total_cpu = total + mean, total_cpu + mean_cpu
        lines.append(f"  {stage:15s} {mean:8.2f} {mean_cpu:8.2f} ms/batch")
    lines.append(f"  {'sum of stages':15s} {total:8.2f} {total_cpu:8.2f} ms/batch")
    if batches and _WORKER_CPU in m:
        # Kafka consume/produce, Faust, JSON of the records, metrics, the web server: CPU not inside a stage.
        whole = 1000 * m[_WORKER_CPU] / batches
        lines.append(f"  {'outside stages':15s} {'':8s} {whole - total_cpu:8.2f} ms/batch (worker CPU {whole:.2f})")
    lat_n = m.get("streamrec_recommendation_latency_seconds_count", 0.0)
    lat_s = m.get("streamrec_recommendation_latency_seconds_sum", 0.0)
    if lat_n:
        lines.append(f"  in-worker arrival→recommendation mean {1000 * lat_s / lat_n:.1f} ms over {lat_n:.0f} recs")
    hits = m.get('streamrec_encoder_cache_rows{result="hit"}', 0.0)
    misses = m.get('streamrec_encoder_cache_rows{result="miss"}', 0.0)
    if hits + misses:
        share = hits / (hits + misses)
        lines.append(f"  encoder states reused for {hits:.0f} of {hits + misses:.0f} scored users ({share:.0%})")
    return lines


async def bench(args: argparse.Namespace) -> None:
    """Bring up, run both processors, report."""
    calib = calibration_seconds()
    load = os.getloadavg()
    print(f"cpu calibration: 10M-add loop {calib:.2f} s (idle core ~0.4 s); load average {load[0]:.1f}")
    config = StackConfig()
    info = LocalStack(config).up()
    prefix = f"bench{uuid.uuid4().hex[:8]}"
    specs = topic_specs(replace(config, topic_prefix=prefix))
    await ensure_topics(info.bootstrap, specs)
    with (
        leased_redis_db(info.redis_url, ttl_seconds=1800) as redis_url,
        tempfile.TemporaryDirectory(prefix="streamrec-bench-") as tmp,
    ):
        settings = Settings(
            kafka_bootstrap=info.bootstrap,
            redis_url=redis_url,
            topic_prefix=prefix,
            events_partitions=config.events_partitions,
            recommendations_partitions=config.recommendations_partitions,
        )
        client = aioredis.Redis.from_url(redis_url)
        try:
            await FeatureStore(client).upsert_items(catalog(args.items))
        finally:
            await client.aclose()
        stream = Stream(args.users, args.items, args.seed)
        print(f"topics {prefix}.*, {args.users} users, {args.items} items, backlog {args.backlog}, rate {args.rate}/s")
        worker = await run_worker(settings, stream, args, Path(tmp))
        pt = await run_passthrough(settings, stream, args, Path(tmp))
        await delete_topics(info.bootstrap, [s.name for s in specs] + [f"{prefix}.passthrough"])

    p50, p99 = (1000 * quantile(worker.latency_s, q) for q in (0.5, 0.99))
    pt50, pt99 = (1000 * quantile(pt.latency_s, q) for q in (0.5, 0.99))
    ratio = worker.events_per_s / pt.events_per_s if pt.events_per_s else float("nan")
    print()
    head = f"{'':12s} {'events/s':>10s} {'per CPU-s':>10s} {'p50 ms':>8s} {'p99 ms':>8s}"
    print(f"{head}   (latency at {args.rate:.0f} events/s offered)")
    print(f"{'worker':12s} {worker.events_per_s:10.0f} {worker.events_per_cpu_s:10.0f} {p50:8.1f} {p99:8.1f}")
    print(f"{'passthrough':12s} {pt.events_per_s:10.0f} {pt.events_per_cpu_s:10.0f} {pt50:8.1f} {pt99:8.1f}")
    print(f"worker / passthrough throughput: {ratio:.3f}")
    print("worker per-stage breakdown (latency phase):")
    print("\n".join(stage_table(worker.metrics)))
    print(
        f"RESULT scorer={args.scorer} workers={args.workers} events_per_s={worker.events_per_s:.0f} "
        f"p50_ms={p50:.1f} p99_ms={p99:.1f} "
        f"worker_us_per_event={1e6 / worker.events_per_cpu_s:.0f} "
        f"redis_us_per_event={1e6 / worker.events_per_redis_cpu_s:.0f} "
        f"passthrough_events_per_s={pt.events_per_s:.0f} ratio={ratio:.4f}"
    )


def main() -> None:
    """CLI entry (also the passthrough subprocess: `--passthrough BOOTSTRAP SOURCE SINK`)."""
    if len(sys.argv) == 5 and sys.argv[1] == "--passthrough":
        _, _, bootstrap, source, sink = sys.argv
        asyncio.run(passthrough(bootstrap, source, sink, f"{source}-passthrough"))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backlog", type=int, default=20_000, help="events in the throughput backlog")
    parser.add_argument("--rate", type=float, default=1000.0, help="offered events/s in the latency phase")
    parser.add_argument("--seconds", type=float, default=20.0, help="length of the latency phase")
    parser.add_argument("--users", type=int, default=5000)
    parser.add_argument("--items", type=int, default=20_000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--timeout", type=float, default=600.0, help="longest wait for a backlog, seconds")
    parser.add_argument("--scorer", choices=("transformer", "two-stage", "blend"), default="transformer")
    parser.add_argument("--train-events", type=int, default=60_000, help="events the bench model trains on")
    parser.add_argument("--workers", type=int, default=1, help="worker processes in the group (one core each)")
    try:
        asyncio.run(bench(parser.parse_args()))
    except AllDatabasesLeased as exc:
        sys.exit(f"bench: {exc}; try again later")


if __name__ == "__main__":
    main()
