"""Taobao UserBehavior (Alibaba Tianchi 649): `user_id,item_id,category_id,behavior_type,timestamp`.

Mapping:
    pv   -> view         (item detail page view)
    fav  -> click        (a favourite is an explicit interest signal, weaker than a cart; the contract has no
                          "favourite" type, and `click` is the next-strongest non-cart signal)
    cart -> add_to_cart
    buy  -> purchase

`context.source_type` keeps the original behaviour, so `fav` stays distinguishable from real clicks.
Timestamps are Unix seconds (UTC). The header row is optional (the original 3.5 GB file has none).
Catalog: `category` = the item's `category_id` (last one seen); no titles.
Reject reasons: `bad_row` (not 5 fields), `missing_user`, `missing_item`, `unknown_type`, `bad_timestamp`.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from pathlib import Path

from streamrec.data_import.common import (
    DataImportError,
    EventFields,
    ItemFields,
    Reject,
    SourceReader,
    csv_raw,
    event_id,
    from_unix_seconds,
    open_text,
    pick_file,
    source_tag,
)

__all__ = ["TaobaoReader"]

_HEADER = ["user_id", "item_id", "category_id", "behavior_type", "timestamp"]
_TYPES = {"pv": "view", "fav": "click", "cart": "add_to_cart", "buy": "purchase"}


class TaobaoReader(SourceReader):
    """Reads `UserBehavior*.csv[.gz]` (or the single csv of a folder)."""

    format_name = "taobao"

    def __init__(self, src: Path) -> None:
        super().__init__(src)
        self._categories: dict[str, str] = {}

    def locate(self, src: Path) -> list[Path]:
        """The one UserBehavior csv."""
        return [pick_file(src, ["*[Uu]ser[Bb]ehavior*.csv*", "*.csv.gz", "*.csv"], "Taobao UserBehavior csv")]

    def rows(self) -> Iterator[EventFields | Reject]:
        """One row per csv line; the header (if any) is skipped."""
        path = self.files[0]
        tag = source_tag(path)
        with open_text(path) as f:
            reader = csv.reader(f)
            for row in reader:
                if reader.line_num == 1 and _is_header(row, path):
                    continue
                yield self._row(row, tag, reader.line_num)

    def _row(self, row: list[str], tag: str, line: int) -> EventFields | Reject:
        where = f"{tag}:{line}"
        if len(row) != len(_HEADER):
            return Reject("bad_row", where, f"expected 5 fields, got {len(row)}", csv_raw(row))
        user, item, category, behavior, ts_text = (v.strip() for v in row)
        if not user:
            return Reject("missing_user", where, "empty user_id", csv_raw(row))
        if not item:
            return Reject("missing_item", where, "empty item_id", csv_raw(row))
        kind = _TYPES.get(behavior)
        if kind is None:
            return Reject("unknown_type", where, f"behavior_type {behavior!r}", csv_raw(row))
        try:
            ts = from_unix_seconds(ts_text)
        except (ValueError, OverflowError):
            return Reject("bad_timestamp", where, f"timestamp {ts_text!r}", csv_raw(row))
        if category:
            self._categories[item] = category
        return {
            "event_id": event_id(self.format_name, tag, line),
            "user_id": user,
            "item_id": item,
            "type": kind,
            "ts": ts,
            "context": {"source_type": behavior},
        }

    def items(self) -> Iterator[ItemFields]:
        """Items with their category id."""
        for item, category in self._categories.items():
            yield {"item_id": item, "category": category}


def _is_header(row: list[str], path: Path) -> bool:
    """True for the header row; a first row that is neither header nor data means a wrong format."""
    if [v.strip().lower() for v in row] == _HEADER:
        return True
    if len(row) != len(_HEADER):
        msg = f"{path}: does not look like Taobao UserBehavior (first row has {len(row)} fields, expected 5)"
        raise DataImportError(msg)
    return False
