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
from functools import lru_cache
from pathlib import Path

from streamrec.data_import.common import DataImportError, EventFields, ItemFields, open_text
from streamrec.data_import.delimited import CsvReader, CsvSpec, Header, Row, missing

__all__ = ["DigineticaReader"]

_VIEWS = ("sessionid", "userid", "itemid", "timeframe", "eventdate")
_PURCHASES = ("sessionid", "userid", "timeframe", "eventdate", "ordernumber", "itemid")
_CATEGORIES = ("itemid", "categoryid")
_NO_USER = frozenset({"", "NA", "na", "NULL", "null"})


def _header(path: Path) -> tuple[str, ...]:
    with open_text(path) as f:
        first = next(csv.reader(f, delimiter=";"), [])
    return tuple(name.strip().lower().replace("_", "") for name in first)


@lru_cache(maxsize=4096)  # a few hundred distinct days over millions of rows
def _day(text: str) -> datetime:
    return datetime.strptime(text, "%Y-%m-%d").replace(tzinfo=UTC)


def _session_time(day_text: str, timeframe: str) -> datetime:
    day = _day(day_text)
    offset_ms = int(timeframe)
    if offset_ms < 0:
        msg = "negative timeframe"
        raise ValueError(msg)
    return day + timedelta(milliseconds=offset_ms)


def _layout(columns: tuple[str, ...]) -> CsvSpec:
    """Views and purchases differ only in their columns (the header was recognised by `locate`)."""
    return CsvSpec(
        columns=columns,
        delimiter=";",
        header=Header.SKIP,
        checks=(missing("sessionid", "missing_session", "sessionId"), missing("itemid", "missing_item", "itemId")),
        time=("eventdate", "timeframe"),
        parse_time=_session_time,
    )


_LAYOUTS = {"views": _layout(_VIEWS), "purchases": _layout(_PURCHASES)}


class DigineticaReader(CsvReader):
    """Reads the views and/or purchases csv of a DIGINETICA folder, plus its category map."""

    format_name = "diginetica"

    def __init__(self, src: Path) -> None:
        self._roles: dict[Path, str] = {}
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

    def event_files(self) -> list[tuple[Path, CsvSpec]]:
        """Views, then purchases."""
        return [(path, _LAYOUTS[self._roles[path]]) for path in self.files if self._roles[path] != "categories"]

    def event(self, row: Row, ts: datetime) -> EventFields:
        """A view, or a purchase with its order number; a session without a user id is its own user."""
        session, user = row["sessionid"], row["userid"]
        purchase = "ordernumber" in row  # only the purchases layout has the column
        event: EventFields = {
            "user_id": user if user not in _NO_USER else f"s{session}",
            "item_id": row["itemid"],
            "type": "purchase" if purchase else "view",
            "ts": ts,
            "session_id": session,
        }
        if purchase:
            event["context"] = {"ordernumber": row["ordernumber"]}
        return event

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
