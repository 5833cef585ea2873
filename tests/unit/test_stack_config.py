"""Pure parts of the local stack: rendered configs, PID files, address parsing, version pins. No services."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from contracts import EVENTS_TOPIC_CONFIGS, IDEMPOTENCY_HORIZON_SECONDS, TopicNames
from contracts import topic_specs as contract_topic_specs
from contracts.errors import ConfigError
from feature_store import FeatureConfig
from streamrec.stack import topic_specs
from streamrec.stack_config import (
    KAFKA_VERSION,
    StackConfig,
    is_alive,
    parse_host_port,
    read_pid,
    remove_pid,
    render_redis_conf,
    render_server_properties,
    write_pid,
)
from streamrec.stack_procs import build_kafka_command, owns_process
from streamrec.stack_topics import run_sync

REPO = Path(__file__).resolve().parents[2]


def _props(text: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in text.splitlines() if line and not line.startswith("#"))


def test_server_properties_single_kraft_node_on_loopback(tmp_path: Path) -> None:
    cfg = StackConfig(state_dir=tmp_path, kafka_port=29092, controller_port=29093, redis_port=26379)
    props = _props(render_server_properties(cfg))
    assert props["process.roles"] == "broker,controller"
    assert props["listeners"] == "PLAINTEXT://127.0.0.1:29092,CONTROLLER://127.0.0.1:29093"
    assert props["advertised.listeners"] == "PLAINTEXT://127.0.0.1:29092"
    assert props["controller.quorum.bootstrap.servers"] == "127.0.0.1:29093"
    assert props["log.dirs"] == str(tmp_path / "kafka-data")
    assert props["offsets.topic.replication.factor"] == "1"
    assert props["transaction.state.log.replication.factor"] == "1"


def test_redis_conf_has_aof_and_own_dir(tmp_path: Path) -> None:
    cfg = StackConfig(state_dir=tmp_path, redis_port=26379)
    conf = render_redis_conf(cfg, tmp_path / "pids" / "redis.pid", tmp_path / "logs" / "redis.log").splitlines()
    assert "appendonly yes" in conf
    assert "bind 127.0.0.1" in conf and "port 26379" in conf and "daemonize yes" in conf
    assert f"dir {tmp_path / 'redis-data'}" in conf
    assert f"pidfile {tmp_path / 'pids' / 'redis.pid'}" in conf


def test_config_paths_and_urls(tmp_path: Path) -> None:
    cfg = StackConfig(state_dir=tmp_path / "s", cache_dir=tmp_path / "c", kafka_port=1234, redis_port=4321)
    assert cfg.libs_dir == tmp_path / "c" / "kafka" / KAFKA_VERSION / "libs"
    assert cfg.bootstrap == "127.0.0.1:1234"
    assert cfg.redis_url == "redis://127.0.0.1:4321/0"
    assert StackConfig().state_dir == Path.home() / ".cache" / "streamrec" / "stack"


@pytest.mark.parametrize(
    ("ports", "needle"),
    [((19092, 19092, 16379), "must differ"), ((0, 19093, 16379), "out of range"), ((19092, 19093, 70000), "range")],
)
def test_config_rejects_bad_ports(ports: tuple[int, int, int], needle: str) -> None:
    with pytest.raises(ConfigError, match=needle):
        StackConfig(kafka_port=ports[0], controller_port=ports[1], redis_port=ports[2])


@pytest.mark.parametrize(
    ("address", "expected"),
    [
        ("127.0.0.1:19092", ("127.0.0.1", 19092)),
        ("kafka://broker:9092", ("broker", 9092)),
        ("redis://:secret@127.0.0.1:16379/0", ("127.0.0.1", 16379)),
        ("[::1]:9092", ("::1", 9092)),
        ("localhost", ("localhost", 6379)),
        ("::1", ("::1", 6379)),
    ],
)
def test_parse_host_port(address: str, expected: tuple[str, int]) -> None:
    assert parse_host_port(address, default_port=6379) == expected


@pytest.mark.parametrize("address", ["host:abc", "host:0", "host:65536", "host"])
def test_parse_host_port_rejects(address: str) -> None:
    with pytest.raises(ConfigError):
        parse_host_port(address)


def test_pid_file_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "pids" / "kafka.pid"
    assert read_pid(path) is None
    write_pid(path, 4242)
    assert read_pid(path) == 4242
    assert not list(path.parent.glob("*.tmp"))
    remove_pid(path)
    assert read_pid(path) is None
    remove_pid(path)  # missing is fine


@pytest.mark.parametrize("content", ["", "abc", "-5", "0", "12 13"])
def test_read_pid_ignores_garbage(tmp_path: Path, content: str) -> None:
    path = tmp_path / "x.pid"
    path.write_text(content)
    assert read_pid(path) is None


def test_liveness_and_ownership() -> None:
    assert is_alive(os.getpid())
    assert not is_alive(None)
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    assert not is_alive(child.pid)  # reaped: gone
    assert owns_process(os.getpid(), "python")
    assert not owns_process(os.getpid(), "kafka.Kafka")


def test_zombie_counts_as_dead() -> None:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    for _ in range(200):
        stat = Path(f"/proc/{child.pid}/stat").read_text()
        if stat.rsplit(")", 1)[-1].split()[0] == "Z":
            break
        subprocess.run(["sleep", "0.01"], check=True)
    assert not is_alive(child.pid)
    child.wait()


def test_kafka_command_uses_small_heap_and_cached_jars(tmp_path: Path) -> None:
    cfg = StackConfig(cache_dir=tmp_path, kafka_heap="384m")
    cmd = build_kafka_command(cfg, tmp_path / "server.properties")
    assert cmd[0] == "java" and "-Xmx384m" in cmd
    assert cmd[cmd.index("-cp") + 1] == f"{cfg.libs_dir}/*"
    assert cmd[-2:] == ["kafka.Kafka", str(tmp_path / "server.properties")]
    log4j = next(a for a in cmd if a.startswith("-Dlog4j2.configurationFile="))
    assert Path(log4j.split("=", 1)[1]).is_file()


def test_topic_specs_follow_prefix_and_partitions() -> None:
    specs = {s.name: s for s in topic_specs(StackConfig(topic_prefix="p", events_partitions=4))}
    assert set(specs) == {"p.events", "p.recommendations", "p.items", "p.dead-letter", "p.model-updates"}
    assert specs["p.events"].partitions == 4 and specs["p.recommendations"].partitions == 8
    assert specs["p.items"].configs == {"cleanup.policy": "compact"}
    # Events are kept for less than the idempotency horizon (the shortest user TTL), segment roll included.
    retention, segment = (int(specs["p.events"].configs[k]) for k in ("retention.ms", "segment.ms"))
    assert retention + segment < IDEMPOTENCY_HORIZON_SECONDS * 1000 <= FeatureConfig().user_ttl_seconds * 1000


def test_kafka_version_pinned_consistently() -> None:
    pom = (REPO / "streamrec" / "kafka" / "pom.xml").read_text()
    assert re.search(r"<kafka.version>([^<]+)</kafka.version>", pom).group(1) == KAFKA_VERSION  # type: ignore[union-attr]
    compose = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    images = {s["image"] for s in compose["services"].values() if s.get("image", "").startswith("apache/kafka")}
    assert images == {f"apache/kafka:{KAFKA_VERSION}"}


def test_compose_services_share_env_contract() -> None:
    compose = yaml.safe_load((REPO / "docker-compose.yml").read_text())["services"]
    assert {"kafka", "redis", "topics", "worker", "learner"} <= set(compose)
    for name in ("worker", "learner"):
        env = compose[name]["environment"]
        assert env["STREAMREC_KAFKA_BOOTSTRAP"] == "kafka:9092"
        assert env["STREAMREC_REDIS_URL"] == "redis://redis:6379/0"
        assert compose[name]["command"] == ["streamrec", name]
    assert "--appendonly" in compose["redis"]["command"]
    assert all("healthcheck" in compose[s] for s in ("kafka", "redis"))


async def _answer() -> int:
    return 42


async def test_run_sync_works_inside_a_running_loop() -> None:
    assert run_sync(_answer()) == 42


def test_run_sync_works_without_a_loop() -> None:
    assert run_sync(_answer()) == 42


def test_compose_keeps_the_idempotency_rules_of_stack_up() -> None:
    compose = yaml.safe_load((REPO / "docker-compose.yml").read_text())["services"]
    redis_cmd = compose["redis"]["command"]
    assert redis_cmd[redis_cmd.index("--maxmemory-policy") + 1] == "noeviction"
    [events_line] = [
        line for line in compose["topics"]["command"][0].splitlines() if line.strip().startswith("t events")
    ]
    assert {c.split("=")[0]: c.split("=")[1] for c in events_line.split()[3:]} == EVENTS_TOPIC_CONFIGS


def test_compose_creates_the_topics_of_the_contract_table() -> None:
    # `docker-compose.yml` cannot import Python: its `t <name> <partitions> <configs>` lines are held to the table.
    compose = yaml.safe_load((REPO / "docker-compose.yml").read_text())["services"]
    lines = [line.split() for line in compose["topics"]["command"][0].splitlines() if line.strip().startswith("t ")]
    created = {name: (parts.strip('"'), dict(c.split("=", 1) for c in configs)) for _, name, parts, *configs in lines}
    table = contract_topic_specs(TopicNames("P"), events_partitions=-1, recommendations_partitions=-2)
    variables = {-1: "$$PARTITIONS", -2: "$$REC_PARTITIONS"}
    assert created == {s.name.removeprefix("P."): (variables[s.partitions], s.configs) for s in table}
