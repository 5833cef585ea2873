"""A real Redis Cluster on loopback from Debian's `redis-server`: 3 masters + 3 replicas, AOF on, PID-exact.

    cluster = RedisCluster(ClusterConfig(state_dir=Path("/tmp/c"), base_port=17000))
    cluster.up()        # starts missing nodes, creates the cluster once (`redis-cli --cluster create`), waits
    cluster.url         # redis://127.0.0.1:17000/0, for `RedisCluster.from_url` (STREAMREC_REDIS_CLUSTER=true)
    cluster.down()      # stops exactly the nodes whose PID files it wrote

Layout of `state_dir`: `pids/redis-<port>.pid`, `logs/redis-<port>.log`, `redis-cluster/<port>/` (AOF,
`nodes.conf`, `redis.conf`). A node restarted on its old dir rejoins the cluster from its `nodes.conf` (as the
replica of whoever took over its slots). `up` returns once every slot is served, every node reports
`cluster_state:ok` and every master has an online replica.
"""

from __future__ import annotations

import fcntl
import os
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import redis

from contracts.errors import ConfigError, ServiceUnavailable
from streamrec.stack_config import is_alive, port_open, read_pid
from streamrec.stack_procs import ensure_redis_server, log_tail, owns_process, stop_process

__all__ = ["ClusterConfig", "NodeStatus", "RedisClusterProcs", "render_node_conf"]

_SLOTS = 16384


def _default_state() -> Path:
    return Path.home() / ".cache" / "streamrec" / "stack"


@dataclass(frozen=True)
class ClusterConfig:
    """Where and how the cluster runs.

    Attributes:
        state_dir: Holds `pids/`, `logs/` and `redis-cluster/` (default `~/.cache/streamrec/stack`).
        host: Loopback address every node binds to.
        base_port: First node's port; the nodes use `base_port .. base_port + masters * (1 + replicas) - 1`.
        masters: Masters (each serves a third of the slots with the default 3).
        replicas: Replicas per master.
        node_timeout_ms: `cluster-node-timeout`: a master unreachable this long is failed over (small: tests).
        start_timeout_seconds: How long `up` waits for the nodes and the cluster state.
    """

    state_dir: Path = field(default_factory=_default_state)
    host: str = "127.0.0.1"
    base_port: int = 17000
    masters: int = 3
    replicas: int = 1
    node_timeout_ms: int = 2000
    start_timeout_seconds: float = 60.0

    def __post_init__(self) -> None:
        """Reject sizes `redis-cli --cluster create` refuses, and ports out of range."""
        if self.masters < 3:
            msg = f"a Redis Cluster needs at least 3 masters, got {self.masters}"
            raise ConfigError(msg)
        if not 1 <= self.base_port <= 65535 - len(self.ports) + 1:
            msg = f"cluster ports out of range: {self.base_port}..{self.base_port + len(self.ports) - 1}"
            raise ConfigError(msg)

    @property
    def ports(self) -> list[int]:
        """One port per node."""
        return list(range(self.base_port, self.base_port + self.masters * (1 + self.replicas)))

    @property
    def url(self) -> str:
        """A URL of the first node (a cluster client discovers the others)."""
        return f"redis://{self.host}:{self.base_port}/0"

    def node_dir(self, port: int) -> Path:
        """Working dir of one node: AOF, `nodes.conf`, `redis.conf`."""
        return self.state_dir / "redis-cluster" / str(port)

    def pid_file(self, port: int) -> Path:
        """PID file of one node (written by redis-server itself)."""
        return self.state_dir / "pids" / f"redis-{port}.pid"

    def log_file(self, port: int) -> Path:
        """Log of one node."""
        return self.state_dir / "logs" / f"redis-{port}.log"


