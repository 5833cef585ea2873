"""The `streamrec` command: one entry point, one sub-command group per concern."""

from __future__ import annotations

import typer

__all__ = ["app", "main"]

# No local variables in tracebacks: a frame's locals can hold a password (aiokafka kwargs, a Redis URL).
app = typer.Typer(
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,
    help="Real-time, explainable e-commerce recommendations.",
)


@app.callback()
def _root() -> None:
    """Real-time, explainable e-commerce recommendations on Kafka streams."""


def _register() -> None:
    # Sub-commands import their heavy dependencies (torch, faust) lazily inside the commands,
    # so `streamrec --help` and `streamrec stack up` stay fast.
    from streamrec.commands import register_all

    register_all(app)


def main() -> None:
    """Console-script entry point."""
    _register()
    app()
