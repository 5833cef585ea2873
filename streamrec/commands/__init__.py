"""Sub-command groups of the `streamrec` CLI; each module exposes `register(app)`."""

from __future__ import annotations

import importlib

import typer

__all__ = ["register_all"]

# One module per concern; each defines `register(app: typer.Typer) -> None`.
_MODULES: tuple[str, ...] = (
    "schemas",
    "evaluate",
    "data",
    "train",
    "stack",
    "explain",
    "worker",
    "model",
    "learner",
    "replay",
    "tail",
    "demo",
)


def register_all(app: typer.Typer) -> None:
    """Attach every sub-command group to `app`."""
    for name in _MODULES:
        importlib.import_module(f"streamrec.commands.{name}").register(app)
