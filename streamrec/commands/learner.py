"""`streamrec learner`: the continual-learning consumer (its own process and consumer group)."""

from __future__ import annotations

import typer

__all__ = ["lower_priority", "register"]


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

    @app.command("learner")
    def learner(
        store: str | None = typer.Option(None, help="Model store dir or file:// URI (default: STREAMREC_MODEL_DIR)."),
        every_events: int = typer.Option(500, min=1, help="Run a cycle when this many events are pending ..."),
        every_seconds: float = typer.Option(30.0, min=0.1, help="... or this many seconds after the last cycle."),
        min_events: int = typer.Option(50, min=1, help="Events a timed cycle needs at least."),
        steps: int = typer.Option(30, min=1, help="Fine-tuning steps per cycle."),
        batch_size: int = typer.Option(64, min=1, help="Sequences per step."),
        lr: float = typer.Option(1e-3, help="AdamW learning rate."),
        replay_fraction: float = typer.Option(0.5, min=0.0, max=1.0, help="Share of each batch from replay."),
        gate_alpha: float = typer.Option(0.05, min=1e-6, max=0.5, help="Gate: refuse a significantly worse candidate."),
        anchor_margin: float = typer.Option(0.02, min=0.0, help="Gate: refuse NDCG@10 below the anchor's by more."),
        max_gate_points: int = typer.Option(1000, min=1, help="Gate: newest next-new held-back targets scored."),
        rollback_window: float = typer.Option(
            1800.0, min=0.0, help="Seconds a new version's online effects are watched."
        ),
        rollback_min_impressions: int = typer.Option(200, min=1, help="Impressions per version before a rollback."),
        restore_events: int = typer.Option(20_000, min=0, help="Events re-read per partition on restart (histories)."),
        max_window_events: int = typer.Option(
            0,
            min=0,
            help="Behind the stream: train on the newest this many pending events (0 = all); the older "
            "ones update histories and the replay reservoir only.",
        ),
        holdout: float = typer.Option(0.3, min=0.05, max=0.9, help="Newest share of a cycle held back for the gate."),
        min_gate_points: int = typer.Option(20, min=1, help="Held-back targets needed for a decision."),
        from_beginning: bool = typer.Option(False, help="A new consumer group starts at the earliest offset."),
        text_init: bool = typer.Option(True, "--text-init/--no-text-init", help="MiniLM init for new titled items."),
        frozen_version: str | None = typer.Option(
            None, help="Reference version scored on every window for drift reports (default: the starting one)."
        ),
        effects_window: float = typer.Option(1800.0, min=1.0, help="Seconds after a recommendation a hit counts."),
        metrics_port: int = typer.Option(0, min=0, help="Serve Prometheus /metrics on this port (0 = off)."),
        threads: int = typer.Option(1, min=1, help="Torch CPU threads (leave the other cores to the workers)."),
        nice: int = typer.Option(
            10, min=0, max=19, help="Raise the learner's nice value by this much (the workers keep priority)."
        ),
        loglevel: str = typer.Option("info", help="Log level."),
    ) -> None:
        """Fine-tune the serving model on the live stream; promote only versions that pass the gate."""
        import asyncio
        import logging
        import signal

        from contracts import Settings
        from streamrec.preflight import require_access

        lower_priority(nice)  # first, before any thread exists (threads inherit it)
        settings = Settings()
        require_access(settings, "learner", kafka=True)  # before torch is imported: a refusal stops it in ~1 s
        import torch
        from prometheus_client import CollectorRegistry, start_http_server

        from model.continual import ContinualConfig
        from model.gate import GateConfig
        from model.store import ModelStore
        from streams.learner.rollback import RollbackConfig
        from streams.learner.service import Learner, LearnerOptions

        logging.basicConfig(level=loglevel.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
        torch.set_num_threads(threads)
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
        model_store = ModelStore(store or settings.model_dir)
        registry = CollectorRegistry()
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