def render_node_conf(cfg: ClusterConfig, port: int) -> str:
    """`redis.conf` of one daemonised, loopback-only cluster node with AOF persistence in its own dir."""
    lines = [
        f"bind {cfg.host}",
        f"port {port}",
        "protected-mode yes",
        "daemonize yes",
        f"pidfile {cfg.pid_file(port)}",
        f"logfile {cfg.log_file(port)}",
        f"dir {cfg.node_dir(port)}",
        "cluster-enabled yes",
        "cluster-config-file nodes.conf",
        f"cluster-node-timeout {cfg.node_timeout_ms}",
        "appendonly yes",
        "appendfsync everysec",
        'save ""',
        # The feature store refuses an evicting Redis (feature_store/server.py); say so explicitly.
        "maxmemory-policy noeviction",
        # Replicas sync at once (the default waits 5 s for more replicas to share one transfer).
        "repl-diskless-sync-delay 0",
    ]
    return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class NodeStatus:
    """One node as `status` sees it."""

    port: int
    pid: int | None
    role: str  # "master", "replica", or "-" when it does not answer
    listening: bool


class RedisClusterProcs:
    """Start, inspect, fail and stop the cluster described by a `ClusterConfig`."""

    def __init__(self, config: ClusterConfig | None = None) -> None:
        """Create the handle; nothing starts until `up()`."""
        self.config = config or ClusterConfig()

    @property
    def url(self) -> str:
        """Where a cluster client connects first."""
        return self.config.url

    def _marker(self, port: int) -> str:
        # redis-server rewrites its title to `redis-server host:port [cluster]`: the port names the node.
        return f"{self.config.host}:{port}"

    def pid(self, port: int) -> int | None:
        """PID of the running node on `port` that this state dir started, else None."""
        pid = read_pid(self.config.pid_file(port))
        return pid if pid is not None and is_alive(pid) and owns_process(pid, self._marker(port)) else None

    def up(self) -> float:
        """Start missing nodes, create the cluster unless it exists, wait until it is whole; returns seconds taken.

        Raises:
            ConfigError: A port is taken by a process this state dir did not start.
            ServiceUnavailable: A node or the cluster did not come up in time (the message names the log).
        """
        cfg = self.config
        started = time.monotonic()
        (cfg.state_dir / "pids").mkdir(parents=True, exist_ok=True)
        (cfg.state_dir / "logs").mkdir(parents=True, exist_ok=True)
        with (cfg.state_dir / "redis-cluster.lock").open("w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            for port in cfg.ports:
                if self.pid(port) is None:
                    self.start_node(port)
            self._wait(lambda: all(self._answers(p) for p in cfg.ports), "the cluster nodes to answer")
            if not self._created():
                self._create()
            self._wait(self._whole, "cluster_state:ok with every slot served and every master replicated")
        return time.monotonic() - started

    def start_node(self, port: int) -> None:
        """Start (or restart, on its old dir) the node on `port`."""
        cfg = self.config
        if port_open(cfg.host, port):
            msg = f"port {cfg.host}:{port} is in use by a process this state dir ({cfg.state_dir}) did not start"
            raise ConfigError(msg)
        cfg.pid_file(port).unlink(missing_ok=True)
        cfg.node_dir(port).mkdir(parents=True, exist_ok=True)
        conf = cfg.node_dir(port) / "redis.conf"
        conf.write_text(render_node_conf(cfg, port), encoding="utf-8")
        done = subprocess.run(
            [ensure_redis_server(), str(conf)], capture_output=True, stdin=subprocess.DEVNULL, check=False
        )
        if done.returncode != 0:
            msg = f"redis-server on port {port} failed to start (exit {done.returncode}): {done.stderr!r}"
            raise ServiceUnavailable(msg)

    def kill_node(self, port: int) -> int:
        """SIGKILL the node on `port` (a crash, for failover tests); returns its PID."""
        pid = self.pid(port)
        if pid is None:
            msg = f"no node of this cluster runs on port {port}"
            raise ServiceUnavailable(msg)
        os.kill(pid, signal.SIGKILL)
        while is_alive(pid):
            time.sleep(0.05)
        return pid

    def started(self) -> list[int]:
        """Ports of the nodes this state dir has PID files for (whatever `base_port` they were started with)."""
        pids = self.config.state_dir / "pids"
        names = (p.stem.removeprefix("redis-") for p in pids.glob("redis-*.pid")) if pids.is_dir() else ()
        return sorted(int(n) for n in names if n.isdigit())

    def down(self, timeout_seconds: float = 30.0) -> dict[int, int | None]:
        """Stop every node this state dir started (SIGTERM, SIGKILL after the timeout); port → PID stopped."""
        return {
            port: stop_process(self.config.pid_file(port), self._marker(port), timeout_seconds)
            for port in self.started()
        }

    def status(self) -> list[NodeStatus]:
        """PID, role and listening state of each node."""
        rows = []
        for port in self.config.ports:
            role = "-"
            try:
                with self._node(port) as client:
                    role = str(client.info("replication")["role"]).replace("slave", "replica")
            except (redis.RedisError, OSError):
                pass
            rows.append(NodeStatus(port, self.pid(port), role, port_open(self.config.host, port)))
        return rows

    def masters(self) -> dict[int, list[tuple[int, int]]]:
        """Port of each master serving slots → its slot ranges (inclusive), from a live node's `CLUSTER SLOTS`."""
        for port in self.config.ports:
            try:
                with self._node(port) as client:
                    rows = client.execute_command("CLUSTER SLOTS")
            except (redis.RedisError, OSError):
                continue
            out: dict[int, list[tuple[int, int]]] = {}
            for row in rows:
                out.setdefault(int(row[2][1]), []).append((int(row[0]), int(row[1])))
            return out
        msg = "no cluster node answers"
        raise ServiceUnavailable(msg)

    def replicas(self) -> dict[int, list[int]]:
        """Port of each master serving slots → the ports of its online replicas (the master's `INFO replication`;
        `CLUSTER SLOTS` lists a new replica only seconds after it is in sync)."""
        out = {}
        for port in self.masters():
            with self._node(port) as client:
                info = client.info("replication")
            links = [v for k, v in info.items() if k.startswith("slave") and isinstance(v, dict)]
            out[port] = [int(v["port"]) for v in links if v.get("state") == "online"]
        return out

    def _node(self, port: int) -> redis.Redis:
        return redis.Redis(host=self.config.host, port=port, socket_timeout=2.0, socket_connect_timeout=1.0)

    def _answers(self, port: int) -> bool:
        try:
            with self._node(port) as client:
                return bool(client.ping())
        except (redis.RedisError, OSError):
            return False

    def _info(self, port: int) -> dict[str, str]:
        with self._node(port) as client:
            reply = client.execute_command("CLUSTER INFO")  # parsed into a dict by redis-py
        return {str(k): str(v) for k, v in reply.items()}

    def _created(self) -> bool:
        """Whether the nodes already form one cluster (a restart after `down`: they rejoin from nodes.conf)."""
        return all(
            int(self._info(p).get("cluster_known_nodes", "1")) == len(self.config.ports) for p in self.config.ports
        )

    def _create(self) -> None:
        cfg = self.config
        cmd = ["redis-cli", "--cluster", "create", *(f"{cfg.host}:{p}" for p in cfg.ports)]
        cmd += ["--cluster-replicas", str(cfg.replicas), "--cluster-yes"]
        log = cfg.state_dir / "logs" / "redis-cluster-create.log"
        with log.open("ab") as out:
            done = subprocess.run(cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, check=False)
        if done.returncode != 0:
            msg = f"`redis-cli --cluster create` failed (exit {done.returncode}); see {log}:\n{log_tail(log)}"
            raise ServiceUnavailable(msg)

    def _whole(self) -> bool:
        """Every node says ok, the masters serve all slots, and each has `replicas` online replicas."""
        try:
            if any(self._info(p).get("cluster_state") != "ok" for p in self.config.ports):
                return False
            masters = self.masters()
            served = sum(hi - lo + 1 for ranges in masters.values() for lo, hi in ranges)
            if served != _SLOTS or len(masters) != self.config.masters:
                return False
            if any(len(ports) < self.config.replicas for ports in self.replicas().values()):
                return False
        except (redis.RedisError, OSError, ServiceUnavailable):
            return False
        return True

    def wait_whole(self) -> None:
        """Block until the cluster is whole again (after a failover and a restarted node)."""
        self._wait(self._whole, "cluster_state:ok with every slot served and every master replicated")

    def _wait(self, done: Callable[[], bool], what: str) -> None:
        deadline = time.monotonic() + self.config.start_timeout_seconds
        while time.monotonic() < deadline:
            if done():
                return
            time.sleep(0.2)
        log = self.config.log_file(self.config.base_port)
        msg = (
            f"timed out after {self.config.start_timeout_seconds:.0f} s waiting for {what}; see {log}:\n{log_tail(log)}"
        )
        raise ServiceUnavailable(msg)
