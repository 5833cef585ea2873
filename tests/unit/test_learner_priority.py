"""`streamrec learner` lowers its own CPU priority first, so a learner sharing cores with workers yields to them."""

from __future__ import annotations

import subprocess
import sys

import pytest
import typer
from typer.testing import CliRunner

import streamrec.commands.learner as learner_command


def test_lower_priority_raises_the_nice_value_of_new_threads() -> None:
    # In a child: a nice value cannot be lowered again, and the test process must keep its own.
    code = (
        "import os, threading\n"
        "from streamrec.commands.learner import lower_priority\n"
        "before = os.nice(0)\n"
        "after = lower_priority(3)\n"
        "seen = []\n"
        "t = threading.Thread(target=lambda: seen.append(os.nice(0)))\n"
        "t.start(); t.join()\n"
        "print(before, after, seen[0])\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    before, after, thread = map(int, out)
    assert after == min(19, before + 3) and thread == after


class _Stop(Exception):
    pass


@pytest.mark.parametrize(("args", "expected"), [([], 10), (["--nice", "0"], 0), (["--nice", "4"], 4)])
def test_the_learner_command_lowers_its_priority_before_anything_else(
    monkeypatch: pytest.MonkeyPatch, args: list[str], expected: int
) -> None:
    calls: list[int] = []

    def record(increment: int) -> int:
        calls.append(increment)
        raise _Stop  # stop before settings, Kafka or torch

    monkeypatch.setattr(learner_command, "lower_priority", record)
    app = typer.Typer()
    learner_command.register(app)
    app.command("other")(lambda: None)  # two commands: `learner` stays a sub-command
    result = CliRunner().invoke(app, ["learner", *args])
    assert isinstance(result.exception, _Stop)
    assert calls == [expected]
