"""Processes of the local stack: Kafka jars from Maven Central, storage format, broker and Redis launch, stop.

Each function does one step and reports failure with `ServiceUnavailable` naming the log file to read.
"""

from __future__ import annotations

import base64
import os
import shutil
import signal
import subprocess
import time
import uuid
from collections.abc import Mapping, Sequence
from importlib import resources
from pathlib import Path

from contracts.errors import ConfigError, ServiceUnavailable
from streamrec.stack_config import StackConfig, is_alive, read_pid, render_redis_conf, render_server_properties

__all__ = [
    "build_kafka_command",
    "ensure_kafka_jars",
    "ensure_kafka_storage",
    "ensure_redis_server",
    "log_tail",
    "owns_process",
    "start_kafka",
    "start_redis",
    "stop_process",
]


def log_tail(path: Path, lines: int = 15) -> str:
    """The last lines of a log file, for error messages."""
    try:
        return "\n".join(path.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:])
    except FileNotFoundError:
        return "(no log yet)"


def _run_logged(cmd: list[str], log: Path, what: str, cwd: Path | None = None) -> None:
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        done = subprocess.run(cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=cwd, check=False)
    if done.returncode != 0:
        msg = f"{what} failed (exit {done.returncode}); see {log}:\n{log_tail(log)}"
        raise ServiceUnavailable(msg)


def ensure_kafka_jars(cfg: StackConfig) -> bool:
    """Resolve Apache Kafka's jars once into `cfg.libs_dir` with Maven; True when they were downloaded now."""
    marker = cfg.libs_dir / ".complete"
    if marker.exists():
        return False
    if shutil.which("mvn") is None or shutil.which("java") is None:
        msg = "`stack up` needs Java 17+ and Maven on PATH (e.g. apt-get install openjdk-17-jre-headless maven)"
        raise ConfigError(msg)
    work = cfg.libs_dir.parent
    work.mkdir(parents=True, exist_ok=True)
    pom = work / "pom.xml"
    pom.write_bytes(resources.files("streamrec.kafka").joinpath("pom.xml").read_bytes())
    staging = work / "libs.partial"
    shutil.rmtree(staging, ignore_errors=True)
    cmd = ["mvn", "-q", "-B", "-f", str(pom), "dependency:copy-dependencies", "-DincludeScope=runtime"]
    cmd += [f"-Dkafka.version={cfg.kafka_version}", f"-DoutputDirectory={staging}"]
    _run_logged(cmd, cfg.log_dir / "maven.log", f"resolving Kafka {cfg.kafka_version} jars with Maven", cwd=work)
    if not (staging / f"kafka_2.13-{cfg.kafka_version}.jar").exists():
        msg = f"Maven finished but kafka_2.13-{cfg.kafka_version}.jar is missing in {staging}"
        raise ServiceUnavailable(msg)
    # Swap in whole, so a half-finished download is never mistaken for a cache.
    shutil.rmtree(cfg.libs_dir, ignore_errors=True)
    staging.replace(cfg.libs_dir)
    marker.write_text(cfg.kafka_version + "\n", encoding="ascii")
    return True


def _java_base(cfg: StackConfig) -> list[str]:
    log4j = resources.files("streamrec.kafka").joinpath("log4j2.xml")
    return ["java", f"-Dlog4j2.configurationFile={log4j}", "-cp", f"{cfg.libs_dir}/*"]


def ensure_kafka_storage(
    cfg: StackConfig, overrides: Mapping[str, str] | None = None, format_args: Sequence[str] = ()
) -> Path:
    """Write `server.properties` and format the KRaft storage once (a formatted dir has `meta.properties`).

    `overrides` change `server.properties` (the secured stack's listeners); `format_args` are added to the format
    command (`--add-scram ...`). The properties file is mode 0600: it may hold the keystore password.

    Raises:
        ConfigError: The storage was formatted for another security mode (SCRAM users exist only from the format).
    """
    cfg.state_dir.mkdir(parents=True, exist_ok=True)
    props = cfg.state_dir / "server.properties"
    props.touch(mode=0o600)
    props.chmod(0o600)
    props.write_text(render_server_properties(cfg, overrides), encoding="utf-8")
    mode_file, mode = cfg.state_dir / "kafka-security", "SASL_SSL" if format_args else "PLAINTEXT"
    if (cfg.kafka_data_dir / "meta.properties").exists():
        formatted = mode_file.read_text(encoding="ascii").strip() if mode_file.exists() else "PLAINTEXT"
        if formatted != mode:
            msg = (
                f"the Kafka storage in {cfg.kafka_data_dir} was formatted for {formatted}, not {mode}; "
                "use another --state-dir"
            )
            raise ConfigError(msg)
        return props
    # A cluster id is 16 random bytes, URL-safe base64 without padding (what `kafka-storage random-uuid` prints).
    # Like Kafka's own Uuid.randomUuid, never one starting with "-": the tool would read it as an option (this
    # failed one CI run in 64 on average: "argument --cluster-id/-t: expected one argument").
    cluster_id = "-"
    while cluster_id.startswith("-"):
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode("ascii")
    cmd = _java_base(cfg) + ["kafka.tools.StorageTool", "format", "--standalone", "-t", cluster_id, "-c", str(props)]
    _run_logged([*cmd, *format_args], cfg.log_dir / "kafka-format.log", "formatting Kafka storage")
    mode_file.write_text(mode + "\n", encoding="ascii")
    return props


