"""Pure parts of the local stack: its configuration, rendered config files, PID files and address parsing.

Nothing here starts a process or opens a connection, so all of it is unit-tested without services.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from contracts.errors import ConfigError

__all__ = [
    "KAFKA_VERSION",
    "StackConfig",
    "is_alive",
    "parse_host_port",
    "port_open",
    "read_pid",
    "remove_pid",
    "render_redis_conf",
    "render_server_properties",
    "write_pid",
]

# Kafka 4.1.2 (KRaft only). aiokafka 0.14 (Faust's driver) was checked against it: admin create/describe/delete
# topics, idempotent produce, group consume and offset commit all work, and so does a faust.App agent.
# Keep equal to streamrec/kafka/pom.xml and the apache/kafka image tag in docker-compose.yml.
KAFKA_VERSION = "4.1.2"


def _default_cache() -> Path:
    return Path.home() / ".cache" / "streamrec"


@dataclass(frozen=True)
class StackConfig:
    """Where and how the local stack runs.

    Attributes:
        state_dir: Holds `pids/`, `logs/`, `kafka-data/`, `redis-data/` (default `~/.cache/streamrec/stack`).
        cache_dir: Root of the jar cache; jars go to `<cache_dir>/kafka/<version>/libs` (default `~/.cache/streamrec`).
        host: Loopback address every service binds to.
        kafka_port: Broker (PLAINTEXT) port, default 19092.
        controller_port: KRaft controller port, default 19093.
        redis_port: Redis port, default 16379.
        kafka_version: Apache Kafka version resolved from Maven Central.
        kafka_heap: JVM `-Xmx` for the broker; small, the machine is shared.
        topic_prefix: Prefix of the topics `up` creates.
        events_partitions: Partitions of `<prefix>.events`.
        recommendations_partitions: Partitions of `<prefix>.recommendations`.
        start_timeout_seconds: How long `up` waits for each service to answer.
        redis_cluster: Start a Redis Cluster (3 masters + 3 replicas, `streamrec.redis_cluster`) instead of the
            single Redis.
        redis_cluster_port: The cluster's first node port; the six nodes use this port and the five above it.
        secure_dir: Secure the stack (`streamrec.stack_security`): the broker's client listener is SASL_SSL
            (SCRAM-SHA-512), Redis speaks TLS only with an ACL user; certificates, passwords and the clients' env
            file live in this dir. None (default): PLAINTEXT Kafka, Redis without AUTH.
    """

    state_dir: Path = field(default_factory=lambda: _default_cache() / "stack")
    cache_dir: Path = field(default_factory=_default_cache)
    host: str = "127.0.0.1"
    kafka_port: int = 19092
    controller_port: int = 19093
    redis_port: int = 16379
    kafka_version: str = KAFKA_VERSION
    kafka_heap: str = "512m"
    topic_prefix: str = "streamrec"
    events_partitions: int = 8
    recommendations_partitions: int = 8
    start_timeout_seconds: float = 90.0
    redis_cluster: bool = False
    redis_cluster_port: int = 17000
    secure_dir: Path | None = None

    def __post_init__(self) -> None:
        """Reject port clashes early, with a clear message."""
        ports = [self.kafka_port, self.controller_port, self.redis_port]
        if len(set(ports)) != len(ports):
            msg = f"stack ports must differ, got kafka={ports[0]} controller={ports[1]} redis={ports[2]}"
            raise ConfigError(msg)
        for port in ports:
            if not 1 <= port <= 65535:
                msg = f"port out of range: {port}"
                raise ConfigError(msg)

    @property
    def libs_dir(self) -> Path:
        """Cached Kafka jars, shared by every clone and state dir."""
        return self.cache_dir / "kafka" / self.kafka_version / "libs"

    @property
    def pid_dir(self) -> Path:
        """One `<service>.pid` per process the stack started."""
        return self.state_dir / "pids"

    @property
    def log_dir(self) -> Path:
        """`kafka.log`, `redis.log`, `kafka-format.log`, `maven.log`."""
        return self.state_dir / "logs"

    @property
    def kafka_data_dir(self) -> Path:
        """Kafka `log.dirs` (KRaft metadata + topic data)."""
        return self.state_dir / "kafka-data"

    @property
    def redis_data_dir(self) -> Path:
        """Redis working dir (AOF files)."""
        return self.state_dir / "redis-data"

    @property
    def bootstrap(self) -> str:
        """Kafka bootstrap servers, `host:port`."""
        return f"{self.host}:{self.kafka_port}"

    @property
    def redis_url(self) -> str:
        """Redis URL on DB 0."""
        return f"redis://{self.host}:{self.redis_port}/0"


def render_server_properties(cfg: StackConfig, overrides: Mapping[str, str] | None = None) -> str:
    """The broker's `server.properties`: one combined broker+controller KRaft node on loopback.

    `overrides` replace or add entries (the secured stack's listeners, `streamrec.stack_security`).
    """
    lines = {
        "process.roles": "broker,controller",
        "node.id": "1",
        "controller.quorum.bootstrap.servers": f"{cfg.host}:{cfg.controller_port}",
        "listeners": f"PLAINTEXT://{cfg.host}:{cfg.kafka_port},CONTROLLER://{cfg.host}:{cfg.controller_port}",
        "advertised.listeners": f"PLAINTEXT://{cfg.host}:{cfg.kafka_port}",
        "controller.listener.names": "CONTROLLER",
        "inter.broker.listener.name": "PLAINTEXT",
        "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
        "log.dirs": str(cfg.kafka_data_dir),
        "num.partitions": "1",
        # A single node: every internal topic has exactly one replica.
        "offsets.topic.replication.factor": "1",
        "transaction.state.log.replication.factor": "1",
        "transaction.state.log.min.isr": "1",
        "share.coordinator.state.topic.replication.factor": "1",
        "share.coordinator.state.topic.min.isr": "1",
        # Tests and demos start consumers one after the other; do not wait 3 s for more members.
        "group.initial.rebalance.delay.ms": "0",
        "auto.create.topics.enable": "true",
        # Fewer background threads: the machine has two cores.
        "num.network.threads": "2",
        "num.io.threads": "2",
        "background.threads": "2",
        "log.cleaner.threads": "1",
    }
    return "".join(f"{key}={value}\n" for key, value in (lines | dict(overrides or {})).items())


def render_redis_conf(
    cfg: StackConfig, pid_file: Path, log_file: Path, overrides: Mapping[str, str] | None = None
) -> str:
    """`redis.conf` for a daemonised, loopback-only Redis with AOF persistence in its own dir.

    `overrides` replace or add directives (the secured stack's TLS and ACL file, `streamrec.stack_security`).
    """
    lines = {
        "bind": cfg.host,
        "port": str(cfg.redis_port),
        "protected-mode": "yes",
        "daemonize": "yes",
        "pidfile": str(pid_file),
        "logfile": str(log_file),
        "dir": str(cfg.redis_data_dir),
        "appendonly": "yes",
        "appendfsync": "everysec",
        # No RDB snapshots: AOF alone is the persistence, and forks on a 2-core box are costly.
        "save": '""',
        "databases": "16",
    }
    return "".join(f"{key} {value}\n" for key, value in (lines | dict(overrides or {})).items())


def parse_host_port(address: str, default_port: int | None = None) -> tuple[str, int]:
    """Split `host:port` (also `[v6]:port`, `kafka://host:port`, `redis://host:port/0`) into its parts.

    Raises:
        ConfigError: No port and no default, or a port that is not a number in 1..65535.
    """
    rest = address.strip().split("://", 1)[-1].split("/", 1)[0].rsplit("@", 1)[-1]
    if rest.startswith("["):
        host, _, tail = rest[1:].partition("]")
        port_text = tail.removeprefix(":")
    elif rest.count(":") == 1:
        host, _, port_text = rest.partition(":")
    else:  # no port, or a bare IPv6 address
        host, port_text = rest, ""
    if not port_text:
        if default_port is None:
            msg = f"no port in address {address!r}"
            raise ConfigError(msg)
        return host, default_port
    if not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
        msg = f"bad port in address {address!r}"
        raise ConfigError(msg)
    return host, int(port_text)


def write_pid(path: Path, pid: int) -> None:
    """Write `pid` atomically (a reader never sees a half-written file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(f"{pid}\n", encoding="ascii")
    tmp.replace(path)


def read_pid(path: Path) -> int | None:
    """The PID in `path`, or None when the file is missing, empty or not a positive number."""
    try:
        text = path.read_text(encoding="ascii").strip()
    except (FileNotFoundError, UnicodeDecodeError):
        return None
    return int(text) if text.isdigit() and int(text) > 0 else None


def remove_pid(path: Path) -> None:
    """Delete a PID file if present."""
    path.unlink(missing_ok=True)


def is_alive(pid: int | None) -> bool:
    """Whether a process with this PID exists (zombies count as dead)."""
    if pid is None:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    stat = Path(f"/proc/{pid}/stat")
    if stat.exists():
        # Field 3 is the state; `Z` is a zombie that only waits to be reaped.
        return stat.read_text(encoding="ascii", errors="replace").rsplit(")", 1)[-1].split()[0] != "Z"
    return True


def port_open(host: str, port: int, timeout: float = 0.5) -> bool:
    """Whether something accepts TCP connections on `host:port`."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False
