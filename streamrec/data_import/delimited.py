"""The one reading loop of the delimited formats (csv, tab-separated): a `CsvSpec` per file layout.

Every line goes through the same steps, so a format only declares its layout and says how a checked row
becomes an event (`CsvReader.event`):

    field count (`bad_row`) -> `observe` -> `spec.checks` in order -> `spec.parse_time` (`bad_timestamp`) -> `event`

The first failing step is the reject reason, so each format's documented reason order is its `checks` order.
"""

from __future__ import annotations

import abc
import csv
import operator
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import Enum
from pathlib import Path
from typing import ClassVar

from streamrec.data_import import common
from streamrec.data_import.common import DataImportError, EventFields, Reject

__all__ = ["Check", "CsvReader", "CsvSpec", "Header", "Refusal", "Row", "missing", "required", "unknown_type"]

Row = dict[str, str]
"""One source line: column name -> its text, stripped."""


class Header(Enum):
    """What the first line of a file is."""

    REQUIRED = "required"  # must read `columns` (stripped); anything else means another format
    OPTIONAL = "optional"  # skipped when it reads `columns` (any case), else data of the right width
    SKIP = "skip"  # skipped unread: the reader recognised the file by it already
    NONE = "none"  # data, of the right width


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why a row produced no event; the loop adds where and the raw line."""

    reason: str
    detail: str


@dataclass(frozen=True, slots=True)
class Check:
    """A reject rule: a row whose `column` text `fails` is rejected as `reason`.

    Attributes:
        reason: Reject reason code.
        column: The column tested.
        fails: True for text that cannot make an event.
        detail: `Reject.detail`, a `str.format` template over `column` and `value` (the text).
    """

    reason: str
    column: str
    fails: Callable[[str], bool]
    detail: str


def missing(column: str, reason: str, label: str | None = None) -> Check:
    """Reject an empty `column` as `reason`, with detail `empty <label>` (default: the column name)."""
    return Check(reason, column, operator.not_, f"empty {label or column}")


def required(**reasons: str) -> tuple[Check, ...]:
    """`missing` for each column given (`column=reason`), in that order; the detail names the column."""
    return tuple(missing(column, reason) for column, reason in reasons.items())


def unknown_type(column: str, types: Mapping[str, str]) -> Check:
    """Reject a `column` value that is not a key of the source-to-contract type mapping."""
    return Check("unknown_type", column, lambda value: value not in types, "{column} {value!r}")


@dataclass(frozen=True, slots=True, kw_only=True)
class CsvSpec:
    """Layout of one delimited file and the checks between a line and an event.

    Attributes:
        columns: Column names in file order; a header, where the file has one, reads the same.
        time: Columns passed, in this order, to `parse_time`.
        parse_time: Column texts -> tz-aware UTC time; ValueError or OverflowError make a `bad_timestamp`.
        checks: Reject rules tried in order before the time is parsed.
        delimiter: Field separator.
        header: What the first line is.
        quoted: Parse csv quoting; False splits each line on `delimiter` and skips blank lines.
        time_error_detail: A bad time's detail is the parser's message (it names the expected form), not the
            column values.
        bad_row: Detail of a line with the wrong field count, a template over `count` and `got`.
        wrong_layout: Error for a first line that shows another format, a template over `path`, `header` (the
            first row, None for an empty file) and `names` (the columns) for a `REQUIRED` header, else `got`
            (fields of the first line) and `count` (fields expected).
    """

    columns: tuple[str, ...]
    time: tuple[str, ...]
    parse_time: Callable[..., datetime]
    checks: tuple[Check, ...] = ()
    delimiter: str = ","
    header: Header = Header.REQUIRED
    quoted: bool = True
    time_error_detail: bool = False
    bad_row: str = "expected {count} fields, got {got}"
    wrong_layout: str = ""

    def lines(self, text: Iterable[str]) -> Iterator[tuple[int, list[str]]]:
        """`(line number, fields)` of every record; the number is the record's last physical line."""
        if self.quoted:
            reader = csv.reader(text, delimiter=self.delimiter)
            for fields in reader:
                yield reader.line_num, fields
        else:
            for line, raw in enumerate(text, start=1):
                yield line, raw.rstrip("\r\n").split(self.delimiter)

    def raw(self, fields: list[str]) -> str:
        """The line back as text, for `Reject.raw`."""
        return common.csv_raw(fields, self.delimiter) if self.quoted else self.delimiter.join(fields)

    def check_header(self, path: Path, first: tuple[int, list[str]] | None) -> None:
        """Refuse a file whose `REQUIRED` header is not `columns` (`first` is its first record, if any)."""
        header = None if first is None else first[1]
        if self.header is Header.REQUIRED and (header is None or [h.strip() for h in header] != list(self.columns)):
            raise DataImportError(self.wrong_layout.format(path=path, header=header, names=list(self.columns)))

    def is_header(self, path: Path, fields: list[str]) -> bool:
        """For the first line of an `OPTIONAL`/`NONE` file: True for a header; a line of another width is an error."""
        if self.header is Header.OPTIONAL and [v.strip().lower() for v in fields] == [c.lower() for c in self.columns]:
            return True
        if len(fields) != len(self.columns):
            raise DataImportError(self.wrong_layout.format(path=path, got=len(fields), count=len(self.columns)))
        return False


