"""REES46 multi-category store (Open CDP): `event_time,event_type,product_id,category_id,category_code,brand,price,
user_id,user_session`.

Mapping: view -> view, cart -> add_to_cart, remove_from_cart -> remove_from_cart, purchase -> purchase;
`session_id` = user_session, `context.price` = price. `event_time` is `YYYY-MM-DD HH:MM:SS UTC`.
Catalog (last row of each product wins): `brand`; `category` = category_code (e.g. `electronics.smartphone`),
else the numeric category_id; `title` = brand + category_code words (`"apple electronics smartphone"`), the only
text the source has; `price` = last price seen.
Reject reasons: `bad_row`, `missing_user`, `missing_item`, `unknown_type`, `bad_timestamp`.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

from streamrec.data_import.common import EventFields, ItemFields
from streamrec.data_import.delimited import CsvReader, CsvSpec, Row, required, unknown_type

__all__ = ["Rees46Reader"]

_COLUMNS = (
    "event_time",
    "event_type",
    "product_id",
    "category_id",
    "category_code",
    "brand",
    "price",
    "user_id",
    "user_session",
)
_TYPES = {"view": "view", "cart": "add_to_cart", "remove_from_cart": "remove_from_cart", "purchase": "purchase"}


def _parse_time(text: str) -> datetime:
    if not text.endswith(" UTC"):
        msg = f"expected 'YYYY-MM-DD HH:MM:SS UTC', got {text!r}"
        raise ValueError(msg)
    return datetime.strptime(text[:-4], "%Y-%m-%d %H:%M:%S").replace(tzinfo=UTC)


class Rees46Reader(CsvReader):
    """Reads one REES46 monthly csv (or a sample of it)."""

    format_name = "rees46"
    patterns = ("*.csv", "*.csv.gz")
    what = "REES46 events csv"
    spec = CsvSpec(
        columns=_COLUMNS,
        wrong_layout="{path}: not a REES46 events file (header {header}, expected {names})",
        checks=(*required(user_id="missing_user", product_id="missing_item"), unknown_type("event_type", _TYPES)),
        time=("event_time",),
        parse_time=_parse_time,
        time_error_detail=True,
    )

    def __init__(self, src: Path) -> None:
        super().__init__(src)
        self._items: dict[str, ItemFields] = {}

    def event(self, row: Row, ts: datetime) -> EventFields:
        """The event with its price; the product's catalog entry is updated (last row wins)."""
        item, price = row["product_id"], _price(row["price"])
        self._items[item] = _item(item, row["category_id"], row["category_code"], row["brand"], price)
        return {
            "user_id": row["user_id"],
            "item_id": item,
            "type": _TYPES[row["event_type"]],
            "ts": ts,
            "session_id": row["user_session"] or None,
            "context": {"price": price} if price is not None else {},
        }

    def items(self) -> Iterator[ItemFields]:
        """Every product seen, with its last brand/category/price."""
        return iter(self._items.values())


def _price(text: str) -> float | None:
    try:
        price = float(text)
    except ValueError:
        return None
    return price if price >= 0 else None


def _item(item: str, category_id: str, code: str, brand: str, price: float | None) -> ItemFields:
    words = code.replace(".", " ").replace("_", " ")
    title = " ".join(part for part in (brand, words) if part)
    return {
        "item_id": item,
        "title": title[:512] or None,
        "category": (code or category_id)[:256] or None,
        "brand": brand[:256] or None,
        "price": price,
    }
