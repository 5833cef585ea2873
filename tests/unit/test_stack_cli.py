"""`streamrec stack` CLI wiring, without starting services."""

from __future__ import annotations

from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from streamrec import stack as stack_module
from streamrec.commands import stack as stack_cmd
from streamrec.stack import StackInfo


def _app() -> typer.Typer:
    app = typer.Typer()
    stack_cmd.register(app)
    return app


def test_env_lines_are_evalable() -> None:
    info = StackInfo("127.0.0.1:19092", "redis://127.0.0.1:16379/0", 1, 2, ())
    assert info.env_lines() == [
        "STREAMREC_KAFKA_BOOTSTRAP=127.0.0.1:19092",
        "STREAMREC_REDIS_URL=redis://127.0.0.1:16379/0",
    ]


def test_up_docker_without_engine_fails_clearly(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(stack_module, "docker_available", lambda: False)
    result = CliRunner().invoke(_app(), ["stack", "up", "--docker", "--state-dir", str(tmp_path)])
    assert result.exit_code == 1
    assert "Docker engine" in result.output
    assert "STREAMREC_KAFKA_BOOTSTRAP" not in result.output


def test_status_of_a_stopped_stack_exits_nonzero(tmp_path: Path) -> None:
    # Ports nobody uses here; nothing was started in this state dir.
    args = ["stack", "status", "--state-dir", str(tmp_path), "--kafka-port", "39792", "--controller-port", "39793"]
    result = CliRunner().invoke(_app(), [*args, "--redis-port", "39794"])
    assert result.exit_code == 1
    assert "kafka" in result.output and "redis" in result.output
    assert "39792" in result.output


def test_down_of_a_stopped_stack_is_harmless(tmp_path: Path) -> None:
    result = CliRunner().invoke(_app(), ["stack", "down", "--state-dir", str(tmp_path)])
    assert result.exit_code == 0
    assert "kafka: was not running" in result.output


def test_secure_cannot_be_combined_with_docker_or_a_redis_cluster(tmp_path: Path) -> None:
    for extra in ("--docker", "--redis-cluster"):
        result = CliRunner().invoke(_app(), ["stack", "up", "--secure", str(tmp_path / "tls"), extra])
        assert result.exit_code == 1, result.output
        assert "--secure" in result.output and "STREAMREC_" not in result.output
    assert not (tmp_path / "tls").exists()  # refused before anything was made


def test_a_secured_stack_keeps_its_state_beside_its_certificates(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    seen: list[stack_module.StackConfig] = []

    def fake_up(self: stack_module.LocalStack) -> StackInfo:
        seen.append(self.config)
        return StackInfo("127.0.0.1:29092", "rediss://secret", 1, 2, (), env_file=tmp_path / "tls" / "streamrec.env")

    monkeypatch.setattr(stack_module.LocalStack, "up", fake_up)
    result = CliRunner().invoke(_app(), ["stack", "up", "--secure", str(tmp_path / "tls"), "--kafka-port", "29092"])
    assert result.exit_code == 0, result.output
    assert seen[0].secure_dir == (tmp_path / "tls").resolve() and seen[0].state_dir == tmp_path / "tls" / "stack"
    assert result.stdout.strip() == f"set -a; . {tmp_path / 'tls' / 'streamrec.env'}; set +a"
    assert "secret" not in result.output
