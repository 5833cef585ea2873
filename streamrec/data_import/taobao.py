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

from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

from streamrec.data_import.common import EventFields, ItemFields, from_unix_seconds
from streamrec.data_import.delimited import CsvReader, CsvSpec, Header, Row, required, unknown_type

__all__ = ["TaobaoReader"]

_TYPES = {"pv": "view", "fav": "click", "cart": "add_to_cart", "buy": "purchase"}


class TaobaoReader(CsvReader):
    """Reads `UserBehavior*.csv[.gz]` (or the single csv of a folder)."""

    format_name = "taobao"
    patterns = ("*[Uu]ser[Bb]ehavior*.csv*", "*.csv.gz", "*.csv")
    what = "Taobao UserBehavior csv"
    spec = CsvSpec(
        columns=("user_id", "item_id", "category_id", "behavior_type", "timestamp"),
        header=Header.OPTIONAL,
        wrong_layout="{path}: does not look like Taobao UserBehavior (first row has {got} fields, expected {count})",
        checks=(*required(user_id="missing_user", item_id="missing_item"), unknown_type("behavior_type", _TYPES)),
        time=("timestamp",),
        parse_time=from_unix_seconds,
    )

    def __init__(self, src: Path) -> None:
        super().__init__(src)
        self._categories: dict[str, str] = {}

    def event(self, row: Row, ts: datetime) -> EventFields:
        """The behaviour mapped to a contract type (kept in `context.source_type`); notes the item's category."""
        item, behavior = row["item_id"], row["behavior_type"]
        if row["category_id"]:
            self._categories[item] = row["category_id"]
        return {
            "user_id": row["user_id"],
            "item_id": item,
            "type": _TYPES[behavior],
            "ts": ts,
            "context": {"source_type": behavior},
        }

    def items(self) -> Iterator[ItemFields]:
        """Items with their category id."""
        for item, category in self._categories.items():
            yield {"item_id": item, "category": category}
