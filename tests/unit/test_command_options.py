"""Command tunables declared once: `streamrec train --config FILE` precedence and errors, `LearnerSettings` options."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

import streamrec.commands.learner as learner_command
import streamrec.commands.train as train_command
from model.cycle_config import ContinualConfig, GateConfig
from streamrec.commands.options import Opt, read_config
from streams.learner.settings import LearnerSettings, RollbackConfig


def _app(register: Any) -> typer.Typer:
    app = typer.Typer()
    register(app)
    app.command("other")(lambda: None)  # two commands: the command under test stays a sub-command
    return app


@pytest.fixture
def trained(monkeypatch: pytest.MonkeyPatch) -> list[tuple[Any, bool]]:
    """What `streamrec train` would train with (its config and two-stage flag), without data or training."""
    calls: list[tuple[Any, bool]] = []
    monkeypatch.setattr(train_command, "_load", lambda *args: ([], {}, {"until": None, "since": None}))

    def record(data: Path, out: Path, events: Any, catalog: Any, config: Any, two_stage: bool, _: Any) -> None:
        calls.append((config, two_stage))

    monkeypatch.setattr(train_command, "_train_and_save", record)
    return calls


def _train(tmp_path: Path, *args: str) -> Any:
    command = ["train", "--data", str(tmp_path), "--out", str(tmp_path / "m"), *args]
    return CliRunner().invoke(_app(train_command.register), command)


def test_the_file_overrides_defaults_and_explicit_flags_override_the_file(
    tmp_path: Path, trained: list[tuple[Any, bool]]
) -> None:
    config = tmp_path / "train.toml"
    config.write_text('lr = 0.01\nd_model = 32\nloss = "sampled"\ntwo_stage = false\nmax_train_seconds = 60\n')
    result = _train(tmp_path, "--config", str(config), "--lr", "0.05", "--two-stage")
    assert result.exit_code == 0, result.output
    ((used, two_stage),) = trained
    assert used.lr == 0.05 and two_stage  # flags given win over the file ...
    assert (
        used.model.d_model == 32 and used.loss == "sampled" and used.max_train_seconds == 60.0
    )  # ... file over defaults
    assert used.epochs == 30 and used.model.n_layers == 2  # keys the file lacks keep the command's defaults


def test_a_flag_equal_to_its_default_still_overrides_the_file(tmp_path: Path, trained: list[tuple[Any, bool]]) -> None:
    config = tmp_path / "train.toml"
    config.write_text("epochs = 5\n")
    assert _train(tmp_path, "--config", str(config), "--epochs", "30").exit_code == 0
    assert trained[0][0].epochs == 30


def test_without_a_file_the_defaults_are_the_commands(tmp_path: Path, trained: list[tuple[Any, bool]]) -> None:
    assert _train(tmp_path, "--layers", "3").exit_code == 0
    used, two_stage = trained[0]
    assert (used.model.n_layers, used.lr, used.refit, used.valid_protocol, two_stage) == (
        3,
        3e-3,
        True,
        "next-new",
        True,
    )


def test_an_unknown_key_is_a_clear_error(tmp_path: Path, trained: list[tuple[Any, bool]]) -> None:
    config = tmp_path / "train.toml"
    config.write_text("lr = 0.01\nlearning_rate = 0.1\nn_layers = 3\n")
    result = _train(tmp_path, "--config", str(config))
    assert result.exit_code == 2 and not trained
    assert "unknown key(s) learning_rate, n_layers" in result.output and "known: batch_size" in result.output


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('epochs = "ten"', "epochs = 'ten': expected int"),
        ("epochs = 2.5", "epochs = 2.5: expected int"),
        ("refit = 1", "refit = 1: expected bool"),
        ('loss = "focal"', "loss = 'focal': expected 'auto' | 'softmax' | 'sampled'"),
        ("dropout = 0.95", "dropout = 0.95 is outside [0, 0.9]"),
        ("lr = ", "is not TOML"),
    ],
)
def test_a_bad_value_names_the_file_and_the_key(tmp_path: Path, text: str, message: str) -> None:
    config = tmp_path / "bad.toml"
    config.write_text(text + "\n")
    with pytest.raises(typer.BadParameter, match="bad.toml") as raised:
        read_config(config, train_command.OPTIONS)
    assert message in str(raised.value)


def test_values_are_converted_to_the_option_types(tmp_path: Path) -> None:
    config = tmp_path / "ok.toml"
    config.write_text('lr = 1\nprotocol = "loo"\nuntil = "2024-01-01"\ntext_tower = false\n')
    values = read_config(config, train_command.OPTIONS)
    assert values == {"lr": 1.0, "protocol": train_command.Protocol.LOO, "until": "2024-01-01", "text_tower": False}
    assert isinstance(values["lr"], float)
    with pytest.raises(typer.BadParameter, match="cannot read"):
        read_config(tmp_path / "missing.toml", {"lr": Opt("x", float, 0.0)})


def test_learner_options_come_from_learner_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    assert learner_command.OPTIONS["steps"].default == ContinualConfig().steps
    assert learner_command.OPTIONS["gate_alpha"].default == GateConfig().alpha
    assert learner_command.OPTIONS["effects_window"].default == LearnerSettings().effects_window_seconds
    seen: list[tuple[LearnerSettings, dict[str, Any]]] = []
    monkeypatch.setattr(learner_command, "lower_priority", lambda increment: 0)
    monkeypatch.setattr("streamrec.preflight.require_access", lambda *args, **kwargs: None)
    monkeypatch.setattr(
        learner_command, "_run", lambda settings, options, store, values: seen.append((options, values))
    )
    args = ["learner", "--steps", "5", "--gate-alpha", "0.1", "--rollback-window", "60", "--no-text-init",
            "--holdout", "0.5", "--threads", "2"]  # fmt: skip
    result = CliRunner().invoke(_app(learner_command.register), args)
    assert result.exit_code == 0, result.output
    ((options, values),) = seen
    assert options == LearnerSettings(
        text_init=False,
        continual=ContinualConfig(steps=5, holdout_fraction=0.5),
        gate=GateConfig(alpha=0.1),
        rollback=RollbackConfig(window_seconds=60.0),
    )
    assert values["threads"] == 2 and values["nice"] == 10
