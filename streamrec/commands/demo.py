"""`streamrec demo`: the main job, end to end: stack → data → train → worker (+ learner) → replay → live output.

Steps (each printed as it starts):

1. `stack up` for the demo's topic prefix (reused when already running; stopped at the end only if started here).
2. Import the shipped UCI Online Retail sample and add seeded browsing (`streamrec.demo_data`).
3. `streamrec train` on the events before the live window (progress bar), promoted into a model store.
4. `streamrec worker` (serves the model, web server + dashboard) and `streamrec learner` if this build has it.
5. Backfill the users' history at full speed, then replay the live window at a realistic rate, while following
   `<prefix>.recommendations` and printing recommendations with their explanations.

Ctrl-C (or the end of `--quick`) stops every process this command started, in reverse order.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from streamrec.demo_procs import Procs, free_port, interrupt, wait_http

if TYPE_CHECKING:
    from rich.console import Console

    from contracts import Event, Item, Recommendation, Settings
    from streamrec.stack import LocalStack

__all__ = ["DemoPlan", "register", "run_demo"]


@dataclass(frozen=True)
class DemoPlan:
    """How big a demo run is."""

    users: int | None  # None = every user of the sample
    train_args: tuple[str, ...]
    live_days: int = 14  # the newest days are replayed live; the model is trained on what comes before
    history_per_user: int = 50  # backfill only each user's newest history events (the store keeps 50 anyway)
    live_rate: float = 20.0  # events per second, live phase
    live_limit: int | None = None  # live events at most (None = the whole live window, then keep serving)
    show_every_seconds: float = 2.0  # one recommendation panel at most this often

    @classmethod
    def quick(cls) -> DemoPlan:
        """Under two minutes on 2 cores: 40 users, a tiny model, ~20 s of live stream."""
        args = ("--epochs", "1", "--d-model", "32", "--layers", "1", "--max-len", "20", "--max-valid-points", "200")
        return cls(
            users=40, train_args=args, history_per_user=25, live_rate=60.0, live_limit=600, show_every_seconds=3.0
        )

    @classmethod
    def full(cls) -> DemoPlan:
        """Every user, a small but real model (3 epochs: a few minutes of CPU training), live at 20 events/s."""
        args = ("--epochs", "3", "--patience", "1", "--max-len", "50", "--max-valid-points", "300")
        return cls(users=None, train_args=args)


def _cli() -> list[str]:
    return [sys.executable, "-m", "streamrec"]


def _has_command(name: str) -> bool:
    """Whether this build's CLI registers the command module `name` (the learner and model store are optional)."""
    from streamrec.commands import _MODULES

    return name in _MODULES and importlib.util.find_spec(f"streamrec.commands.{name}") is not None


