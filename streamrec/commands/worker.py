"""`streamrec worker`: the Faust worker (recommend + catalog agents, web endpoints)."""

from __future__ import annotations

import typer

__all__ = ["register"]


def register(app: typer.Typer) -> None:
    """Attach the `worker` command."""

    @app.command("worker")
    def worker(
        loglevel: str = typer.Option("info", help="Log level of the worker."),
        web_port: int | None = typer.Option(None, help="Web server port (default: STREAMREC_WEB_PORT)."),
    ) -> None:
        """Run a worker; more workers with the same topic prefix share the partitions."""
        import gc

        import faust

        from contracts import Settings
        from streams.app import create_app

        settings = Settings() if web_port is None else Settings(web_port=web_port)
        faust_app = create_app(settings)
        # The startup objects (Faust, torch, pydantic schemas) are never garbage: freeze them so the collector's
        # full passes stop rescanning them mid-batch, and collect young objects less often (fewer, larger passes).
        gc.collect()
        gc.freeze()
        gc.set_threshold(50_000, 20, 100)
        typer.echo(f"worker: kafka={settings.kafka_bootstrap} redis={settings.redis_url_redacted()}", err=True)
        runner = faust.Worker(faust_app, loglevel=loglevel)
        # At WARNING and above Faust's startup spinner sets the root logger to DEBUG (one spinner tick per record),
        # so every per-message debug call of aiokafka and Faust built a LogRecord: ~3 per event, for nothing.
        runner.spinner = None
        runner.execute_from_commandline()
