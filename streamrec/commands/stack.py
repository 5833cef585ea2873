"""`streamrec stack up | down | status`: the local Kafka broker and Redis for development, tests and demos."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from streamrec.stack_config import StackConfig

__all__ = ["register"]

_StateDir = Annotated[
    Path | None, typer.Option("--state-dir", help="PIDs, logs and data [default: <cache-dir>/stack].")
]
_CacheDir = Annotated[
    Path | None,
    typer.Option("--cache-dir", envvar="STREAMREC_CACHE_DIR", help="Jar cache root [default: ~/.cache/streamrec]."),
]
_KafkaPort = Annotated[int, typer.Option("--kafka-port", help="Broker port.")]
_ControllerPort = Annotated[int, typer.Option("--controller-port", help="KRaft controller port.")]
_RedisPort = Annotated[int, typer.Option("--redis-port", help="Redis port.")]
_RedisCluster = Annotated[
    bool,
    typer.Option("--redis-cluster", help="A Redis Cluster (3 masters + 3 replicas) instead of the single Redis."),
]
_Secure = Annotated[
    Path | None,
    typer.Option(
        "--secure",
        help="Secure the stack: Kafka SASL_SSL (SCRAM-SHA-512) and Redis TLS + ACL user; CA, certificates, passwords "
        "and the clients' env file (0600) go to this dir, made when missing [state dir default: <DIR>/stack].",
    ),
]
_ClusterPort = Annotated[
    int, typer.Option("--redis-cluster-port", help="First cluster node's port (the six use it and the next five).")
]


def _config(
    state_dir: Path | None,
    cache_dir: Path | None,
    kafka_port: int,
    controller_port: int,
    redis_port: int,
    prefix: str | None = None,
    *,
    redis_cluster: bool = False,
    redis_cluster_port: int = 17000,
    secure_dir: Path | None = None,
) -> StackConfig:
    from contracts.settings import Settings
    from streamrec.stack_config import StackConfig

    settings = Settings()  # fields come from STREAMREC_* env
    cache = cache_dir or Path.home() / ".cache" / "streamrec"
    default_state = secure_dir / "stack" if secure_dir is not None else cache / "stack"
    return StackConfig(
        state_dir=state_dir or default_state,
        cache_dir=cache,
        kafka_port=kafka_port,
        controller_port=controller_port,
        redis_port=redis_port,
        topic_prefix=prefix or settings.topic_prefix,
        events_partitions=settings.events_partitions,
        recommendations_partitions=settings.recommendations_partitions,
        redis_cluster=redis_cluster,
        redis_cluster_port=redis_cluster_port,
        secure_dir=secure_dir.resolve() if secure_dir is not None else None,
    )


def up(
    state_dir: _StateDir = None,
    cache_dir: _CacheDir = None,
    kafka_port: _KafkaPort = 19092,
    controller_port: _ControllerPort = 19093,
    redis_port: _RedisPort = 16379,
    prefix: Annotated[str | None, typer.Option("--prefix", help="Topic prefix [default: settings].")] = None,
    redis_cluster: _RedisCluster = False,
    redis_cluster_port: _ClusterPort = 17000,
    secure: _Secure = None,
    docker: Annotated[bool, typer.Option("--docker", help="Use `docker compose` instead of local processes.")] = False,
    compose_file: Annotated[Path, typer.Option("--compose-file", help="Compose file for --docker.")] = Path(
        "docker-compose.yml"
    ),
) -> None:
    """Start Kafka (KRaft) and Redis (or a Redis Cluster) unless running, create the topics, print `STREAMREC_*`
    lines to eval."""
    from rich.console import Console

    from contracts.errors import StreamrecError
    from streamrec.stack import LocalStack

    err = Console(stderr=True)
    cfg = _config(
        state_dir, cache_dir, kafka_port, controller_port, redis_port, prefix,
        redis_cluster=redis_cluster, redis_cluster_port=redis_cluster_port, secure_dir=secure,
    )  # fmt: skip
    if docker and (redis_cluster or secure):
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


def down(
    state_dir: _StateDir = None,
    cache_dir: _CacheDir = None,
    timeout: Annotated[float, typer.Option("--timeout", help="Seconds before SIGKILL.")] = 30.0,
    secure: _Secure = None,
) -> None:
    """Stop the processes this state dir's `up` started (by PID file), cluster nodes included."""
    from rich.console import Console

    from streamrec.stack import LocalStack

    cfg = _config(state_dir, cache_dir, 19092, 19093, 16379, secure_dir=secure)
    stopped = LocalStack(cfg).down(timeout_seconds=timeout)
    console = Console()
    for name, pid in stopped.items():
        console.print(f"{name}: " + (f"stopped pid {pid}" if pid else "was not running"))


def status(
    state_dir: _StateDir = None,
    cache_dir: _CacheDir = None,
    kafka_port: _KafkaPort = 19092,
    controller_port: _ControllerPort = 19093,
    redis_port: _RedisPort = 16379,
    redis_cluster: _RedisCluster = False,
    redis_cluster_port: _ClusterPort = 17000,
    secure: _Secure = None,
) -> None:
    """Show what runs where: PID, address, alive, listening (cluster nodes too when started)."""
    from rich.console import Console
    from rich.table import Table

    from streamrec.stack import LocalStack

    cfg = _config(
        state_dir, cache_dir, kafka_port, controller_port, redis_port,
        redis_cluster=redis_cluster, redis_cluster_port=redis_cluster_port, secure_dir=secure,
    )  # fmt: skip
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
