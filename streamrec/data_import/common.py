"""Shared pieces of every source reader: the reader base class, rejects, file lookup and id/time helpers.

A reader turns one source layout into a stream of rows. Each row is either the keyword arguments of one
`contracts.Event` (`EventFields`) or a `Reject` (reason code + where + why), so the pipeline counts every
source row exactly once: `rows_read == rows_written + sum(rejected by reason)`.
"""

from __future__ import annotations

import abc
import csv
import gzip
import hashlib
import io
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, ClassVar, TextIO

from contracts.errors import StreamrecError

__all__ = [
    "EPOCH",
    "DataImportError",
    "EventFields",
    "ItemFields",
    "Reject",
    "SourceReader",
    "csv_raw",
    "event_id",
    "from_unix_ms",
    "from_unix_seconds",
    "open_text",
    "pick_file",
    "source_tag",
]

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
EventFields = dict[str, Any]
"""Keyword arguments of `contracts.Event` (`ts` a tz-aware datetime)."""
ItemFields = dict[str, Any]
"""Keyword arguments of `contracts.Item` without `ts` (the pipeline sets it)."""

# Suffixes dropped from a file name to build its id tag; `.data`/`.item` are kept (MovieLens `u.data`).
_TAG_SUFFIXES = (".gz", ".csv", ".tsv", ".jsonl", ".json", ".txt", ".dat")
_MAX_TAG = 64


class DataImportError(StreamrecError):
    """The source is missing, ambiguous or does not have the layout of the requested format."""


@dataclass(frozen=True, slots=True)
class Reject:
    """A source row that produced no event.

    Attributes:
        reason: Short reason code (`missing_user`, `bad_timestamp`, ...); a key of the report.
        where: `file:line` (or `file:line:index` for nested rows).
        detail: Human-readable why.
        raw: The source row as text, kept in `rejected.jsonl.gz`.
    """

    reason: str
    where: str
    detail: str
    raw: str


class SourceReader(abc.ABC):
    """Reads one dataset layout. Subclasses set `format_name` and implement `rows`.

    Args:
        src: A dataset folder (layout of `/work/shared/data/<dataset>/`) or one file of that layout.

    Raises:
        DataImportError: `src` does not exist or holds no file this format can read.
    """

    format_name: ClassVar[str]

    def __init__(self, src: Path) -> None:
        if not src.exists():
            msg = f"source not found: {src}"
            raise DataImportError(msg)
        self.src = src
        self.files: list[Path] = self.locate(src)

    @abc.abstractmethod
    def locate(self, src: Path) -> list[Path]:
        """The files to read from `src` (a folder or a file), in reading order."""

    @abc.abstractmethod
    def rows(self) -> Iterator[EventFields | Reject]:
        """Every source row, in file order: event fields or a reject."""

    def items(self) -> Iterator[ItemFields]:
        """Catalog metadata known to the source (call after `rows` is exhausted). Default: none."""
        return iter(())


def open_text(path: Path, encoding: str = "utf-8") -> TextIO:
    """Open a text file for reading, gunzipping `*.gz` transparently (newline='' for the csv module)."""
    if path.suffix == ".gz":
        return io.TextIOWrapper(gzip.open(path, "rb"), encoding=encoding, newline="")
    return path.open(encoding=encoding, newline="")


def pick_file(src: Path, patterns: Sequence[str], what: str) -> Path:
    """Return `src` if it is a file, else the single file of the folder matching the first fitting pattern.

    Patterns are tried in order; the first one that matches exactly one file wins.

    Raises:
        DataImportError: No pattern matches, or the first matching pattern is ambiguous.
    """
    if src.is_file():
        return src
    for pattern in patterns:
        found = sorted(p for p in src.glob(pattern) if p.is_file() and p.name != "README.md")
        if len(found) == 1:
            return found[0]
        if len(found) > 1:
            names = ", ".join(p.name for p in found)
            msg = f"{src}: several {what} files match {pattern!r} ({names}); pass the file itself"
            raise DataImportError(msg)
    msg = f"{src}: no {what} file (looked for {', '.join(patterns)})"
    raise DataImportError(msg)


def source_tag(path: Path) -> str:
    """A short, stable tag for a source file, part of every event id (so two slices never share ids)."""
    name = path.name
    stripped = True
    while stripped:
        stripped = False
        for suffix in _TAG_SUFFIXES:
            if name.lower().endswith(suffix) and len(name) > len(suffix):
                name, stripped = name[: -len(suffix)], True
    tag = "".join("_" if ch.isspace() or ch == ":" else ch for ch in name)
    if len(tag) > _MAX_TAG:
        digest = hashlib.sha1(tag.encode(), usedforsecurity=False).hexdigest()[:8]
        tag = f"{tag[: _MAX_TAG - 9]}~{digest}"
    return tag


def event_id(fmt: str, tag: str, line: int, index: int | None = None) -> str:
    """`<format>:<file tag>:<line>[:<index>]`: deterministic, unique per source row, at most ~100 chars."""
    return f"{fmt}:{tag}:{line}" if index is None else f"{fmt}:{tag}:{line}:{index}"


def from_unix_seconds(text: str) -> datetime:
    """Parse integer Unix seconds (UTC). Raises ValueError on junk."""
    return EPOCH + timedelta(seconds=int(text))


def from_unix_ms(value: int) -> datetime:
    """Integer Unix milliseconds (UTC) to a tz-aware datetime."""
    return EPOCH + timedelta(milliseconds=value)


def csv_raw(row: Sequence[str], delimiter: str = ",") -> str:
    """A parsed csv row back as one text line (for `Reject.raw`)."""
    buf = io.StringIO()
    csv.writer(buf, delimiter=delimiter, lineterminator="").writerow(row)
    return buf.getvalue()
