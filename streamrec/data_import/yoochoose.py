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

from datetime import datetime

from streamrec.data_import.common import EventFields, from_unix_ms
from streamrec.data_import.delimited import CsvReader, CsvSpec, Row, required

__all__ = ["YoochooseReader", "parse_seconds_ms"]


def parse_seconds_ms(text: str) -> int:
    """`"1396437466.94"` -> 1396437466940 (Unix ms), exactly. Raises ValueError on junk or sub-ms digits."""
    whole, _, frac = text.partition(".")
    if not whole.lstrip("-").isdigit() or (frac and (not frac.isdigit() or len(frac) > 3)):
        msg = f"not Unix seconds with at most 3 decimals: {text!r}"
        raise ValueError(msg)
    return int(whole) * 1000 + int(frac.ljust(3, "0") if frac else "0")


def _clicked_at(text: str) -> datetime:
    return from_unix_ms(parse_seconds_ms(text))


class YoochooseReader(CsvReader):
    """Reads one session-rec YooChoose split (`*.tsv`/`*.txt`)."""

    format_name = "yoochoose"
    patterns = ("*train_full*", "*.tsv", "*.txt")
    what = "YooChoose clicks"
    spec = CsvSpec(
        columns=("SessionId", "ItemId", "Time"),
        delimiter="\t",
        wrong_layout="{path}: not a session-rec YooChoose file (header {header}, expected {names})",
        checks=required(SessionId="missing_session", ItemId="missing_item"),
        time=("Time",),
        parse_time=_clicked_at,
        time_error_detail=True,
    )

    def event(self, row: Row, ts: datetime) -> EventFields:
        """A click of the session-as-user."""
        session = row["SessionId"]
        return {"user_id": f"s{session}", "item_id": row["ItemId"], "type": "click", "ts": ts, "session_id": session}
