"""The local stack: a real Kafka broker (KRaft, Apache's jars) and a real Redis, as one Python API.

`LocalStack(config).up()` is what `streamrec stack up`, the integration tests, the demo and the benchmarks call:

    stack = LocalStack(StackConfig(state_dir=Path("/tmp/mystack"), kafka_port=29092))
    info = stack.up()        # idempotent: a running stack is reused, missing topics are created
    info.bootstrap, info.redis_url
    stack.down()             # stops exactly the processes whose PID files it wrote

Layout of `state_dir`: `pids/{kafka,redis}.pid`, `logs/*.log`, `kafka-data/`, `redis-data/`, `server.properties`,
`redis.conf`. Jars are cached once per version under `<cache_dir>/kafka/<version>/libs`. With
`StackConfig(redis_cluster=True)` a Redis Cluster (`streamrec.redis_cluster`: `pids/redis-<port>.pid`,
`redis-cluster/<port>/`) runs instead of the single Redis, and `StackInfo` says so (`STREAMREC_REDIS_CLUSTER=true`).
With `StackConfig(secure_dir=DIR)` the broker listens with SASL_SSL (SCRAM-SHA-512) and Redis with TLS and an ACL
user (`streamrec.stack_security`); `StackInfo.env_file` names the clients' settings (secret, mode 0600).
"""

from __future__ import annotations

import fcntl
import shlex
import shutil
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from contracts.errors import ConfigError, ServiceUnavailable
from contracts.topics import TopicNames, TopicSpec
from contracts.topics import topic_specs as contract_topic_specs
from streamrec.redis_cluster import ClusterConfig, RedisClusterProcs
from streamrec.stack_config import StackConfig, is_alive, port_open, read_pid, write_pid
from streamrec.stack_procs import (
    ensure_kafka_jars,
    ensure_kafka_storage,
    log_tail,
    owns_process,
    start_kafka,
    start_redis,
    stop_process,
)
from streamrec.stack_security import StackSecurity
from streamrec.stack_topics import ensure_topics, kafka_answers, redis_answers, run_sync

__all__ = ["LocalStack", "ServiceStatus", "StackInfo", "topic_specs"]


@dataclass(frozen=True)
class StackInfo:
    """What `up` returns: where to connect, and which processes serve it."""

    bootstrap: str
    redis_url: str
    kafka_pid: int | None
    redis_pid: int | None
    created_topics: tuple[str, ...]
    redis_cluster: bool = False  # `redis_url` names a node of a Redis Cluster
    env_file: Path | None = None  # the secured stack's client settings, passwords included (mode 0600)

    def env_lines(self) -> list[str]:
        """`STREAMREC_*=...` lines a shell can `eval`; for a secured stack a line sourcing its env file instead
        (the passwords stay in that file, never on stdout)."""
        if self.env_file is not None:
            return [f"set -a; . {shlex.quote(str(self.env_file))}; set +a"]
        lines = [f"STREAMREC_KAFKA_BOOTSTRAP={self.bootstrap}", f"STREAMREC_REDIS_URL={self.redis_url}"]
        return [*lines, "STREAMREC_REDIS_CLUSTER=true"] if self.redis_cluster else lines


@dataclass(frozen=True)
class ServiceStatus:
    """One service as `status` sees it."""

    name: str
    pid: int | None
    address: str
    alive: bool
    listening: bool


def topic_specs(cfg: StackConfig) -> list[TopicSpec]:
    """The five topics under `cfg.topic_prefix` (`contracts.topics.TOPICS`)."""
    return contract_topic_specs(TopicNames(cfg.topic_prefix), cfg.events_partitions, cfg.recommendations_partitions)


