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

import csv
from collections.abc import Iterator
from datetime import UTC, datetime
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
    pick_file,
    source_tag,
)

__all__ = ["Rees46Reader"]

_HEADER = [
    "event_time",
    "event_type",
    "product_id",
    "category_id",
    "category_code",
    "brand",
    "price",
    "user_id",
    "user_session",
]
_TYPES = {"view": "view", "cart": "add_to_cart", "remove_from_cart": "remove_from_cart", "purchase": "purchase"}


def _parse_time(text: str) -> datetime:
    if not text.endswith(" UTC"):
        msg = f"expected 'YYYY-MM-DD HH:MM:SS UTC', got {text!r}"
        raise ValueError(msg)
    return datetime.strptime(text[:-4], "%Y-%m-%d %H:%M:%S").replace(tzinfo=UTC)


class Rees46Reader(SourceReader):
    """Reads one REES46 monthly csv (or a sample of it)."""

    format_name = "rees46"

    def __init__(self, src: Path) -> None:
        super().__init__(src)
        self._items: dict[str, ItemFields] = {}

    def locate(self, src: Path) -> list[Path]:
        """The one csv of the folder."""
        return [pick_file(src, ["*.csv", "*.csv.gz"], "REES46 events csv")]

    def rows(self) -> Iterator[EventFields | Reject]:
        """One row per event line."""
        path = self.files[0]
        tag = source_tag(path)
        with open_text(path) as f:
            reader = csv.reader(f)
            header = next(reader, None)
            if header is None or [h.strip() for h in header] != _HEADER:
                msg = f"{path}: not a REES46 events file (header {header}, expected {_HEADER})"
                raise DataImportError(msg)
            for row in reader:
                yield self._row(row, tag, reader.line_num)

    def _row(self, row: list[str], tag: str, line: int) -> EventFields | Reject:
        where = f"{tag}:{line}"
        if len(row) != len(_HEADER):
            return Reject("bad_row", where, f"expected 9 fields, got {len(row)}", csv_raw(row))
        when, kind_text, item, category_id, code, brand, price_text, user, session = (v.strip() for v in row)
        if not user:
            return Reject("missing_user", where, "empty user_id", csv_raw(row))
        if not item:
            return Reject("missing_item", where, "empty product_id", csv_raw(row))
        kind = _TYPES.get(kind_text)
        if kind is None:
            return Reject("unknown_type", where, f"event_type {kind_text!r}", csv_raw(row))
        try:
            ts = _parse_time(when)
        except ValueError as exc:
            return Reject("bad_timestamp", where, str(exc), csv_raw(row))
        price = _price(price_text)
        self._items[item] = _item(item, category_id, code, brand, price)
        return {
            "event_id": event_id(self.format_name, tag, line),
            "user_id": user,
            "item_id": item,
            "type": kind,
            "ts": ts,
            "session_id": session or None,
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
