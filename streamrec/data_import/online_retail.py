"""UCI Online Retail: invoice lines `InvoiceNo,StockCode,Description,Quantity,InvoiceDate,UnitPrice,CustomerID,Country`.

Mapping: every non-cancelled invoice line of a known customer -> `purchase` (user = CustomerID, session = InvoiceNo,
item = StockCode; `context` = quantity, unit_price (GBP), country). `InvoiceDate` is UK local time: it is read as
Europe/London (zoneinfo; an ambiguous autumn hour takes the first, BST, occurrence) and converted to UTC.

Rejected (checked in this order, first match wins; all counted, none silently dropped):
    bad_row                wrong number of fields
    cancellation           InvoiceNo starts with "C": a refund/correction, not a user intent event
    missing_user           empty CustomerID (guest checkouts; 25% of lines). A guest has no cross-visit history,
                           so one fake user per invoice would only add one-basket users
    missing_item           empty StockCode
    bad_timestamp          InvoiceDate not `YYYY-MM-DD HH:MM[:SS]`
    bad_quantity           Quantity not an integer, or <= 0 on a non-cancellation line (stock adjustments)
    bad_price              UnitPrice not a number or negative
    non_product            postage, carriage, fees, manual adjustments, samples (`_NON_PRODUCT`): never an
                           item a shopper chose, and recommending "POSTAGE" to everyone would be useless

Catalog: every StockCode seen (except non-product codes); `title` = its most frequent non-empty Description
(ties alphabetical; the rule of `items_from_shared_slice.csv`), `price` = median UnitPrice of its non-cancelled lines.
"""

from __future__ import annotations

import csv
import statistics
from collections import Counter, defaultdict
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

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

__all__ = ["NON_PRODUCT_CODES", "OnlineRetailReader", "parse_uk_time"]

_HEADER = ["InvoiceNo", "StockCode", "Description", "Quantity", "InvoiceDate", "UnitPrice", "CustomerID", "Country"]
_LONDON = ZoneInfo("Europe/London")
NON_PRODUCT_CODES = frozenset(
    {"POST", "DOT", "C2", "M", "m", "D", "S", "B", "BANK CHARGES", "AMAZONFEE", "CRUK", "ADJUST", "ADJUST2"}
)
_MAX_TITLE = 512


def parse_uk_time(text: str) -> datetime:
    """`YYYY-MM-DD HH:MM[:SS]` in UK local time -> tz-aware UTC. Raises ValueError on junk."""
    fmt = "%Y-%m-%d %H:%M:%S" if text.count(":") == 2 else "%Y-%m-%d %H:%M"
    local = datetime.strptime(text, fmt).replace(tzinfo=_LONDON)  # noqa: DTZ007 - zone attached right here
    return local.astimezone(UTC)


class OnlineRetailReader(SourceReader):
    """Reads the Online Retail invoice-lines csv (`*.csv.gz` or `*.csv`)."""

    format_name = "online-retail"

    def __init__(self, src: Path) -> None:
        super().__init__(src)
        self._titles: defaultdict[str, Counter[str]] = defaultdict(Counter)
        self._prices: defaultdict[str, list[float]] = defaultdict(list)
        self._times: dict[str, datetime] = {}  # minute resolution: ~20k distinct values, parse each once

    def locate(self, src: Path) -> list[Path]:
        """The one invoice-lines csv of the folder."""
        return [pick_file(src, ["online_retail*.csv*", "*.csv.gz"], "Online Retail invoice lines")]

    def rows(self) -> Iterator[EventFields | Reject]:
        """One row per invoice line."""
        path = self.files[0]
        tag = source_tag(path)
        with open_text(path, encoding="utf-8") as f:
            reader = csv.reader(f)
            header = next(reader, None)
            if header is None or [h.strip() for h in header] != _HEADER:
                msg = f"{path}: not an Online Retail file (header {header}, expected {_HEADER})"
                raise DataImportError(msg)
            for row in reader:
                yield self._row(row, tag, reader.line_num)

    def _row(self, row: list[str], tag: str, line: int) -> EventFields | Reject:
        where = f"{tag}:{line}"
        if len(row) != len(_HEADER):
            return Reject("bad_row", where, f"expected 8 fields, got {len(row)}", csv_raw(row))
        invoice, code, description, qty_text, date_text, price_text, customer, country = (v.strip() for v in row)
        cancelled = invoice.upper().startswith("C")
        if code and code not in NON_PRODUCT_CODES:
            self._observe(code, description, price_text, cancelled)
        reject = _check(invoice, code, customer, cancelled)
        if reject is not None:
            return Reject(reject[0], where, reject[1], csv_raw(row))
        try:
            ts = self._time(date_text)
        except ValueError:
            return Reject("bad_timestamp", where, f"InvoiceDate {date_text!r}", csv_raw(row))
        quantity = _to_int(qty_text)
        if quantity is None or quantity <= 0:
            return Reject("bad_quantity", where, f"Quantity {qty_text!r} on a sale line", csv_raw(row))
        price = _to_float(price_text)
        if price is None or not price >= 0:  # `not >=` also catches NaN
            return Reject("bad_price", where, f"UnitPrice {price_text!r}", csv_raw(row))
        if code in NON_PRODUCT_CODES:
            return Reject("non_product", where, f"StockCode {code!r} ({description})", csv_raw(row))
        return {
            "event_id": event_id(self.format_name, tag, line),
            "user_id": customer.removesuffix(".0"),  # the original Excel/parquet column is a float
            "item_id": code,
            "type": "purchase",
            "ts": ts,
            "session_id": invoice,
            "context": {"quantity": quantity, "unit_price": price, "country": country},
        }

    def _time(self, text: str) -> datetime:
        ts = self._times.get(text)
        if ts is None:
            ts = self._times[text] = parse_uk_time(text)
        return ts

    def _observe(self, code: str, description: str, price_text: str, cancelled: bool) -> None:
        """Catalog evidence from every line, whether or not it becomes an event."""
        if description:
            self._titles[code][description] += 1
        else:
            self._titles[code]  # noqa: B018 - registers a code that never has a description
        price = None if cancelled else _to_float(price_text)
        if price is not None and price >= 0:
            self._prices[code].append(price)

    def items(self) -> Iterator[ItemFields]:
        """Every product code with its most frequent description and median price."""
        for code, titles in self._titles.items():
            title = min(titles.items(), key=lambda kv: (-kv[1], kv[0]))[0] if titles else None
            prices = self._prices.get(code)
            yield {
                "item_id": code,
                "title": title[:_MAX_TITLE] if title else None,
                "price": statistics.median(prices) if prices else None,
            }


def _check(invoice: str, code: str, customer: str, cancelled: bool) -> tuple[str, str] | None:
    if cancelled:
        return "cancellation", f"InvoiceNo {invoice!r}"
    if not customer:
        return "missing_user", "empty CustomerID"
    if not code:
        return "missing_item", "empty StockCode"
    return None


def _to_int(text: str) -> int | None:
    try:
        return int(text)
    except ValueError:
        return None


def _to_float(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None
