"""`streamrec stack up | down | status`: the local Kafka broker and Redis for development, tests and demos."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from streamrec.commands.options import Opt, with_options

if TYPE_CHECKING:
    from streamrec.stack_config import StackConfig

__all__ = ["register"]

# The options shared by `up` and `status` (`down` takes the first two and `secure`).
_LAYOUT = {
    "state_dir": Opt("PIDs, logs and data [default: <cache-dir>/stack].", Path | None),
    "cache_dir": Opt("Jar cache root [default: ~/.cache/streamrec].", Path | None, envvar="STREAMREC_CACHE_DIR"),
    "kafka_port": Opt("Broker port.", int, 19092),
    "controller_port": Opt("KRaft controller port.", int, 19093),
    "redis_port": Opt("Redis port.", int, 16379),
    "redis_cluster": Opt(
        "A Redis Cluster (3 masters + 3 replicas) instead of the single Redis.", bool, False, flags=("--redis-cluster",)
    ),
    "redis_cluster_port": Opt("First cluster node's port (the six use it and the next five).", int, 17000),
    "secure": Opt(
        "Secure the stack: Kafka SASL_SSL (SCRAM-SHA-512) and Redis TLS + ACL user; CA, certificates, passwords "
        "and the clients' env file (0600) go to this dir, made when missing [state dir default: <DIR>/stack].",
        Path | None,
    ),
}
_DOWN = {name: _LAYOUT[name] for name in ("state_dir", "cache_dir", "secure")}


def _config(values: Mapping[str, Any], prefix: str | None = None) -> StackConfig:
    """The stack's layout from the command's options (those it lacks: their defaults)."""
    from contracts.settings import Settings
    from streamrec.stack_config import StackConfig

    v = {name: opt.default for name, opt in _LAYOUT.items()} | dict(values)
    settings = Settings()  # fields come from STREAMREC_* env
    cache = v["cache_dir"] or Path.home() / ".cache" / "streamrec"
    default_state = v["secure"] / "stack" if v["secure"] is not None else cache / "stack"
    return StackConfig(
        state_dir=v["state_dir"] or default_state,
        cache_dir=cache,
        kafka_port=v["kafka_port"],
        controller_port=v["controller_port"],
        redis_port=v["redis_port"],
        topic_prefix=prefix or settings.topic_prefix,
        events_partitions=settings.events_partitions,
        recommendations_partitions=settings.recommendations_partitions,
        redis_cluster=v["redis_cluster"],
        redis_cluster_port=v["redis_cluster_port"],
        secure_dir=v["secure"].resolve() if v["secure"] is not None else None,
    )


@with_options(_LAYOUT)
def up(
    prefix: Annotated[str | None, typer.Option("--prefix", help="Topic prefix [default: settings].")] = None,
    docker: Annotated[bool, typer.Option("--docker", help="Use `docker compose` instead of local processes.")] = False,
    compose_file: Annotated[Path, typer.Option("--compose-file", help="Compose file for --docker.")] = Path(
        "docker-compose.yml"
    ),
    **values: Any,
) -> None:
    """Start Kafka (KRaft) and Redis (or a Redis Cluster) unless running, create the topics, print `STREAMREC_*`
    lines to eval."""
    from rich.console import Console

    from contracts.errors import StreamrecError
    from streamrec.stack import LocalStack

    err = Console(stderr=True)
    cfg = _config(values, prefix)
    if docker and (values["redis_cluster"] or values["secure"]):
        err.print("[red]stack up failed:[/red] --redis-cluster and --secure run local processes; drop --docker")
        raise typer.Exit(1)
    try:
        stack = LocalStack(cfg, log=lambda msg: err.print(f"[dim]{msg}[/dim]"))
        info = stack.up_docker(compose_file) if docker else stack.up()
    except StreamrecError as exc:
        err.print(f"[red]stack up failed:[/red] {exc}")
        raise typer.Exit(1) from exc
    # Plain stdout, so `eval "$(streamrec stack up)"` works.
    typer.echo("\n".join(info.env_lines()))


@with_options(_DOWN)
def down(
    timeout: Annotated[float, typer.Option("--timeout", help="Seconds before SIGKILL.")] = 30.0, **values: Any
) -> None:
    """Stop the processes this state dir's `up` started (by PID file), cluster nodes included."""
    from rich.console import Console

    from streamrec.stack import LocalStack

    stopped = LocalStack(_config(values)).down(timeout_seconds=timeout)
    console = Console()
    for name, pid in stopped.items():
        console.print(f"{name}: " + (f"stopped pid {pid}" if pid else "was not running"))


@with_options(_LAYOUT)
def status(**values: Any) -> None:
    """Show what runs where: PID, address, alive, listening (cluster nodes too when started)."""
    from rich.console import Console
    from rich.table import Table

    from streamrec.stack import LocalStack

    cfg = _config(values)
    table = Table("service", "pid", "address", "alive", "listening", title=f"stack in {cfg.state_dir}")
    rows = LocalStack(cfg).status()
    for row in rows:
        table.add_row(row.name, str(row.pid or "-"), row.address, _yes(row.alive), _yes(row.listening))
    Console().print(table)
    if not all(r.alive and r.listening for r in rows):
        raise typer.Exit(1)


def _yes(flag: bool) -> str:
    return "[green]yes[/green]" if flag else "[red]no[/red]"


def register(app: typer.Typer) -> None:
    """Attach the `stack` group to the `streamrec` app."""
    group = typer.Typer(no_args_is_help=True, help="Local Kafka (KRaft) + Redis for development and tests.")
    group.command("up")(up)
    group.command("down")(down)
    group.command("status")(status)
    app.add_typer(group, name="stack")