class CsvReader(common.SourceReader):
    """A format read line by line through `CsvSpec`s.

    Subclasses set `spec` and `event`; `patterns` and `what` unless they override `locate`; `event_files` when
    the events are not (only) in the first located file.
    """

    spec: ClassVar[CsvSpec]
    patterns: ClassVar[tuple[str, ...]]
    what: ClassVar[str]

    def locate(self, src: Path) -> list[Path]:
        """The one file of the folder that matches `patterns` (or `src` itself)."""
        return [common.pick_file(src, self.patterns, self.what)]

    def event_files(self) -> list[tuple[Path, CsvSpec]]:
        """The files that hold events, each with its layout."""
        return [(self.files[0], self.spec)]

    def observe(self, row: Row) -> None:
        """Sees every row of the right width before its checks (catalog evidence from rejected rows too)."""

    @abc.abstractmethod
    def event(self, row: Row, ts: datetime) -> EventFields | Refusal:
        """Event fields (without `event_id`) of a row that passed `spec.checks`, or why it is refused after all."""

    def rows(self) -> Iterator[EventFields | Reject]:
        """One row per line of every event file, in file order; headers are not rows."""
        for path, spec in self.event_files():
            tag = common.source_tag(path)
            with common.open_text(path) as text:
                lines = spec.lines(text)
                if spec.header in (Header.REQUIRED, Header.SKIP):
                    spec.check_header(path, next(lines, None))
                for line, fields in lines:
                    if line == 1 and spec.is_header(path, fields):  # line 1 is still unread for OPTIONAL/NONE only
                        continue
                    if spec.quoted or spec.delimiter.join(fields).strip():  # csv counts blank lines as bad rows
                        yield self._row(spec, fields, tag, line)

    def _row(self, spec: CsvSpec, fields: list[str], tag: str, line: int) -> EventFields | Reject:
        if len(fields) != len(spec.columns):
            detail = spec.bad_row.format(count=len(spec.columns), got=len(fields))
            return Reject("bad_row", f"{tag}:{line}", detail, spec.raw(fields))
        row = dict(zip(spec.columns, map(str.strip, fields), strict=True))
        self.observe(row)
        outcome = self._accept(spec, row)
        if isinstance(outcome, Refusal):
            return Reject(outcome.reason, f"{tag}:{line}", outcome.detail, spec.raw(fields))
        return {"event_id": common.event_id(self.format_name, tag, line), **outcome}

    def _accept(self, spec: CsvSpec, row: Row) -> EventFields | Refusal:
        for check in spec.checks:
            value = row[check.column]
            if check.fails(value):
                return Refusal(check.reason, check.detail.format(column=check.column, value=value))
        values = [row[column] for column in spec.time]
        try:
            ts = spec.parse_time(*values)
        except (ValueError, OverflowError) as exc:
            if spec.time_error_detail:
                return Refusal("bad_timestamp", str(exc))
            return Refusal("bad_timestamp", " / ".join(f"{c} {v!r}" for c, v in zip(spec.time, values, strict=True)))
        return self.event(row, ts)
