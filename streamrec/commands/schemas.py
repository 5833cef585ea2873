"""`streamrec schemas`: regenerate the JSON Schema files from the contracts."""

from __future__ import annotations

from pathlib import Path

import typer

__all__ = ["register"]


def register(app: typer.Typer) -> None:
    """Attach the `schemas` command."""

    @app.command("schemas")
    def schemas(out: Path = typer.Option(Path("schemas"), help="Directory to write the *.json files into.")) -> None:
        """Write the JSON Schemas of every topic payload (generated from `contracts`)."""
        from contracts.schemas import write_schemas

        for path in write_schemas(out):
            typer.echo(str(path))
