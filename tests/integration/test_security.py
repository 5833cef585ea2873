"""Security, tested for real: a broker with SASL_SSL (SCRAM-SHA-512) and a Redis with TLS and an ACL user, both
with certificates made by `openssl` when the module starts (`LocalStack` with `secure_dir`, the code of
`streamrec stack up --secure DIR`).

The worker, `replay`, `tail`, `model promote --publish` and the learner run on it with the settings of the
stack's env file; a wrong password or an untrusted certificate stops the worker and a CLI tool at start with
one line naming what failed, and no password appears in any output or log.
"""

from __future__ import annotations

import asyncio
import gzip
import re
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import pytest
import redis.asyncio as aioredis
import torch
from redis.exceptions import AuthenticationError, ConnectionError

from contracts import Event, Settings
from model.artifacts import save_model
from model.transformer import ModelConfig, SeqRecModel
from model.vocab import ItemVocab
from streamrec.child_processes import free_port, terminate, worker_env
from streamrec.stack import LocalStack, StackInfo
from streamrec.stack_certs import ensure_ca
from streamrec.stack_config import StackConfig
from streamrec.stack_security import read_env_file
from tests.integration.test_learner import learner_log, readies, wait_for
from tests.integration.worker_support import (
    WorkerPool,
    answered_exactly_once,
    generated_events,
    produce,
    records,
)

pytestmark = [pytest.mark.security]


@dataclass(frozen=True)
class SecureStack:
    """The module's secured stack: its handle, what `up` returned, the env file's settings, its passwords."""

    local: LocalStack
    info: StackInfo
    env: dict[str, str]
    start_seconds: float

    @property
    def passwords(self) -> list[str]:
        """Every password the stack made (none may show in any output)."""
        pw = self.local.security.passwords if self.local.security else None
        return [pw.kafka, pw.broker, pw.redis, pw.keystore] if pw else []

    def settings(self, prefix: str, **overrides: object) -> Settings:
        """Settings from the env file for topic prefix `prefix` (its topics are created now)."""
        LocalStack(replace(self.local.config, topic_prefix=prefix)).up()
        fields = {key.removeprefix("STREAMREC_").lower(): value for key, value in self.env.items()}
        return Settings(**(fields | {"topic_prefix": prefix} | overrides))


@pytest.fixture(scope="module")
def secure(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecureStack]:
    """One secured broker + Redis for the module, on free ports, with certificates made now; stopped after."""
    root = tmp_path_factory.mktemp("secure-stack")
    config = replace(
        StackConfig(),
        state_dir=root / "stack",
        secure_dir=root / "tls",
        kafka_port=free_port(),
        controller_port=free_port(),
        redis_port=free_port(),
    )
    local = LocalStack(config)
    started = time.monotonic()
    try:
        info = local.up()
    except BaseException:
        local.down()  # what started before the failure (e.g. Redis when Kafka would not format) must not linger
        raise
    seconds = time.monotonic() - started
    print(f"secured stack (certificates, SCRAM format, broker, Redis, topics) up in {seconds:.1f} s")
    assert info.env_file is not None
    try:
        yield SecureStack(local, info, read_env_file(info.env_file), seconds)
    finally:
        local.down()


def assert_no_secret(texts: Sequence[str], secrets: Sequence[str]) -> None:
    """None of `secrets` occurs in any of `texts`."""
    for secret in secrets:
        assert secret, "an empty secret would match anything"
        leaked = [n for n, text in enumerate(texts) if secret in text]
        assert not leaked, f"a password occurs in output #{leaked}"


def run_cli(
    args: Sequence[str], env: dict[str, str], cwd: Path, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """`streamrec <args>` to completion, with its stdout and stderr."""
    cmd = [sys.executable, "-m", "streamrec", *args]
    return subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False)


