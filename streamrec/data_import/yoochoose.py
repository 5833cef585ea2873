"""YooChoose / RecSys Challenge 2015 clicks, session-rec layout: tab-separated `SessionId ItemId Time` with header.

Mapping: every row -> `click`. YooChoose has no user ids, so the session is the user: `user_id = "s<SessionId>"`,
`session_id = SessionId`. `Time` is Unix seconds with a millisecond fraction (UTC), parsed exactly as text
(no float rounding). A folder is imported from its `*train_full*` file (= `train_tr` + `train_valid`); pass a file
to import another split. Ids contain the file name, so importing two overlapping splits duplicates clicks under
different ids: import one of them.
Catalog: no metadata (bare item ids).
Reject reasons: `bad_row`, `missing_session`, `missing_item`, `bad_timestamp`.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from pathlib import Path

from streamrec.data_import.common import (
    DataImportError,
    EventFields,
    Reject,
    SourceReader,
    csv_raw,
    event_id,
    from_unix_ms,
    open_text,
    pick_file,
    source_tag,
)

__all__ = ["YoochooseReader", "parse_seconds_ms"]

_HEADER = ["SessionId", "ItemId", "Time"]


def parse_seconds_ms(text: str) -> int:
    """`"1396437466.94"` -> 1396437466940 (Unix ms), exactly. Raises ValueError on junk or sub-ms digits."""
    whole, _, frac = text.partition(".")
    if not whole.lstrip("-").isdigit() or (frac and (not frac.isdigit() or len(frac) > 3)):
        msg = f"not Unix seconds with at most 3 decimals: {text!r}"
        raise ValueError(msg)
    return int(whole) * 1000 + int(frac.ljust(3, "0") if frac else "0")


class YoochooseReader(SourceReader):
    """Reads one session-rec YooChoose split (`*.tsv`/`*.txt`)."""

    format_name = "yoochoose"

    def locate(self, src: Path) -> list[Path]:
        """`*train_full*` of a folder, else its single tsv."""
        return [pick_file(src, ["*train_full*", "*.tsv", "*.txt"], "YooChoose clicks")]

    def rows(self) -> Iterator[EventFields | Reject]:
        """One row per click."""
        path = self.files[0]
        tag = source_tag(path)
        with open_text(path) as f:
            reader = csv.reader(f, delimiter="\t")
            header = next(reader, None)
            if header is None or [h.strip() for h in header] != _HEADER:
                msg = f"{path}: not a session-rec YooChoose file (header {header}, expected {_HEADER})"
                raise DataImportError(msg)
            for row in reader:
                yield self._row(row, tag, reader.line_num)

    def _row(self, row: list[str], tag: str, line: int) -> EventFields | Reject:
        where = f"{tag}:{line}"
        if len(row) != len(_HEADER):
            return Reject("bad_row", where, f"expected 3 fields, got {len(row)}", csv_raw(row, "\t"))
        session, item, time_text = (v.strip() for v in row)
        if not session:
            return Reject("missing_session", where, "empty SessionId", csv_raw(row, "\t"))
        if not item:
            return Reject("missing_item", where, "empty ItemId", csv_raw(row, "\t"))
        try:
            ts = from_unix_ms(parse_seconds_ms(time_text))
        except (ValueError, OverflowError) as exc:
            return Reject("bad_timestamp", where, str(exc), csv_raw(row, "\t"))
        return {
            "event_id": event_id(self.format_name, tag, line),
            "user_id": f"s{session}",
            "item_id": item,
            "type": "click",
            "ts": ts,
            "session_id": session,
        }
