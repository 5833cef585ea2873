"""`LocalStack.up` waiting for a broker it just started, with the start and the probes replaced (no Java here).

The child stands in for the JVM: a `sleep` whose command line does not name our `server.properties`, which is
what /proc shows for a moment right after exec on a loaded machine (CI once failed on exactly that).
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from contracts.errors import ServiceUnavailable
from streamrec import stack as stack_module
from streamrec.child_processes import free_port
from streamrec.stack import LocalStack
from streamrec.stack_config import StackConfig


def _stack(tmp_path: Path) -> LocalStack:
    cfg = replace(
        StackConfig(),
        state_dir=tmp_path,
        kafka_port=free_port(),
        controller_port=free_port(),
        redis_port=free_port(),
        start_timeout_seconds=20.0,
    )
    return LocalStack(cfg)


@pytest.fixture
def children() -> Iterator[list[subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for child in started:
        child.kill()
        child.wait()


def _fake_start(monkeypatch: pytest.MonkeyPatch, argv: list[str], started: list[subprocess.Popen[bytes]]) -> None:
    def start(cfg: StackConfig, props: Path) -> subprocess.Popen[bytes]:
        child = subprocess.Popen(argv, stdin=subprocess.DEVNULL)
        started.append(child)
        return child

    async def no_topics(*_args: object, **_kwargs: object) -> list[str]:
        return []

    monkeypatch.setattr(LocalStack, "_up_redis", lambda self: None)
    monkeypatch.setattr(stack_module, "ensure_kafka_jars", lambda cfg: False)
    monkeypatch.setattr(stack_module, "ensure_kafka_storage", lambda cfg: cfg.state_dir / "server.properties")
    monkeypatch.setattr(stack_module, "start_kafka", start)
    monkeypatch.setattr(stack_module, "ensure_topics", no_topics)


def test_a_just_started_broker_is_waited_for_even_when_proc_does_not_show_its_command_line(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, children: list[subprocess.Popen[bytes]]
) -> None:
    _fake_start(monkeypatch, ["sleep", "60"], children)
    probes = iter([False, False, False, True])
    monkeypatch.setattr(stack_module, "kafka_answers", lambda bootstrap, **_: next(probes))

    _stack(tmp_path).up()

    assert children[0].poll() is None, "the broker stand-in must still run: up() waited instead of giving up"
    assert next(probes, "drained") == "drained", "up() returned before the broker answered"


def test_a_broker_that_exits_while_starting_fails_at_once_with_its_exit_code(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, children: list[subprocess.Popen[bytes]]
) -> None:
    _fake_start(monkeypatch, [sys.executable, "-c", "raise SystemExit(3)"], children)
    monkeypatch.setattr(stack_module, "kafka_answers", lambda bootstrap, **_: False)

    with pytest.raises(ServiceUnavailable, match=r"kafka exited with code 3 before it answered; see .*kafka\.log"):
        _stack(tmp_path).up()