def build_kafka_command(cfg: StackConfig, props: Path) -> list[str]:
    """The broker's java command line: small heap, serial GC (two shared cores), our log4j2 config."""
    jvm = [f"-Xmx{cfg.kafka_heap}", "-Xms128m", "-XX:+UseSerialGC", "-Djava.awt.headless=true"]
    base = _java_base(cfg)
    return base[:1] + jvm + base[1:] + ["kafka.Kafka", str(props)]


def start_kafka(cfg: StackConfig, props: Path) -> subprocess.Popen[bytes]:
    """Start the broker in its own session (so a terminal's Ctrl-C does not reach it); stdout goes to kafka.log."""
    cfg.log_dir.mkdir(parents=True, exist_ok=True)
    with (cfg.log_dir / "kafka.log").open("ab") as out:
        return subprocess.Popen(
            build_kafka_command(cfg, props),
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=cfg.state_dir,
            start_new_session=True,
        )


def ensure_redis_server() -> str:
    """Path of `redis-server`; installs Debian's package when missing and running as root."""
    found = shutil.which("redis-server")
    if found:
        return found
    if os.geteuid() != 0:
        msg = "redis-server is not installed; run `sudo apt-get install -y redis-server` and retry"
        raise ConfigError(msg)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for cmd in (["apt-get", "update"], ["apt-get", "install", "-y", "redis-server"]):
        if subprocess.run(cmd, env=env, check=False, stdin=subprocess.DEVNULL).returncode != 0:
            msg = f"`{' '.join(cmd)}` failed; install redis-server by hand"
            raise ConfigError(msg)
    found = shutil.which("redis-server")
    if not found:
        msg = "redis-server still missing after apt-get install"
        raise ConfigError(msg)
    return found


def start_redis(cfg: StackConfig, pid_file: Path, overrides: Mapping[str, str] | None = None) -> None:
    """Start a daemonised Redis (it writes its own PID file) with AOF under `cfg.redis_data_dir`.

    `overrides` change `redis.conf` (the secured stack's TLS port and ACL file).
    """
    server = ensure_redis_server()
    cfg.redis_data_dir.mkdir(parents=True, exist_ok=True)
    pid_file.parent.mkdir(parents=True, exist_ok=True)
    conf = cfg.state_dir / "redis.conf"
    log = cfg.log_dir / "redis.log"
    conf.write_text(render_redis_conf(cfg, pid_file, log, overrides), encoding="utf-8")
    _run_logged([server, str(conf)], cfg.log_dir / "redis-start.log", "starting redis-server")


def owns_process(pid: int, marker: str) -> bool:
    """Whether `pid` is still the process we started: its command line contains `marker` (guards PID reuse)."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode("utf-8", "replace")
    except OSError:
        return False
    return marker in cmdline


def stop_process(pid_file: Path, marker: str, timeout: float = 30.0) -> int | None:
    """SIGTERM the process in `pid_file` (if it is ours), SIGKILL after `timeout` s; returns the PID stopped."""
    pid = read_pid(pid_file)
    if pid is None or not is_alive(pid) or not owns_process(pid, marker):
        pid_file.unlink(missing_ok=True)
        return None
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while is_alive(pid) and time.monotonic() < deadline:
        _reap(pid)
        time.sleep(0.2)
    if is_alive(pid):
        os.kill(pid, signal.SIGKILL)
        while is_alive(pid):
            _reap(pid)
            time.sleep(0.1)
    _reap(pid)
    pid_file.unlink(missing_ok=True)
    return pid


def _reap(pid: int) -> None:
    # When this process started the child, collect its exit status so it does not linger as a zombie.
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass
