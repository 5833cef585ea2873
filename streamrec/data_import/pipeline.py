"""Run one import: read a source, validate each row as a `contracts.Event`, write the outputs and the report.

Every source row is counted once: written, or rejected with a reason (`rejected.jsonl.gz` keeps the row).
Rows that a reader accepts but `contracts.Event` does not (e.g. an id longer than 128 chars) are rejected as
`invalid_event`. Catalog items all get `ts` = the first event time of the import, so a replay of
`events.jsonl.gz` can publish the catalog before the first event.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from contracts.records import Event, Item
from streamrec.data_import.common import EPOCH, DataImportError, ItemFields, Reject, SourceReader
from streamrec.data_import.writer import (
    CATALOG_FILE,
    EVENTS_FILE,
    REJECTED_FILE,
    REPORT_FILE,
    GzipLinesWriter,
    SortedEventWriter,
    item_sort_key,
    write_rejected,
)

__all__ = ["ImportReport", "run_import"]

_EXAMPLES_PER_REASON = 3
_US = timedelta(microseconds=1)


@dataclass
class ImportReport:
    """What an import read, wrote and rejected; saved as `import_report.json`."""

    format: str
    source: str
    files: list[str]
    rows_read: int = 0
    rows_written: int = 0
    rows_rejected: int = 0
    rejected_by_reason: dict[str, int] = field(default_factory=dict)
    rejected_examples: dict[str, list[str]] = field(default_factory=dict)
    event_types: dict[str, int] = field(default_factory=dict)
    users: int = 0
    items: int = 0
    catalog_items: int = 0
    catalog_with_title: int = 0
    catalog_with_category: int = 0
    catalog_rejected: int = 0
    first_ts: str | None = None
    last_ts: str | None = None
    elapsed_seconds: float = 0.0

    def to_json(self) -> str:
        """Pretty JSON of the report."""
        return json.dumps(asdict(self), indent=2, ensure_ascii=False) + "\n"


class _Tally:
    """Counts over written events and rejects."""

    def __init__(self) -> None:
        self.read = 0
        self.rejected: Counter[str] = Counter()
        self.examples: dict[str, list[str]] = {}
        self.types: Counter[str] = Counter()
        self.users: set[str] = set()
        self.items: set[str] = set()
        self.first: datetime | None = None
        self.last: datetime | None = None

    def reject(self, reject: Reject) -> None:
        self.rejected[reject.reason] += 1
        examples = self.examples.setdefault(reject.reason, [])
        if len(examples) < _EXAMPLES_PER_REASON:
            examples.append(f"{reject.where}: {reject.detail}")

    def written(self, event: Event) -> None:
        self.types[event.type.value] += 1
        self.users.add(event.user_id)
        if event.item_id is not None:
            self.items.add(event.item_id)
        if self.first is None or event.ts < self.first:
            self.first = event.ts
        if self.last is None or event.ts > self.last:
            self.last = event.ts


def run_import(reader: SourceReader, out_dir: Path, *, chunk_rows: int = 250_000) -> ImportReport:
    """Import everything `reader` yields into `out_dir` (created if missing).

    Args:
        reader: A format reader bound to its source.
        out_dir: Output folder; `events.jsonl.gz`, `catalog.jsonl.gz`, `rejected.jsonl.gz`, `import_report.json`.
        chunk_rows: Events sorted in memory per run before spilling to disk.

    Returns:
        The report (also written to `out_dir/import_report.json`).

    Raises:
        DataImportError: The output folder cannot be created, or the source turns out not to be this format.
    """
    started = time.perf_counter()
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        msg = f"cannot create output folder {out_dir}: {exc}"
        raise DataImportError(msg) from exc
    tally = _Tally()
    _write_events(reader, out_dir, tally, chunk_rows)
    published = tally.first or EPOCH
    catalog = _write_catalog(reader.items(), tally.items, out_dir / CATALOG_FILE, published)
    report = ImportReport(
        format=reader.format_name,
        source=str(reader.src),
        files=[str(p) for p in reader.files],
        rows_read=tally.read,
        rows_written=sum(tally.types.values()),
        rows_rejected=sum(tally.rejected.values()),
        rejected_by_reason=dict(sorted(tally.rejected.items())),
        rejected_examples=dict(sorted(tally.examples.items())),
        event_types=dict(sorted(tally.types.items())),
        users=len(tally.users),
        items=len(tally.items),
        first_ts=tally.first.isoformat() if tally.first else None,
        last_ts=tally.last.isoformat() if tally.last else None,
        **catalog,
    )
    report.elapsed_seconds = round(time.perf_counter() - started, 3)
    (out_dir / REPORT_FILE).write_text(report.to_json(), encoding="utf-8")
    return report


def _write_events(reader: SourceReader, out_dir: Path, tally: _Tally, chunk_rows: int) -> None:
    sorter = SortedEventWriter(out_dir / EVENTS_FILE, chunk_rows=chunk_rows)
    try:  # a failed import must not leave a truncated events file behind
        with GzipLinesWriter(out_dir / REJECTED_FILE) as rejected:
            for seq, row in enumerate(reader.rows()):
                tally.read += 1
                if isinstance(row, Reject):
                    tally.reject(row)
                    write_rejected(rejected, row)
                    continue
                try:
                    event = Event(**row)
                except ValidationError as exc:
                    bad = _invalid(row, exc)
                    tally.reject(bad)
                    write_rejected(rejected, bad)
                    continue
                tally.written(event)
                sorter.add(((event.ts - EPOCH) // _US, seq), event.model_dump_json())
    except BaseException:
        sorter.discard()
        raise
    sorter.close()


def _invalid(row: dict[str, Any], exc: ValidationError) -> Reject:
    first = exc.errors()[0]
    where = ".".join(str(part) for part in first["loc"]) or "event"
    detail = f"{where}: {first['msg']}"
    return Reject("invalid_event", str(row.get("event_id", "?"))[:200], detail, repr(row)[:2000])


def _write_catalog(known: Iterable[ItemFields], seen: set[str], path: Path, published: datetime) -> dict[str, int]:
    """Known metadata plus a bare entry for every event item the source has no metadata for."""
    entries: dict[str, ItemFields] = {}
    for fields in known:
        entries[fields["item_id"]] = fields
    for item_id in seen - entries.keys():
        entries[item_id] = {"item_id": item_id}
    counts = {"catalog_items": 0, "catalog_with_title": 0, "catalog_with_category": 0, "catalog_rejected": 0}
    with GzipLinesWriter(path) as out:
        for item_id in sorted(entries, key=item_sort_key):
            try:
                item = Item(**entries[item_id], ts=published)
            except ValidationError:
                counts["catalog_rejected"] += 1  # e.g. an id longer than 128 chars; its events were rejected too
                continue
            out.write(item.model_dump_json())
            counts["catalog_items"] += 1
            counts["catalog_with_title"] += item.title is not None
            counts["catalog_with_category"] += item.category is not None
    return counts
