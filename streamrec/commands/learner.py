"""`streamrec learner`: the continual-learning consumer (its own process and consumer group)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from streamrec.commands.common import StoreOption

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

    from contracts import Settings
    from model.store import ModelStore
    from streams.learner.service import LearnerOptions

__all__ = ["learner", "lower_priority", "register"]

# The command's options, one line each (typer reads them from the signature of `learner`).
_EveryEvents = Annotated[int, typer.Option(min=1, help="Run a cycle when this many events are pending ...")]
_EverySeconds = Annotated[float, typer.Option(min=0.1, help="... or this many seconds after the last cycle.")]
_MinEvents = Annotated[int, typer.Option(min=1, help="Events a timed cycle needs at least.")]
_Steps = Annotated[int, typer.Option(min=1, help="Fine-tuning steps per cycle.")]
_BatchSize = Annotated[int, typer.Option(min=1, help="Sequences per step.")]
_Lr = Annotated[float, typer.Option(help="AdamW learning rate.")]
_ReplayFraction = Annotated[float, typer.Option(min=0.0, max=1.0, help="Share of each batch from replay.")]
_GateAlpha = Annotated[float, typer.Option(min=1e-6, max=0.5, help="Gate: refuse a significantly worse candidate.")]
_AnchorMargin = Annotated[float, typer.Option(min=0.0, help="Gate: refuse NDCG@10 below the anchor's by more.")]
_MaxGatePoints = Annotated[int, typer.Option(min=1, help="Gate: newest next-new held-back targets scored.")]
_RollbackWindow = Annotated[float, typer.Option(min=0.0, help="Seconds a new version's online effects are watched.")]
_RollbackMin = Annotated[int, typer.Option(min=1, help="Impressions per version before a rollback.")]
_RestoreEvents = Annotated[int, typer.Option(min=0, help="Events re-read per partition on restart (histories).")]
_MaxWindowEvents = Annotated[
    int,
    typer.Option(
        min=0,
        help="Behind the stream: train on the newest this many pending events (0 = all); the older "
        "ones update histories and the replay reservoir only.",
    ),
]
_Holdout = Annotated[float, typer.Option(min=0.05, max=0.9, help="Newest share of a cycle held back for the gate.")]
_MinGatePoints = Annotated[int, typer.Option(min=1, help="Held-back targets needed for a decision.")]
_FromBeginning = Annotated[bool, typer.Option(help="A new consumer group starts at the earliest offset.")]
_TextInit = Annotated[bool, typer.Option("--text-init/--no-text-init", help="MiniLM init for new titled items.")]
_FrozenVersion = Annotated[
    str | None,
    typer.Option(help="Reference version scored on every window for drift reports (default: the starting one)."),
]
_EffectsWindow = Annotated[float, typer.Option(min=1.0, help="Seconds after a recommendation a hit counts.")]
_MetricsPort = Annotated[int, typer.Option(min=0, help="Serve Prometheus /metrics on this port (0 = off).")]
_Threads = Annotated[int, typer.Option(min=1, help="Torch CPU threads (leave the other cores to the workers).")]
_Nice = Annotated[int, typer.Option(min=0, max=19, help="Raise the nice value by this much (workers keep priority).")]
_LogLevel = Annotated[str, typer.Option(help="Log level.")]


def lower_priority(increment: int) -> int:
    """Raise this process's nice value by `increment` (0: unchanged); returns the new nice value.

    Call it before any thread starts: on Linux the nice value is per thread and new threads inherit it, so the
    event loop, the cycle's executor thread and torch's workers all run at the lowered priority. A learner
    sharing cores with workers then takes only the CPU they leave (a fine-tune cycle is CPU-bound for seconds;
    serving latency is what suffers if the two compete as equals).
    """
    import os

    return os.nice(increment)


def register(app: typer.Typer) -> None:
    """Attach the `learner` command."""
    app.command("learner")(learner)


def learner(
    store: StoreOption = None,
    every_events: _EveryEvents = 500,
    every_seconds: _EverySeconds = 30.0,
    min_events: _MinEvents = 50,
    steps: _Steps = 30,
    batch_size: _BatchSize = 64,
    lr: _Lr = 1e-3,
    replay_fraction: _ReplayFraction = 0.5,
    gate_alpha: _GateAlpha = 0.05,
    anchor_margin: _AnchorMargin = 0.02,
    max_gate_points: _MaxGatePoints = 1000,
    rollback_window: _RollbackWindow = 1800.0,
    rollback_min_impressions: _RollbackMin = 200,
    restore_events: _RestoreEvents = 20_000,
    max_window_events: _MaxWindowEvents = 0,
    holdout: _Holdout = 0.3,
    min_gate_points: _MinGatePoints = 20,
    from_beginning: _FromBeginning = False,
    text_init: _TextInit = True,
    frozen_version: _FrozenVersion = None,
    effects_window: _EffectsWindow = 1800.0,
    metrics_port: _MetricsPort = 0,
    threads: _Threads = 1,
    nice: _Nice = 10,
    loglevel: _LogLevel = "info",
) -> None:
    """Fine-tune the serving model on the live stream; promote only versions that pass the gate."""
    lower_priority(nice)  # first, before any thread exists (threads inherit it)
    from contracts import Settings
    from streamrec.preflight import require_access

    settings = Settings()
    require_access(settings, "learner", kafka=True)  # before torch is imported: a refusal stops it in ~1 s
    from model.continual import ContinualConfig
    from model.gate import GateConfig
    from model.store import ModelStore
    from streams.learner.rollback import RollbackConfig
    from streams.learner.service import LearnerOptions

    options = LearnerOptions(
        every_events=every_events,
        every_seconds=every_seconds,
        min_events=min_events,
        from_beginning=from_beginning,
        text_init=text_init,
        effects_window_seconds=effects_window,
        frozen_version=frozen_version,
        restore_events=restore_events,
        max_window_events=max_window_events,
        continual=ContinualConfig(
            steps=steps, batch_size=batch_size, lr=lr, replay_fraction=replay_fraction, holdout_fraction=holdout
        ),
        gate=GateConfig(
            alpha=gate_alpha, anchor_margin=anchor_margin, min_points=min_gate_points, max_points=max_gate_points
        ),
        rollback=RollbackConfig(window_seconds=rollback_window, min_impressions=rollback_min_impressions),
    )
    _run(settings, options, ModelStore(store or settings.model_dir), metrics_port, threads, loglevel)


def _run(
    settings: Settings, options: LearnerOptions, model_store: ModelStore, metrics_port: int, threads: int, loglevel: str
) -> None:
    """Set up logging, torch threads and /metrics (if asked), then run the learner until SIGINT or SIGTERM."""
    import asyncio
    import logging
    import signal

    import torch
    from prometheus_client import CollectorRegistry, start_http_server

    from streams.learner.service import Learner

    logging.basicConfig(level=loglevel.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    torch.set_num_threads(threads)
    registry: CollectorRegistry = CollectorRegistry()
    if metrics_port:
        start_http_server(metrics_port, addr="127.0.0.1", registry=registry)
    typer.echo(f"learner: kafka={settings.kafka_bootstrap} store={model_store.root}", err=True)

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await Learner(settings, options, model_store, registry=registry).run(stop)

    asyncio.run(main())
