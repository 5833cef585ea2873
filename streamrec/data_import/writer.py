"""Output files of an import: time-sorted events, the catalog, rejected rows, and readers for them.

All outputs are gzip'd JSON lines written with `mtime=0` to a temporary name and renamed at the end, so a
re-import of the same source gives byte-identical files and a crashed import leaves no half-written output.
Events are sorted by `(ts, source order)` with a bounded memory: sorted runs of `chunk_rows` events are
spilled to temporary files and merged.
"""

from __future__ import annotations

import gzip
import heapq
import io
import json
import os
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from types import TracebackType
from typing import Self, TextIO

from contracts.records import Event, Item
from streamrec.data_import.common import Reject

__all__ = [
    "CATALOG_FILE",
    "EVENTS_FILE",
    "REJECTED_FILE",
    "REPORT_FILE",
    "GzipLinesWriter",
    "SortedEventWriter",
    "item_sort_key",
    "read_catalog",
    "read_events",
    "write_rejected",
]

EVENTS_FILE = "events.jsonl.gz"
CATALOG_FILE = "catalog.jsonl.gz"
REJECTED_FILE = "rejected.jsonl.gz"
REPORT_FILE = "import_report.json"

SortKey = tuple[int, int]  # (ts in Unix microseconds, source sequence number)


class GzipLinesWriter:
    """Write text lines to `path` via gzip (mtime 0), atomically renamed into place on a clean close."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._tmp = path.with_name(path.name + ".partial")
        raw = self._tmp.open("wb")
        self._gz = gzip.GzipFile(filename="", mode="wb", fileobj=raw, compresslevel=6, mtime=0)
        self._raw = raw
        self._text = io.TextIOWrapper(self._gz, encoding="utf-8", newline="\n")
        self.lines = 0

    def write(self, line: str) -> None:
        """Append one line (without its newline)."""
        self._text.write(line)
        self._text.write("\n")
        self.lines += 1

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._text.close()  # closes the GzipFile but not the raw file object it was given
        self._raw.close()
        if exc_type is None:
            os.replace(self._tmp, self.path)
        else:
            self._tmp.unlink(missing_ok=True)


class SortedEventWriter:
    """Collect `(key, json line)` pairs and write them sorted by key to `path`.

    Args:
        path: Output file (`events.jsonl.gz`).
        chunk_rows: Events held in memory before a sorted run is spilled to a temporary file.
    """

    def __init__(self, path: Path, chunk_rows: int = 250_000) -> None:
        if chunk_rows < 1:
            msg = "chunk_rows must be >= 1"
            raise ValueError(msg)
        self.path = path
        self.chunk_rows = chunk_rows
        self._buffer: list[tuple[int, int, str]] = []
        self._tmpdir = tempfile.TemporaryDirectory(prefix=".import-", dir=path.parent)
        self._runs: list[Path] = []

    def add(self, key: SortKey, line: str) -> None:
        """Add one serialized event with its sort key."""
        self._buffer.append((key[0], key[1], line))
        if len(self._buffer) >= self.chunk_rows:
            self._spill()

    @property
    def spilled_runs(self) -> int:
        """How many sorted runs went to disk (0 when everything fitted in one chunk)."""
        return len(self._runs)

    def _spill(self) -> None:
        self._buffer.sort()
        run = Path(self._tmpdir.name) / f"run{len(self._runs):05d}.tsv"
        with run.open("w", encoding="utf-8", newline="\n") as out:
            out.writelines(f"{ts}\t{seq}\t{line}\n" for ts, seq, line in self._buffer)
        self._runs.append(run)
        self._buffer = []

    def discard(self) -> None:
        """Drop everything (the import failed); `path` is left untouched."""
        self._buffer = []
        self._tmpdir.cleanup()

    def close(self) -> int:
        """Merge everything into `path`; returns the number of events written."""
        try:
            self._buffer.sort()
            files: list[TextIO] = [run.open(encoding="utf-8", newline="\n") for run in self._runs]
            try:
                streams = [_parse_run(f) for f in files]
                with GzipLinesWriter(self.path) as out:
                    for _ts, _seq, line in heapq.merge(*streams, iter(self._buffer)):
                        out.write(line)
                    return out.lines
            finally:
                for f in files:
                    f.close()
        finally:
            self._buffer = []
            self._tmpdir.cleanup()


def _parse_run(lines: Iterable[str]) -> Iterator[tuple[int, int, str]]:
    for text in lines:
        ts, seq, line = text.rstrip("\n").split("\t", 2)
        yield int(ts), int(seq), line


def item_sort_key(item_id: str) -> tuple[int, int, str]:
    """Numeric ids in numeric order first, then the rest alphabetically."""
    return (0, int(item_id), "") if item_id.isdigit() else (1, 0, item_id)


def write_rejected(out: GzipLinesWriter, reject: Reject) -> None:
    """Append one reject to `rejected.jsonl.gz`."""
    record = {"reason": reject.reason, "where": reject.where, "detail": reject.detail, "raw": reject.raw}
    out.write(json.dumps(record, ensure_ascii=False))


def read_events(directory: Path) -> Iterator[Event]:
    """Stream the events of an import directory (validated, in file order = time order)."""
    with gzip.open(directory / EVENTS_FILE, "rt", encoding="utf-8") as f:
        for line in f:
            yield Event.model_validate_json(line)


def read_catalog(directory: Path) -> dict[str, Item]:
    """The catalog of an import directory, by item id."""
    with gzip.open(directory / CATALOG_FILE, "rt", encoding="utf-8") as f:
        items = (Item.model_validate_json(line) for line in f)
        return {item.item_id: item for item in items}