def write_events(directory: Path, events: Sequence[Event]) -> Path:
    """`events.jsonl.gz` as `streamrec data import` writes it, for `streamrec replay`."""
    directory.mkdir(parents=True, exist_ok=True)
    with gzip.open(directory / "events.jsonl.gz", "wt", encoding="utf-8") as out:
        out.writelines(e.model_dump_json() + "\n" for e in events)
    return directory


def tiny_model(out: Path, items: Sequence[str], seed: int = 0) -> Path:
    """A small untrained model over `items` (enough to serve and to be fine-tuned)."""
    torch.manual_seed(seed)
    vocab = ItemVocab(list(items), capacity=len(items) + 9)
    model = SeqRecModel(ModelConfig(n_items=vocab.capacity, max_len=10, d_model=16, n_heads=2, n_layers=1))
    save_model(out, model, vocab)
    return out


def test_the_secured_stack_keeps_its_secrets_and_refuses_anonymous_clients(secure: SecureStack) -> None:
    tls = secure.local.config.secure_dir
    assert tls is not None
    for private in ("streamrec.env", "secrets.json", "ca.key", "server.key", "server.p12"):
        assert (tls / private).stat().st_mode & 0o077 == 0, f"{private} is readable by others"
    assert (secure.local.config.state_dir / "server.properties").stat().st_mode & 0o077 == 0
    printed = "\n".join(secure.info.env_lines())
    logs = [p.read_text(errors="replace") for p in secure.local.config.log_dir.glob("*.log")]
    acl = (tls / "redis.acl").read_text()
    assert_no_secret([printed, acl, *logs], secure.passwords)
    assert "user default off" in acl
    assert secure.env["STREAMREC_KAFKA_SECURITY_PROTOCOL"] == "SASL_SSL"
    assert secure.env["STREAMREC_REDIS_URL"].startswith("rediss://streamrec:")
    print(f"measured: secured stack start {secure.start_seconds:.1f} s")


async def test_redis_has_no_plain_port_and_no_default_user(secure: SecureStack) -> None:
    port = secure.local.config.redis_port
    ca = secure.env["STREAMREC_KAFKA_SSL_CAFILE"]
    plain = aioredis.Redis.from_url(f"redis://127.0.0.1:{port}/0", socket_timeout=3, socket_connect_timeout=3)
    anonymous = aioredis.Redis.from_url(f"rediss://127.0.0.1:{port}/0?ssl_ca_certs={ca}", socket_timeout=3)
    try:
        with pytest.raises(ConnectionError):  # TLS only: a plain client gets no answer it can read
            await plain.ping()
        with pytest.raises(AuthenticationError):  # `default` is off: NOAUTH
            await anonymous.ping()
    finally:
        await plain.aclose()
        await anonymous.aclose()


async def test_worker_replay_tail_and_promote_publish_run_on_the_secured_stack(
    secure: SecureStack, tmp_path: Path
) -> None:
    settings = secure.settings("secpipe", model_dir=tmp_path / "store", backend="torch", device="cpu")
    redis_url = settings.redis_url.get_secret_value()
    client = aioredis.Redis.from_url(redis_url)
    await client.flushdb()
    await client.aclose()
    serving = {"STREAMREC_MODEL_DIR": str(settings.model_dir), "STREAMREC_BACKEND": "torch", "STREAMREC_DEVICE": "cpu"}
    env = worker_env(settings, free_port(), **serving)
    pool = WorkerPool(tmp_path, extra_env=serving, loglevel="info")  # more log lines that must hold no secret
    worker = pool.start(settings)
    outputs: list[str] = []
    try:
        events = generated_events(400, users=40, items=60, seed=5)
        replayed = run_cli(["replay", str(write_events(tmp_path / "data", events)), "--rate", "0"], env, tmp_path)
        outputs += [replayed.stdout, replayed.stderr]
        assert replayed.returncode == 0, replayed.stderr
        await answered_exactly_once(settings, events, timeout_s=180)

        tail = run_cli(["tail", "--from-beginning", "--limit", "5", "--idle-exit", "20"], env, tmp_path)
        outputs += [tail.stdout, tail.stderr]
        assert tail.returncode == 0, tail.stderr
        assert tail.stdout.count("╭─ user u") == 5, tail.stdout  # one panel per recommendation

        model_dir = tiny_model(tmp_path / "m1", sorted({e.item_id for e in events if e.item_id}))
        promoted = run_cli(["model", "promote", str(model_dir), "--publish"], env, tmp_path)
        outputs += [promoted.stdout, promoted.stderr]
        assert promoted.returncode == 0, promoted.stderr
        version = re.search(r"published ModelUpdate (\S+)", promoted.stdout)
        assert version, promoted.stdout
        gauge = f'streamrec_model_info{{version="{version.group(1)}"}}'
        deadline = time.monotonic() + 90
        while await worker.metric(gauge) != 1 and time.monotonic() < deadline:
            await asyncio.sleep(0.5)
        assert await worker.metric(gauge) == 1, f"the worker did not swap to {version.group(1)}; see {worker.log}"
        assert worker.proc.poll() is None
    finally:
        pool.stop_all()
    assert_no_secret([*outputs, worker.log.read_text(errors="replace")], secure.passwords)


