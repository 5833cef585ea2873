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

import statistics
from collections import Counter, defaultdict
from collections.abc import Iterator
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path
from zoneinfo import ZoneInfo

from streamrec.data_import.common import EventFields, ItemFields
from streamrec.data_import.delimited import Check, CsvReader, CsvSpec, Refusal, Row, required

__all__ = ["NON_PRODUCT_CODES", "OnlineRetailReader", "parse_uk_time"]

_COLUMNS = ("InvoiceNo", "StockCode", "Description", "Quantity", "InvoiceDate", "UnitPrice", "CustomerID", "Country")
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


# Minute resolution: ~20k distinct invoice times over 540k lines, so each is parsed once.
_invoice_time = lru_cache(maxsize=1 << 16)(parse_uk_time)


def _cancelled(invoice: str) -> bool:
    return invoice.upper().startswith("C")


class OnlineRetailReader(CsvReader):
    """Reads the Online Retail invoice-lines csv (`*.csv.gz` or `*.csv`)."""

    format_name = "online-retail"
    patterns = ("online_retail*.csv*", "*.csv.gz")
    what = "Online Retail invoice lines"
    spec = CsvSpec(
        columns=_COLUMNS,
        wrong_layout="{path}: not an Online Retail file (header {header}, expected {names})",
        checks=(
            Check("cancellation", "InvoiceNo", _cancelled, "InvoiceNo {value!r}"),
            *required(CustomerID="missing_user", StockCode="missing_item"),
        ),
        time=("InvoiceDate",),
        parse_time=_invoice_time,
    )

    def __init__(self, src: Path) -> None:
        super().__init__(src)
        self._titles: defaultdict[str, Counter[str]] = defaultdict(Counter)
        self._prices: defaultdict[str, list[float]] = defaultdict(list)

    def observe(self, row: Row) -> None:
        """Catalog evidence from every line, whether or not it becomes an event."""
        code, description = row["StockCode"], row["Description"]
        if not code or code in NON_PRODUCT_CODES:
            return
        if description:
            self._titles[code][description] += 1
        else:
            self._titles[code]  # noqa: B018 - registers a code that never has a description
        price = None if _cancelled(row["InvoiceNo"]) else _to_float(row["UnitPrice"])
        if price is not None and price >= 0:
            self._prices[code].append(price)

    def event(self, row: Row, ts: datetime) -> EventFields | Refusal:
        """A purchase, unless the quantity, the price or the product code says it is not a sale of a product."""
        quantity = _to_int(row["Quantity"])
        if quantity is None or quantity <= 0:
            return Refusal("bad_quantity", f"Quantity {row['Quantity']!r} on a sale line")
        price = _to_float(row["UnitPrice"])
        if price is None or not price >= 0:  # `not >=` also catches NaN
            return Refusal("bad_price", f"UnitPrice {row['UnitPrice']!r}")
        code = row["StockCode"]
        if code in NON_PRODUCT_CODES:
            return Refusal("non_product", f"StockCode {code!r} ({row['Description']})")
        return {
            "user_id": row["CustomerID"].removesuffix(".0"),  # the original Excel/parquet column is a float
            "item_id": code,
            "type": "purchase",
            "ts": ts,
            "session_id": row["InvoiceNo"],
            "context": {"quantity": quantity, "unit_price": price, "country": row["Country"]},
        }

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
