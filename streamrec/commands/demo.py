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
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import typer

if TYPE_CHECKING:
    from rich.console import Console

    from contracts import Event, Recommendation, Settings

__all__ = ["DemoPlan", "register"]


@dataclass(frozen=True)
class DemoPlan:
    """How big a demo run is."""

    users: int | None  # None = every user of the sample
    train_args: tuple[str, ...]
    live_days: int = 14  # the newest days are replayed live; the model is trained on what comes before
    live_rate: float = 20.0  # events per second, live phase
    live_limit: int | None = None  # live events at most (None = the whole live window, then keep serving)
    show_every_seconds: float = 2.0  # one recommendation panel at most this often

    @classmethod
    def quick(cls) -> DemoPlan:
        """Under two minutes on 2 cores: 40 users, a tiny model, ~20 s of live stream."""
        args = ("--epochs", "2", "--d-model", "32", "--layers", "1", "--max-len", "20", "--patience", "1")
        return cls(users=40, train_args=args, live_rate=60.0, live_limit=1200, show_every_seconds=3.0)

    @classmethod
    def full(cls) -> DemoPlan:
        """Every user, a small but real model (a few minutes of CPU training), live at 20 events/s."""
        return cls(users=None, train_args=("--epochs", "6", "--patience", "2", "--max-len", "50"))