def _serving_version(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as r:  # noqa: S310 - loopback
        return str(json.loads(r.read())["model_version"])


@dataclass
class _Live:
    """Counts and the printed sample of what the demo received."""

    console: Console
    every: float
    received: int = 0
    with_text: int = 0
    users: set[str] = field(default_factory=set)
    latencies: list[float] = field(default_factory=list)
    versions: set[str] = field(default_factory=set)
    shown: int = 0
    _last_shown: float = 0.0

    def on_rec(self, rec: Recommendation, titles: Mapping[str, str], trigger: Mapping[str, Any] | None) -> None:
        from streamrec.commands.tail import render_recommendation

        self.received += 1
        self.users.add(rec.user_id)
        self.latencies.append(rec.latency_ms)
        self.versions.add(rec.model_version)
        if rec.items and all(i.explanation.text for i in rec.items):
            self.with_text += 1
        now = time.monotonic()
        if rec.items and now - self._last_shown >= self.every:
            self._last_shown = now
            self.shown += 1
            self.console.print(render_recommendation(rec, titles, trigger))

    def summary(self) -> str:
        lat = sorted(self.latencies)

        def p(q: float) -> float:
            return lat[min(len(lat) - 1, int(q * len(lat)))] if lat else float("nan")

        return (
            f"{self.received:,} recommendations for {len(self.users):,} users "
            f"({self.with_text:,} with explanation text on every item); latency p50 {p(0.5):.1f} ms, "
            f"p95 {p(0.95):.1f} ms; model versions: {', '.join(sorted(self.versions)) or '-'}"
        )


async def _until(what: str, check: Any, timeout_s: float) -> None:
    """Poll the async `check()` until true; RuntimeError after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while not await check():
        if time.monotonic() > deadline:
            msg = f"timed out after {timeout_s:.0f} s waiting for {what}"
            raise RuntimeError(msg)
        await asyncio.sleep(0.3)


def _worker_events(web_port: int) -> int:
    url = f"http://127.0.0.1:{web_port}/api/dashboard/stats"
    with urllib.request.urlopen(url, timeout=5) as r:  # noqa: S310 - loopback URL we built
        return int(json.loads(r.read())["totals"]["events"])


async def _stream(
    settings: Settings, history: list[Event], live: list[Event], items: list[Any], plan: DemoPlan, out: _Live, port: int
) -> None:
    from feature_store import FeatureStore, redis_client
    from streamrec.commands.replay import replay
    from streamrec.commands.tail import follow

    ready = asyncio.Event()
    follower = asyncio.create_task(follow(settings, out.on_rec, ready=ready))
    await asyncio.wait_for(ready.wait(), timeout=60)
    client = redis_client(settings.redis_url.get_secret_value(), cluster=settings.redis_cluster)
    try:
        t = time.monotonic()
        await replay(settings, [], rate=0, items=items)
        if items:  # explanations quote titles: let the catalog agent store them before the first event
            key = FeatureStore(client).keys.item_meta(items[-1].item_id)
            await _until("the catalog in Redis", lambda: client.exists(key), 120)
        out.console.print(f"  catalog: {len(items):,} items stored in {time.monotonic() - t:.1f} s")
        t = time.monotonic()
        stats = await replay(settings, history, rate=0)
        loop = asyncio.get_running_loop()

        async def caught_up() -> bool:
            return await loop.run_in_executor(None, _worker_events, port) >= stats.events

        await _until("the worker to process the backfill", caught_up, 600)
        out.console.print(f"  backfill: {stats.events:,} history events processed in {time.monotonic() - t:.1f} s")
        out.console.rule(f"live: {len(live):,} events at {plan.live_rate:.0f}/s")
        stats = await replay(settings, live, rate=plan.live_rate)
        out.console.print(f"  live replay done: {stats.events:,} events at {stats.rate:.1f}/s")
        last = {e.user_id for e in live[-50:]}
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not last <= out.users:
            await asyncio.sleep(0.5)
        await asyncio.sleep(1.0)  # the last batch's recommendations
    finally:
        follower.cancel()
        try:
            await follower
        except asyncio.CancelledError:
            pass
        await client.aclose()


def _clear_cluster(url: str) -> None:
    """Delete the feature store's `sr:*` keys from every master of the cluster at `url`."""
    from redis.cluster import RedisCluster

    with RedisCluster.from_url(url) as client:
        keys = list(client.scan_iter(match="sr:*", count=1000))
        for at in range(0, len(keys), 500):
            client.delete(*keys[at : at + 500])


def _split(events: list[Event], days: int, per_user: int) -> tuple[list[Event], list[Event]]:
    """(newest `per_user` history events of each user before the live window, the live window)."""
    cutoff = events[-1].ts - timedelta(days=days)
    history = [e for e in events if e.ts < cutoff]
    count: dict[str, int] = {}
    keep = []
    for e in reversed(history):
        count[e.user_id] = count.get(e.user_id, 0) + 1
        if count[e.user_id] <= per_user:
            keep.append(e)
    return keep[::-1], [e for e in events if e.ts >= cutoff]


@dataclass
class _Owned:
    """What the demo started and must stop: the stack (None: it was running before), or only its cluster."""

    stack: LocalStack | None = None
    cluster_only: bool = False  # stop just the cluster at the end (the broker was running before)

    def stop(self, console: Console) -> None:
        if self.stack is not None and self.cluster_only:
            self.stack.cluster.down()
            console.print("  stopped the Redis Cluster this demo started")
        elif self.stack is not None:
            self.stack.down()
            console.print("  stopped the stack this demo started")


def run_demo(
    plan: DemoPlan,
    workdir: Path,
    prefix: str,
    redis_db: int,
    web_port: int,
    console: Console,
    *,
    redis_cluster: bool = False,
) -> int:
    """The whole demo; returns the exit code (0 when recommendations with explanations were shown).

    With `redis_cluster` the features live on the stack's Redis Cluster (`stack up --redis-cluster`), whose
    `sr:*` keys the demo owns instead of `redis_db` (a cluster has only DB 0).
    """
    procs = Procs(console)
    owned = _Owned()
    t0 = time.monotonic()

    def step(title: str) -> None:
        console.rule(f"{title}  [dim]+{time.monotonic() - t0:.0f} s[/dim]")

    try:
        step("1/5 stack: Kafka (KRaft) + Redis")
        settings = _start_stack(owned, prefix, redis_db, redis_cluster, console)
        step("2/5 data: UCI Online Retail sample (CC BY 4.0) + seeded browsing")
        data = workdir / "data"
        events, history, live, catalog = _demo_data(data, plan, console)
        step("3/5 worker (baseline scorer until the model is ready)")
        env = _start_worker(procs, settings, workdir, web_port, console)
        step("4/5 train the transformer (CPU), serve it, start the learner")
        until = (events[-1].ts - timedelta(days=plan.live_days)).isoformat()
        _train_and_serve(procs, env, data, workdir, until, plan, web_port, console)
        step("5/5 replay: backfill the history, then live")
        out = _Live(console, plan.show_every_seconds)
        asyncio.run(_stream(settings, history, live, catalog, plan, out, web_port))
        procs.check()
        step("summary")
        console.print("  " + out.summary())
        console.print(f"  dashboard: http://127.0.0.1:{web_port}/dashboard/   logs: {workdir}")
        if plan.live_limit is None:
            console.print("  replay finished; worker and dashboard keep serving. Ctrl-C stops everything.")
            while True:
                procs.check()
                time.sleep(1.0)
        return 0 if out.with_text > 0 else 1
    except KeyboardInterrupt:
        console.print("\n[bold]Ctrl-C: stopping[/bold]")
        return 0
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not cut the clean-up short
        procs.stop_all()
        owned.stop(console)


def _start_stack(owned: _Owned, prefix: str, redis_db: int, redis_cluster: bool, console: Console) -> Settings:
    """Step 1: the stack up (recorded in `owned` if started here), the demo's features emptied; its settings."""
    import redis

    from contracts import Settings
    from streamrec.stack import LocalStack
    from streamrec.stack_config import StackConfig

    base = Settings()  # STREAMREC_* env (partitions)
    owned.stack = stack = LocalStack(
        StackConfig(topic_prefix=prefix, events_partitions=base.events_partitions, redis_cluster=redis_cluster)
    )
    rows = stack.status()
    already_up = all(row.alive and row.listening for row in rows)
    owned.cluster_only = not already_up and all(r.alive for r in rows if r.name.startswith("kafka"))
    info = stack.up()
    if already_up:
        owned.stack = None  # not ours to stop
    if redis_cluster:
        redis_url = info.redis_url
        _clear_cluster(redis_url)  # the demo's own keys: every run starts from empty features
    else:
        redis_url = info.redis_url.rsplit("/", 1)[0] + f"/{redis_db}"
        with redis.Redis.from_url(redis_url) as r:
            r.flushdb()  # the demo's own DB: every run starts from empty features
    settings = Settings(
        kafka_bootstrap=info.bootstrap, redis_url=redis_url, redis_cluster=redis_cluster, topic_prefix=prefix
    )
    console.print(f"  kafka {info.bootstrap}, redis {settings.redis_url_redacted()}, topics {prefix}.*")
    return settings


def _demo_data(
    data: Path, plan: DemoPlan, console: Console
) -> tuple[list[Event], list[Event], list[Event], list[Item]]:
    """Step 2: the sample imported into `data`; (all events, backfill history, live window, catalog)."""
    from streamrec.data_import.writer import read_catalog, read_events
    from streamrec.demo_data import prepare_demo_data

    n_events, n_items = prepare_demo_data(data, users=plan.users)
    events, catalog = list(read_events(data)), list(read_catalog(data).values())
    history, live = _split(events, plan.live_days, plan.history_per_user)
    if plan.live_limit is not None:
        live = live[: plan.live_limit]
    console.print(
        f"  {n_events:,} events, {n_items:,} items; backfill {len(history):,} (newest {plan.history_per_user} per"
        f" user), live {len(live):,}"
    )
    return events, history, live, catalog


def _start_worker(procs: Procs, settings: Settings, workdir: Path, web_port: int, console: Console) -> dict[str, str]:
    """Step 3: an empty model store and the worker on it; the environment of the demo's child processes."""
    store = workdir / "models"
    shutil.rmtree(workdir / "model-train", ignore_errors=True)
    shutil.rmtree(store, ignore_errors=True)
    env = dict(os.environ)
    env.update(
        STREAMREC_KAFKA_BOOTSTRAP=settings.kafka_bootstrap,
        STREAMREC_REDIS_URL=settings.redis_url.get_secret_value(),
        STREAMREC_REDIS_CLUSTER="true" if settings.redis_cluster else "false",
        STREAMREC_TOPIC_PREFIX=settings.topic_prefix,
        STREAMREC_MODEL_DIR=str(store),
        STREAMREC_WEB_PORT=str(web_port),
    )
    # Started first: it joins its consumer group while the model trains, then hot-swaps to the model.
    procs.start("worker", [*_cli(), "worker", "--loglevel", "warning"], env, workdir / "worker.log")
    console.print(f"  [bold]dashboard: http://127.0.0.1:{web_port}/dashboard/[/bold]")
    return env


def _train_and_serve(
    procs: Procs,
    env: Mapping[str, str],
    data: Path,
    workdir: Path,
    until: str,
    plan: DemoPlan,
    web_port: int,
    console: Console,
) -> None:
    """Step 4: train on the events before `until`, promote and publish the model, start the learner."""
    model_out, store = workdir / "model-train", env["STREAMREC_MODEL_DIR"]
    train = [*_cli(), "train", "--data", str(data), "--out", str(model_out), "--until", until, *plan.train_args]
    subprocess.run(["nice", "-n", "5", *train], check=True)
    wait_http(f"http://127.0.0.1:{web_port}/healthz", procs)
    if _has_command("model"):
        promote = [*_cli(), "model", "promote", str(model_out), "--store", store, "--publish"]
        subprocess.run(promote, env=env, check=True)
        version = json.loads((model_out / "manifest.json").read_text())["version"]
        deadline = time.monotonic() + 120
        while _serving_version(web_port) != version and time.monotonic() < deadline:
            procs.check()
            time.sleep(0.5)
        console.print(f"  worker serves {_serving_version(web_port)}")
    else:
        console.print("  [yellow]this build has no model store: the worker serves the baseline blend[/yellow]")
    if _has_command("learner"):
        procs.start("learner", [*_cli(), "learner"], env, workdir / "learner.log")
    else:
        console.print("  [yellow]`streamrec learner` is not in this build: no continual learning[/yellow]")


def register(app: typer.Typer) -> None:
    """Attach the `demo` command."""

    @app.command("demo")
    def demo(
        quick: bool = typer.Option(False, "--quick", envvar="QUICK", help="Short run that exits (CI): < 2 minutes."),
        workdir: Path | None = typer.Option(
            None, help="Data, model store and logs of the run [default: ~/.cache/streamrec/demo]."
        ),
        prefix: str = typer.Option("demo", help="Topic prefix of the demo's topics."),
        redis_db: int = typer.Option(1, min=0, max=15, help="Redis DB the demo owns (flushed at start)."),
        redis_cluster: bool = typer.Option(
            False, "--redis-cluster", help="Keep the features on a Redis Cluster (stack up --redis-cluster)."
        ),
        web_port: int = typer.Option(6066, help="Worker web port (the next free one if taken)."),
        rate: float | None = typer.Option(None, min=0.1, help="Live replay rate, events per second."),
    ) -> None:
        """Run the whole pipeline on the shipped data and show explained recommendations live (Ctrl-C stops)."""
        from dataclasses import replace

        from rich.console import Console

        from contracts import StreamrecError

        plan = DemoPlan.quick() if quick else DemoPlan.full()
        if rate is not None:
            plan = replace(plan, live_rate=rate)
        workdir = (workdir or Path.home() / ".cache" / "streamrec" / "demo") / ("quick" if quick else "full")
        workdir.mkdir(parents=True, exist_ok=True)
        console = Console()
        started = time.monotonic()
        # Ctrl-C and SIGTERM both end in the same clean shutdown. SIGINT is reset explicitly: a shell that starts
        # the demo as a background job (scripts/demo.sh) hands it over ignored.
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.signal(signal.SIGTERM, interrupt)
        try:
            code = run_demo(plan, workdir, prefix, redis_db, free_port(web_port), console, redis_cluster=redis_cluster)
        except (RuntimeError, subprocess.CalledProcessError, OSError, StreamrecError) as exc:
            console.print(f"[red]demo failed:[/red] {exc}")
            code = 1
        console.print(f"[dim]demo finished in {time.monotonic() - started:.0f} s (exit {code})[/dim]")
        raise typer.Exit(code)
