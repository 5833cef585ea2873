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
        import asyncio
        import gc

        from contracts import ConfigError, Settings
        from streamrec.preflight import require_access

        settings = Settings() if web_port is None else Settings(web_port=web_port)
        # Before Faust and torch are imported: a refused password or certificate stops the worker in about a second.
        require_access(settings, "worker", kafka=True, redis=True)
        import faust

        from streams.app import create_app

        try:
            asyncio.run(_check_redis(settings.redis_url.get_secret_value(), cluster=settings.redis_cluster))
        except ConfigError as exc:
            typer.echo(f"worker: {exc}", err=True)
            raise typer.Exit(2) from exc
        if settings.scorer_threads:
            import torch

            torch.set_num_threads(settings.scorer_threads)
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


async def _check_redis(url: str, *, cluster: bool) -> None:
    """Refuse an evicting Redis (any master of a cluster) before anything is consumed (a Redis that is down is
    waited for later, as usual)."""
    from redis.exceptions import ConnectionError as RedisConnectionError
    from redis.exceptions import RedisClusterException

    from feature_store import redis_client, require_noeviction

    client = redis_client(url, cluster=cluster)
    try:
        await require_noeviction(client)
    except (RedisConnectionError, RedisClusterException, TimeoutError):
        pass  # not reachable yet: the worker retries its batches until it is, and checks nothing more then
    finally:
        await client.aclose()
