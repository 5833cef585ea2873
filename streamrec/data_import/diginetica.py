"""DIGINETICA (CIKM Cup 2016): `;`-separated item views, purchases and the item -> category map.

Files of a folder: `*item-views*.csv` (views), `train-purchases.csv` (purchases), `product-categories.csv` (catalog);
one of the event files may be given alone (recognised by its header; both the raw `sessionId;userId;itemId` and
SR-GNN's `session_id;user_id;item_id` spellings).

Mapping: views -> view, purchases -> purchase (`context.ordernumber`). `user_id` = userId when present, else
`"s<sessionId>"` (userId is "NA" or empty for ~63% of sessions); `session_id` = sessionId.
Timestamps: `eventdate` (a day, taken as 00:00 UTC; the source has no time zone) + `timeframe` milliseconds since
the start of the session. The order inside a session is exact; the order across sessions of one day is not
(sessions have no start time in the data).
Catalog: `category` = categoryId from `product-categories.csv`; no titles (product names are not available).
Reject reasons: `bad_row`, `missing_session`, `missing_item`, `bad_timestamp`.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

from streamrec.data_import.common import (
    DataImportError,
    EventFields,
    ItemFields,
    Reject,
    SourceReader,
    csv_raw,
    event_id,
    open_text,
    source_tag,
)

__all__ = ["DigineticaReader"]

_VIEWS = ("sessionid", "userid", "itemid", "timeframe", "eventdate")
_PURCHASES = ("sessionid", "userid", "timeframe", "eventdate", "ordernumber", "itemid")
_CATEGORIES = ("itemid", "categoryid")
_NO_USER = frozenset({"", "NA", "na", "NULL", "null"})


def _header(path: Path) -> tuple[str, ...]:
    with open_text(path) as f:
        first = next(csv.reader(f, delimiter=";"), [])
    return tuple(name.strip().lower().replace("_", "") for name in first)


def _day(text: str) -> datetime:
    return datetime.strptime(text, "%Y-%m-%d").replace(tzinfo=UTC)


class DigineticaReader(SourceReader):
    """Reads the views and/or purchases csv of a DIGINETICA folder, plus its category map."""

    format_name = "diginetica"

    def __init__(self, src: Path) -> None:
        self._roles: dict[Path, str] = {}
        self._days: dict[str, datetime] = {}
        super().__init__(src)

    def locate(self, src: Path) -> list[Path]:
        """Every csv of the layout, by header; views before purchases, then the category map."""
        candidates = [src] if src.is_file() else sorted(src.glob("*.csv")) + sorted(src.glob("*.csv.gz"))
        roles = {_VIEWS: "views", _PURCHASES: "purchases", _CATEGORIES: "categories"}
        for path in candidates:
            role = roles.get(_header(path))
            if role is None and src.is_file():
                msg = f"{path}: not a DIGINETICA views/purchases/categories file (header {_header(path)})"
                raise DataImportError(msg)
            if role is not None:
                self._roles[path] = role
        order = {"views": 0, "purchases": 1, "categories": 2}
        files = sorted(self._roles, key=lambda p: (order[self._roles[p]], p.name))
        if not any(self._roles[p] != "categories" for p in files):
            msg = f"{src}: no DIGINETICA views or purchases csv found"
            raise DataImportError(msg)
        return files

    def rows(self) -> Iterator[EventFields | Reject]:
        """Views, then purchases, one row per csv line."""
        for path in self.files:
            role = self._roles[path]
            if role == "categories":
                continue
            tag = source_tag(path)
            with open_text(path) as f:
                reader = csv.reader(f, delimiter=";")
                next(reader)
                for row in reader:
                    yield self._row(row, role, tag, reader.line_num)

    def _row(self, row: list[str], role: str, tag: str, line: int) -> EventFields | Reject:
        where = f"{tag}:{line}"
        names = _VIEWS if role == "views" else _PURCHASES
        if len(row) != len(names):
            return Reject("bad_row", where, f"expected {len(names)} fields, got {len(row)}", csv_raw(row, ";"))
        fields = dict(zip(names, (v.strip() for v in row), strict=True))
        session, item = fields["sessionid"], fields["itemid"]
        if not session:
            return Reject("missing_session", where, "empty sessionId", csv_raw(row, ";"))
        if not item:
            return Reject("missing_item", where, "empty itemId", csv_raw(row, ";"))
        try:
            ts = self._time(fields["eventdate"], fields["timeframe"])
        except (ValueError, OverflowError):
            detail = f"eventdate {fields['eventdate']!r} / timeframe {fields['timeframe']!r}"
            return Reject("bad_timestamp", where, detail, csv_raw(row, ";"))
        user = fields["userid"]
        event: EventFields = {
            "event_id": event_id(self.format_name, tag, line),
            "user_id": user if user not in _NO_USER else f"s{session}",
            "item_id": item,
            "type": "view" if role == "views" else "purchase",
            "ts": ts,
            "session_id": session,
        }
        if role == "purchases":
            event["context"] = {"ordernumber": fields["ordernumber"]}
        return event

    def _time(self, day_text: str, timeframe: str) -> datetime:
        day = self._days.get(day_text)
        if day is None:
            day = self._days[day_text] = _day(day_text)
        offset_ms = int(timeframe)
        if offset_ms < 0:
            msg = "negative timeframe"
            raise ValueError(msg)
        return day + timedelta(milliseconds=offset_ms)

    def items(self) -> Iterator[ItemFields]:
        """Every item of `product-categories.csv` with its category id."""
        for path in self.files:
            if self._roles[path] != "categories":
                continue
            with open_text(path) as f:
                reader = csv.reader(f, delimiter=";")
                next(reader)
                for row in reader:
                    if len(row) == 2 and row[0].strip():
                        yield {"item_id": row[0].strip(), "category": row[1].strip() or None}