async def test_the_learner_consumes_the_secured_stream(secure: SecureStack, tmp_path: Path) -> None:
    store = tmp_path / "store"
    settings = secure.settings("seclearn", model_dir=store)
    events = generated_events(600, users=60, items=50, seed=9)
    env = worker_env(settings, free_port(), STREAMREC_MODEL_DIR=str(store))
    model_dir = tiny_model(tmp_path / "m0", sorted({e.item_id for e in events if e.item_id}))
    promoted = run_cli(["model", "promote", str(model_dir)], env, tmp_path)
    assert promoted.returncode == 0, promoted.stderr
    args = ["learner", "--every-events", "200", "--every-seconds", "3", "--min-events", "50", "--steps", "5",
            "--no-text-init", "--min-gate-points", "5", "--restore-events", "0"]  # fmt: skip
    log = tmp_path / "learner.log"
    with log.open("wb") as out:
        cmd = [sys.executable, "-m", "streamrec", *args]
        learner = subprocess.Popen(cmd, env=env, cwd=tmp_path, stdout=out, stderr=out)
    try:
        await wait_for(lambda: len(readies(store)) == 1, 120, "the learner's ready line")
        await produce(settings, records(events))

        def cycles() -> list[dict[str, object]]:
            return [r for r in learner_log(store) if r.get("kind") == "cycle"]

        await wait_for(lambda: bool(cycles()), 180, "a learner cycle on the secured stream")
        assert learner.poll() is None, log.read_text(errors="replace")
    finally:
        terminate(learner)
    assert_no_secret([log.read_text(errors="replace")], secure.passwords)


@dataclass(frozen=True)
class Fault:
    """A wrong setting, the env change that makes it, and the one line a process must stop with."""

    name: str
    message: str
    cli: str  # the CLI tool that must stop too (`replay` needs only Kafka, `tail` Redis as well)


FAULTS = [
    Fault(
        "kafka-password",
        r"Kafka authentication failed for user streamrec \(SCRAM-SHA-512\) at 127\.0\.0\.1:\d+",
        "replay",
    ),
    Fault("kafka-untrusted-ca", r"Kafka TLS certificate of 127\.0\.0\.1:\d+ is not trusted \(.*\)", "replay"),
    Fault("redis-password", r"Redis authentication failed for user streamrec at 127\.0\.0\.1:\d+", "tail"),
    Fault("redis-untrusted-ca", r"Redis TLS certificate of 127\.0\.0\.1:\d+ is not trusted \(.*\)", "tail"),
]


