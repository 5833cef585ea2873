"""What several commands share: ISO time parsing and the model-store option."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

import typer

__all__ = ["StoreOption", "iso_time", "parse_time"]

StoreOption = Annotated[
    str | None, typer.Option(help="Model store directory or file:// URI (default: STREAMREC_MODEL_DIR).")
]


def parse_time(text: str | None) -> datetime | None:
    """ISO time → tz-aware (naive = UTC); None passes through."""
    if text is None:
        return None
    at = datetime.fromisoformat(text)
    return at if at.tzinfo is not None else at.replace(tzinfo=UTC)


def iso_time(text: str, option: str, example: str = "") -> datetime:
    """`parse_time` for a command-line option: a bad time is a `typer.BadParameter` naming `option`."""
    try:
        at = parse_time(text)
    except ValueError as exc:
        msg = f"not an ISO time: {text!r}" + (f" (e.g. {example})" if example else "")
        raise typer.BadParameter(msg, param_hint=option) from exc
    assert at is not None
    return at
