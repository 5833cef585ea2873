"""`streamrec learner`: the continual-learning consumer (its own process and consumer group)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import typer

from streamrec.commands.common import StoreOption
from streamrec.commands.options import Opt, from_dataclass, settings_from, with_options
from streams.learner.settings import LearnerSettings  # no torch: the options are built at import

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

    from contracts import Settings
    from model.store import ModelStore

__all__ = ["OPTIONS", "learner", "lower_priority", "register"]

# The command's tunables; an entry with a `field` takes its type and default from `LearnerSettings`.
OPTIONS = from_dataclass(
    LearnerSettings(),
    {
        "every_events": Opt("Run a cycle when this many events are pending ...", field="every_events", min=1),
        "every_seconds": Opt("... or this many seconds after the last cycle.", field="every_seconds", min=0.1),
        "min_events": Opt("Events a timed cycle needs at least.", field="min_events", min=1),
        "steps": Opt("Fine-tuning steps per cycle.", field="continual.steps", min=1),
        "batch_size": Opt("Sequences per step.", field="continual.batch_size", min=1),
        "lr": Opt("AdamW learning rate.", field="continual.lr"),
        "replay_fraction": Opt("Share of each batch from replay.", field="continual.replay_fraction", min=0, max=1),
        "gate_alpha": Opt("Gate: refuse a significantly worse candidate.", field="gate.alpha", min=1e-6, max=0.5),
        "anchor_margin": Opt("Gate: refuse NDCG@10 below the anchor's by more.", field="gate.anchor_margin", min=0),
        "max_gate_points": Opt("Gate: newest next-new held-back targets scored.", field="gate.max_points", min=1),
        "rollback_window": Opt(
            "Seconds a new version's online effects are watched.", field="rollback.window_seconds", min=0
        ),
        "rollback_min_impressions": Opt(
            "Impressions per version before a rollback.", field="rollback.min_impressions", min=1
        ),
        "restore_events": Opt("Events re-read per partition on restart (histories).", field="restore_events", min=0),
        "max_window_events": Opt(
            "Behind the stream: train on the newest this many pending events (0 = all); the older "
            "ones update histories and the replay reservoir only.",
            field="max_window_events",
            min=0,
        ),
        "holdout": Opt(
            "Newest share of a cycle held back for the gate.", field="continual.holdout_fraction", min=0.05, max=0.9
        ),
        "min_gate_points": Opt("Held-back targets needed for a decision.", field="gate.min_points", min=1),
        "from_beginning": Opt("A new consumer group starts at the earliest offset.", field="from_beginning"),
        "text_init": Opt("MiniLM init for new titled items.", field="text_init", flags=("--text-init/--no-text-init",)),
        "frozen_version": Opt(
            "Reference version scored on every window for drift reports (default: the starting one).",
            field="frozen_version",
        ),
        "effects_window": Opt("Seconds after a recommendation a hit counts.", field="effects_window_seconds", min=1),
        "metrics_port": Opt("Serve Prometheus /metrics on this port (0 = off).", int, 0, min=0),
        "threads": Opt("Torch CPU threads (leave the other cores to the workers).", int, 1, min=1),
        "nice": Opt("Raise the nice value by this much (workers keep priority).", int, 10, min=0, max=19),
        "loglevel": Opt("Log level.", str, "info"),
    },
)


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


@with_options(OPTIONS)
def learner(store: StoreOption = None, **values: Any) -> None:
    """Fine-tune the serving model on the live stream; promote only versions that pass the gate."""
    lower_priority(values["nice"])  # first, before any thread exists (threads inherit it)
    from contracts import Settings
    from streamrec.preflight import require_access

    settings = Settings()
    require_access(settings, "learner", kafka=True)  # before torch is imported: a refusal stops it in ~1 s
    from model.store import ModelStore

    options = settings_from(LearnerSettings(), OPTIONS, values)
    _run(settings, options, ModelStore(store or settings.model_dir), values)


def _run(settings: Settings, options: LearnerSettings, model_store: ModelStore, values: dict[str, Any]) -> None:
    """Set up logging, torch threads and /metrics (if asked), then run the learner until SIGINT or SIGTERM."""
    import asyncio
    import logging
    import signal

    import torch
    from prometheus_client import CollectorRegistry, start_http_server

    from streams.learner.service import Learner

    metrics_port: int = values["metrics_port"]
    logging.basicConfig(level=str(values["loglevel"]).upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    torch.set_num_threads(values["threads"])
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