def _faulty_env(env: dict[str, str], fault: str, wrong_password: str, untrusted_ca: Path) -> dict[str, str]:
    url = env["STREAMREC_REDIS_URL"]
    if fault == "kafka-password":
        return env | {"STREAMREC_KAFKA_SASL_PASSWORD": wrong_password}
    if fault == "kafka-untrusted-ca":
        return env | {"STREAMREC_KAFKA_SSL_CAFILE": str(untrusted_ca)}
    if fault == "redis-password":
        return env | {"STREAMREC_REDIS_URL": re.sub(r"(rediss://streamrec:)[^@]+@", rf"\g<1>{wrong_password}@", url)}
    assert fault == "redis-untrusted-ca"
    return env | {"STREAMREC_REDIS_URL": re.sub(r"ssl_ca_certs=[^&]+", f"ssl_ca_certs={untrusted_ca}", url)}


@pytest.mark.parametrize("tool", ["worker", "cli"])
@pytest.mark.parametrize("fault", FAULTS, ids=lambda f: f.name)
def test_a_wrong_password_or_untrusted_certificate_stops_the_process_at_once_with_one_clear_line(
    secure: SecureStack, fault: Fault, tool: str, tmp_path: Path
) -> None:
    settings = secure.settings("secfault")
    untrusted = ensure_ca(tmp_path / "other-ca", subject="an untrusted CA").cert  # made now, never trusted
    wrong = "wrong-" + "x7Q" * 8
    env = _faulty_env(worker_env(settings, free_port()), fault.name, wrong, untrusted)
    command = "worker" if tool == "worker" else fault.cli
    args = {"worker": ["worker"], "replay": ["replay", str(write_events(tmp_path / "d", generated_events(5)))],
            "tail": ["tail", "--limit", "1"]}[command]  # fmt: skip
    started = time.monotonic()
    done = run_cli(args, env, tmp_path, timeout=60)
    seconds = time.monotonic() - started
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert done.returncode == 2, (done.returncode, done.stdout, done.stderr)
    assert len(lines) == 1 and re.fullmatch(rf"{command}: {fault.message}.*", lines[0]), done.stderr
    assert seconds < 20, f"{command} took {seconds:.1f} s to give up"
    server_logs = [p.read_text(errors="replace") for p in secure.local.config.log_dir.glob("*.log")]
    assert_no_secret([done.stdout, done.stderr, *server_logs], [wrong, *secure.passwords])  # nor the broker's log
    print(f"measured: {command} with {fault.name} exited 2 in {seconds:.1f} s: {lines[0]}")


@pytest.mark.parametrize("command", ["learner", "model promote --publish"])
def test_the_learner_and_a_model_publish_stop_at_once_on_a_wrong_kafka_password(
    secure: SecureStack, command: str, tmp_path: Path
) -> None:
    store = tmp_path / "store"
    settings = secure.settings("secfault", model_dir=store)
    wrong = "wrong-" + "k3Z" * 8
    env = worker_env(settings, free_port(), STREAMREC_MODEL_DIR=str(store), STREAMREC_KAFKA_SASL_PASSWORD=wrong)
    promote = ["model", "promote", str(tiny_model(tmp_path / "m", ["a", "b"])), "--publish"]
    args = {"learner": ["learner", "--no-text-init"], "model promote --publish": promote}
    started = time.monotonic()
    done = run_cli(args[command], env, tmp_path, timeout=60)
    seconds = time.monotonic() - started
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    who = command.removesuffix(" --publish")
    assert done.returncode == 2, (done.returncode, done.stdout, done.stderr)
    assert len(lines) == 1 and re.fullmatch(rf"{who}: {FAULTS[0].message}.*", lines[0]), done.stderr
    assert seconds < 20, f"{command} took {seconds:.1f} s to give up"
    assert not (store / "CURRENT").exists(), "the store changed although the update could not be announced"
    assert_no_secret([done.stdout, done.stderr], [wrong, *secure.passwords])
    print(f"measured: {command} with a wrong Kafka password exited 2 in {seconds:.1f} s: {lines[0]}")