@dataclass
class _Procs:
    """Child processes started by the demo; stopped in reverse order (SIGTERM, then SIGKILL)."""

    console: Console
    procs: list[tuple[str, subprocess.Popen[bytes], IO[bytes]]] = field(default_factory=list)

    def start(self, name: str, args: list[str], env: Mapping[str, str], log: Path) -> subprocess.Popen[bytes]:
        out = open(log, "wb")  # noqa: SIM115 - closed in stop_all
        # Own session: the terminal's Ctrl-C reaches only the demo, which then stops the children in order.
        proc = subprocess.Popen(args, env=dict(env), stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        self.procs.append((name, proc, out))
        self.console.print(f"  started {name} (pid {proc.pid}, log {log})")
        return proc

    def check(self) -> None:
        for name, proc, _ in self.procs:
            if proc.poll() is not None:
                msg = f"{name} exited with code {proc.returncode}; see its log"
                raise RuntimeError(msg)

    def stop_all(self) -> None:
        for name, proc, out in reversed(self.procs):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
                self.console.print(f"  stopped {name} (pid {proc.pid})")
            out.close()
        self.procs.clear()


def _free_port(preferred: int) -> int:
    for port in (preferred, 0):
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return int(s.getsockname()[1])
    msg = "no free port"
    raise RuntimeError(msg)


def _cli() -> list[str]:
    return [sys.executable, "-m", "streamrec"]


def _has_command(*words: str) -> bool:
    """Whether this build's CLI has `streamrec <words>` (the learner is optional)."""
    run = subprocess.run([*_cli(), *words, "--help"], capture_output=True, check=False, timeout=60)
    return run.returncode == 0


def _wait_http(url: str, procs: _Procs, timeout_s: float = 90.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        procs.check()
        try:
            with urllib.request.urlopen(url, timeout=2) as r:  # noqa: S310 - loopback URL we built
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    msg = f"{url} did not answer within {timeout_s:.0f} s"
    raise RuntimeError(msg)


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


async def _stream(
    settings: Settings, history: list[Event], live: list[Event], items: list[Any], plan: DemoPlan, out: _Live
) -> None:
    from streamrec.commands.replay import replay
    from streamrec.commands.tail import follow

    ready = asyncio.Event()
    follower = asyncio.create_task(follow(settings, out.on_rec, ready=ready))
    await asyncio.wait_for(ready.wait(), timeout=60)
    try:
        stats = await replay(settings, history, rate=0, items=items)
        out.console.print(
            f"  backfill: {stats.events:,} history events and {stats.items:,} items in {stats.seconds:.1f} s"
        )
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


def _split(events: list[Event], days: int) -> tuple[list[Event], list[Event]]:
    cutoff = events[-1].ts - timedelta(days=days)
    return [e for e in events if e.ts < cutoff], [e for e in events if e.ts >= cutoff]


def run_demo(plan: DemoPlan, workdir: Path, prefix: str, redis_db: int, web_port: int, console: Console) -> int:
    """The whole demo; returns the exit code (0 when recommendations with explanations were shown)."""
    import redis

    from contracts import Settings
    from streamrec.data_import.writer import read_catalog, read_events
    from streamrec.demo_data import prepare_demo_data
    from streamrec.stack import LocalStack
    from streamrec.stack_config import StackConfig

    procs = _Procs(console)
    stack: LocalStack | None = None
    try:
        console.rule("1/5 stack: Kafka (KRaft) + Redis")
        base = Settings()  # STREAMREC_* env (partitions)
        stack = LocalStack(StackConfig(topic_prefix=prefix, events_partitions=base.events_partitions))
        already_up = all(row.alive and row.listening for row in stack.status())
        info = stack.up()
        if already_up:
            stack = None  # not ours to stop
        redis_url = info.redis_url.rsplit("/", 1)[0] + f"/{redis_db}"
        with redis.Redis.from_url(redis_url) as r:
            r.flushdb()  # the demo's own DB: every run starts from empty features
        settings = Settings(kafka_bootstrap=info.bootstrap, redis_url=redis_url, topic_prefix=prefix)
        console.print(f"  kafka {info.bootstrap}, redis {settings.redis_url_redacted()}, topics {prefix}.*")

        console.rule("2/5 data: UCI Online Retail sample (CC BY 4.0) + seeded browsing")
        data = workdir / "data"
        n_events, n_items = prepare_demo_data(data, users=plan.users)
        events, catalog = list(read_events(data)), list(read_catalog(data).values())
        history, live = _split(events, plan.live_days)
        if plan.live_limit is not None:
            live = live[: plan.live_limit]
        console.print(f"  {n_events:,} events, {n_items:,} items → {len(history):,} history + {len(live):,} live")

        console.rule("3/5 train the sequential transformer (CPU)")
        model_out, store = workdir / "model-train", workdir / "models"
        shutil.rmtree(model_out, ignore_errors=True)
        shutil.rmtree(store, ignore_errors=True)
        until = (events[-1].ts - timedelta(days=plan.live_days)).isoformat()
        train = [*_cli(), "train", "--data", str(data), "--out", str(model_out), "--until", until, *plan.train_args]
        subprocess.run(["nice", "-n", "5", *train], check=True)
        env = dict(os.environ)
        env.update(
            STREAMREC_KAFKA_BOOTSTRAP=info.bootstrap,
            STREAMREC_REDIS_URL=redis_url,
            STREAMREC_TOPIC_PREFIX=prefix,
            STREAMREC_MODEL_DIR=str(store),
            STREAMREC_WEB_PORT=str(web_port),
        )
        if _has_command("model", "promote"):
            subprocess.run([*_cli(), "model", "promote", str(model_out), "--store", str(store)], env=env, check=True)
        else:
            console.print("  [yellow]this build has no model store yet: the worker serves the baseline blend[/yellow]")

        console.rule("4/5 worker (+ learner)")
        procs.start("worker", [*_cli(), "worker", "--loglevel", "warning"], env, workdir / "worker.log")
        _wait_http(f"http://127.0.0.1:{web_port}/healthz", procs)
        if _has_command("learner"):
            procs.start("learner", [*_cli(), "learner"], env, workdir / "learner.log")
        else:
            console.print("  [yellow]`streamrec learner` is not in this build: no continual learning[/yellow]")
        console.print(f"  [bold]dashboard: http://127.0.0.1:{web_port}/dashboard/[/bold]")

        console.rule("5/5 replay: backfill the history, then the live stream")
        out = _Live(console, plan.show_every_seconds)
        asyncio.run(_stream(settings, history, live, catalog, plan, out))
        procs.check()
        console.rule("summary")
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
        procs.stop_all()
        if stack is not None:
            stack.down()
            console.print("  stopped the stack this demo started")


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
        try:
            code = run_demo(plan, workdir, prefix, redis_db, _free_port(web_port), console)
        except (RuntimeError, subprocess.CalledProcessError, OSError, StreamrecError) as exc:
            console.print(f"[red]demo failed:[/red] {exc}")
            code = 1
        console.print(f"[dim]demo finished in {time.monotonic() - started:.0f} s (exit {code})[/dim]")
        raise typer.Exit(code)
