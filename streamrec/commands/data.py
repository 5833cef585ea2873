"""`streamrec data import`: convert a public dataset into canonical events + catalog JSON lines."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from streamrec.data_import import ImportReport

__all__ = ["register"]

_FORMATS = ("taobao", "online-retail", "yoochoose", "diginetica", "rees46", "otto", "movielens", "amazon-s3rec")


def register(app: typer.Typer) -> None:
    """Attach the `data` command group (`data import`)."""
    data_app = typer.Typer(no_args_is_help=True, help="Datasets: import public logs as canonical events.")

    @data_app.command("import")
    def import_(
        src: Annotated[Path, typer.Argument(help="Dataset folder (layout of ../shared/data/<dataset>/) or one file.")],
        fmt: Annotated[str, typer.Option("--format", "-f", help=f"Source format: {', '.join(_FORMATS)}.")],
        out: Annotated[Path, typer.Option("--out", "-o", help="Output folder (created if missing).")],
        chunk_rows: Annotated[
            int, typer.Option(min=1, help="Events sorted in memory before spilling to disk.")
        ] = 250_000,
    ) -> None:
        """Write OUT/events.jsonl.gz, catalog.jsonl.gz, rejected.jsonl.gz and import_report.json."""
        from rich.console import Console

        from contracts.errors import StreamrecError
        from streamrec.data_import import import_dataset

        console = Console(stderr=True)
        if fmt not in _FORMATS:
            console.print(f"[red]error:[/red] unknown --format {fmt!r}; choose one of: {', '.join(_FORMATS)}")
            raise typer.Exit(2)
        if not src.exists():
            console.print(f"[red]error:[/red] source not found: {src}")
            raise typer.Exit(2)
        try:
            report = import_dataset(fmt, src, out, chunk_rows=chunk_rows)
        except StreamrecError as exc:
            console.print(f"[red]error:[/red] {exc}")
            raise typer.Exit(1) from exc
        Console().print(_table(report))

    app.add_typer(data_app, name="data")


def _table(report: ImportReport) -> object:
    from rich.table import Table

    table = Table(title=f"{report.format} import: {report.source}", show_header=True)
    table.add_column("what")
    table.add_column("count", justify="right")
    table.add_row("rows read", f"{report.rows_read:,}")
    table.add_row("rows written", f"{report.rows_written:,}")
    table.add_row("rows rejected", f"{report.rows_rejected:,}")
    for reason, count in report.rejected_by_reason.items():
        table.add_row(f"  rejected: {reason}", f"{count:,}")
    for kind, count in report.event_types.items():
        table.add_row(f"  events: {kind}", f"{count:,}")
    table.add_row("users", f"{report.users:,}")
    table.add_row("items in events", f"{report.items:,}")
    table.add_row(
        "catalog items (title / category)",
        f"{report.catalog_items:,} ({report.catalog_with_title:,} / {report.catalog_with_category:,})",
    )
    table.add_row("time span (UTC)", f"{report.first_ts} .. {report.last_ts}")
    table.add_row("seconds", f"{report.elapsed_seconds:.2f}")
    return table