class LocalStack:
    """Start, inspect and stop the local Kafka + Redis described by a `StackConfig`."""

    def __init__(self, config: StackConfig | None = None, *, log: Callable[[str], None] | None = None) -> None:
        """Create the handle; nothing starts until `up()`.

        Args:
            config: Ports, directories and versions; defaults to `StackConfig()`.
            log: Receives one-line progress messages (the CLI prints them); silent by default.
        """
        self.config = config or StackConfig()
        self._log = log or (lambda _msg: None)
        self._children: list[subprocess.Popen[bytes]] = []
        secure_dir = self.config.secure_dir
        self.security = StackSecurity(secure_dir, self.config) if secure_dir is not None else None
        if self.security is not None and self.config.redis_cluster:
            msg = "`stack up --secure` starts a single Redis with TLS; drop --redis-cluster"
            raise ConfigError(msg)
        self.cluster = RedisClusterProcs(
            ClusterConfig(
                state_dir=self.config.state_dir, host=self.config.host, base_port=self.config.redis_cluster_port
            )
        )

    @property
    def kafka_pid_file(self) -> Path:
        """PID file of the broker."""
        return self.config.pid_dir / "kafka.pid"

    @property
    def redis_pid_file(self) -> Path:
        """PID file of Redis (written by redis-server itself)."""
        return self.config.pid_dir / "redis.pid"

    @property
    def _kafka_marker(self) -> str:
        # The broker's command line names this state dir's server.properties: it identifies our broker.
        return str(self.config.state_dir / "server.properties")

    @property
    def _redis_marker(self) -> str:
        # redis-server rewrites its process title to `redis-server host:port`; the PID file is per state dir,
        # so the program name suffices to guard against a recycled PID (and `down` needs no port).
        return "redis-server"

    def up(self) -> StackInfo:
        """Start whatever is not running, wait until both answer, create missing topics.

        Raises:
            ServiceUnavailable: A service did not come up in time (the message names its log file).
            ConfigError: A port is taken by a process this stack did not start, or a tool is missing.
        """
        cfg = self.config
        for sub in (cfg.pid_dir, cfg.log_dir):
            sub.mkdir(parents=True, exist_ok=True)
        # Several test sessions may call `up` at once: one starts the services, the others then find them running.
        with (cfg.state_dir / "up.lock").open("w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if self.security is not None:
                self.security.prepare()
                where = self.security.env_file
                self._log(f"secured: SASL_SSL (SCRAM-SHA-512), Redis TLS + ACL; client settings in {where}")
            if cfg.redis_cluster:
                self._log(f"redis cluster (3 masters + 3 replicas) on {cfg.host}:{cfg.redis_cluster_port}..")
                self._log(f"redis cluster ready in {self.cluster.up():.1f} s")
            else:
                self._up_redis()
            self._up_kafka()
            timeout = cfg.start_timeout_seconds
            specs = topic_specs(cfg)
            created = run_sync(ensure_topics(cfg.bootstrap, specs, timeout_seconds=timeout, security=self.kafka_kwargs))
        if created:
            self._log(f"created topics: {', '.join(created)}")
        if cfg.redis_cluster:
            return StackInfo(cfg.bootstrap, self.cluster.url, self._pid("kafka"), None, tuple(created), True)
        env_file = self.security.env_file if self.security is not None else None
        pids = (self._pid("kafka"), self._pid("redis"))
        return StackInfo(cfg.bootstrap, self.redis_url, *pids, tuple(created), env_file=env_file)

    @property
    def redis_url(self) -> str:
        """The URL clients reach this stack's single Redis at (for a secured stack: a secret, never log it)."""
        return self.security.redis_url() if self.security is not None else self.config.redis_url

    @property
    def kafka_kwargs(self) -> dict[str, Any]:
        """aiokafka's security keyword arguments for this stack's broker (empty for PLAINTEXT)."""
        return self.security.kafka_security().aiokafka_kwargs() if self.security is not None else {}

    def up_docker(self, compose_file: Path) -> StackInfo:
        """`docker compose up -d kafka redis` with `compose_file`, then wait and create topics like `up`.

        The compose file publishes the broker on `127.0.0.1:19092` and Redis on `127.0.0.1:16379`.

        Raises:
            ConfigError: No Docker engine answers, or the compose file is missing.
            ServiceUnavailable: The containers did not answer in time.
        """
        cfg = self.config
        if not docker_available():
            msg = "`stack up --docker` needs a running Docker engine (`docker info` failed); use `stack up` without it"
            raise ConfigError(msg)
        if not compose_file.is_file():
            msg = f"compose file not found: {compose_file}"
            raise ConfigError(msg)
        cmd = ["docker", "compose", "-f", str(compose_file), "up", "-d", "kafka", "redis"]
        if subprocess.run(cmd, check=False, stdin=subprocess.DEVNULL).returncode != 0:
            msg = f"`{' '.join(cmd)}` failed"
            raise ServiceUnavailable(msg)
        hint = Path(f"(docker compose -f {compose_file} logs)")
        self._wait("redis", lambda: redis_answers(cfg.redis_url), hint)
        self._wait("kafka-docker", lambda: kafka_answers(cfg.bootstrap), hint)
        created = run_sync(ensure_topics(cfg.bootstrap, topic_specs(cfg), timeout_seconds=cfg.start_timeout_seconds))
        return StackInfo(cfg.bootstrap, cfg.redis_url, None, None, tuple(created))

    def down(self, timeout_seconds: float = 30.0) -> dict[str, int | None]:
        """Stop the broker, Redis and cluster nodes this state dir started (SIGTERM, SIGKILL after the timeout).

        Returns:
            Service name → PID that was stopped (None when it was not running); cluster nodes as `redis-<port>`.
        """
        stopped = {service: self.stop(service, timeout_seconds) for service in ("kafka", "redis")}
        stopped |= {f"redis-{port}": pid for port, pid in self.cluster.down(timeout_seconds).items()}
        return stopped

    def stop(self, service: str, timeout_seconds: float = 30.0) -> int | None:
        """Stop one service ("kafka" or "redis") this state dir started; `up` starts it again (fault tests)."""
        if service == "kafka":
            pid = stop_process(self.kafka_pid_file, self._kafka_marker, timeout_seconds)
            for child in self._children:
                if child.poll() is None:
                    child.wait(timeout=timeout_seconds)
            self._children.clear()
            return pid
        return stop_process(self.redis_pid_file, self._redis_marker, timeout_seconds)

    def status(self) -> list[ServiceStatus]:
        """PID, address, liveness and listening state of each service."""
        cfg = self.config
        rows = []
        ports = [("kafka", cfg.kafka_port), ("kafka-controller", cfg.controller_port)]
        if not cfg.redis_cluster:
            ports.append(("redis", cfg.redis_port))
        for name, port in ports:
            pid = self._pid(name.split("-")[0])
            rows.append(ServiceStatus(name, pid, f"{cfg.host}:{port}", pid is not None, port_open(cfg.host, port)))
        if cfg.redis_cluster or self.cluster.started():
            for node in self.cluster.status():
                address = f"{cfg.host}:{node.port}"
                rows.append(
                    ServiceStatus(f"redis-cluster {node.role}", node.pid, address, node.pid is not None, node.listening)
                )
        return rows

    def _pid(self, service: str) -> int | None:
        """The PID of a running service we started, else None."""
        if service == "kafka":
            pid_file, marker = self.kafka_pid_file, self._kafka_marker
        else:
            pid_file, marker = self.redis_pid_file, self._redis_marker
        pid = read_pid(pid_file)
        return pid if is_alive(pid) and pid is not None and owns_process(pid, marker) else None

    def _up_redis(self) -> None:
        cfg = self.config
        if self._pid("redis") is None:
            self.redis_pid_file.unlink(missing_ok=True)
            self._port_must_be_free(cfg.redis_port, "redis")
            self._log(f"starting redis on {cfg.host}:{cfg.redis_port}")
            start_redis(cfg, self.redis_pid_file, self.security.redis_conf() if self.security is not None else None)
        self._wait("redis", lambda: redis_answers(self.redis_url), cfg.log_dir / "redis.log")

    def _up_kafka(self) -> None:
        cfg = self.config
        gone: Callable[[], str | None] = self._kafka_gone
        if self._pid("kafka") is None:
            self.kafka_pid_file.unlink(missing_ok=True)
            for port in (cfg.kafka_port, cfg.controller_port):
                self._port_must_be_free(port, "kafka")
            started = time.monotonic()
            if ensure_kafka_jars(cfg):
                self._log(f"resolved Kafka {cfg.kafka_version} jars in {time.monotonic() - started:.1f} s")
            if self.security is not None:
                props = ensure_kafka_storage(cfg, self.security.kafka_properties(), self.security.scram_format_args())
            else:
                props = ensure_kafka_storage(cfg)
            self._log(f"starting Kafka {cfg.kafka_version} on {cfg.bootstrap}")
            child = start_kafka(cfg, props)
            self._children.append(child)
            write_pid(self.kafka_pid_file, child.pid)
            # Ask our own child, not /proc: right after exec its command line can still read empty for a while
            # (the kernel fills it in after the parent resumes), which looked like a dead broker under load.
            gone = partial(_exit_reason, child)
        security = self.kafka_kwargs
        self._wait("kafka", lambda: kafka_answers(cfg.bootstrap, security=security), cfg.log_dir / "kafka.log", gone)

    def _kafka_gone(self) -> str | None:
        # A broker started by an earlier `up`: gone when its PID no longer runs our command line.
        return None if self._pid("kafka") is not None else "is no longer running"

    def _port_must_be_free(self, port: int, service: str) -> None:
        if port_open(self.config.host, port):
            msg = (
                f"port {self.config.host}:{port} is in use by a process this stack did not start; "
                f"stop it or choose another {service} port (state dir {self.config.state_dir})"
            )
            raise ConfigError(msg)

    def _wait(
        self, service: str, answers: Callable[[], bool], log: Path, gone: Callable[[], str | None] | None = None
    ) -> None:
        """Poll `answers` until the start timeout; stop early when `gone` says how the process ended."""
        deadline = time.monotonic() + self.config.start_timeout_seconds
        while time.monotonic() < deadline:
            if answers():
                return
            ended = gone() if gone is not None else None
            if ended is not None:
                msg = f"{service} {ended} before it answered; see {log}:\n{log_tail(log)}"
                raise ServiceUnavailable(msg)
            time.sleep(0.5)
        msg = f"{service} did not answer within {self.config.start_timeout_seconds:.0f} s; see {log}:\n{log_tail(log)}"
        raise ServiceUnavailable(msg)


def _exit_reason(child: subprocess.Popen[bytes]) -> str | None:
    """How a child we started ended, or None while it runs."""
    return None if child.poll() is None else f"exited with code {child.returncode}"


def docker_available() -> bool:
    """Whether a Docker engine answers `docker info`."""
    if shutil.which("docker") is None:
        return False
    done = subprocess.run(["docker", "info"], capture_output=True, check=False, stdin=subprocess.DEVNULL)
    return done.returncode == 0
