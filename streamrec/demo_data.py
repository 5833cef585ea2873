"""The demo's data: the shipped UCI Online Retail sample, enriched into a seeded multi-behaviour stream.

Online Retail only has purchases (invoice lines) and no categories. `prepare_demo_data` imports the committed
sample with the regular importer (`streamrec data import --format online-retail`), then, deterministically
for a given seed:

* **category** of every catalog item = its product type, derived from the title: the last word that is not a
  colour, pattern, size or quantity word, singular (`WHITE HANGING HEART T-LIGHT HOLDER` → `holder`,
  `JUMBO BAG RED RETROSPOT` → `bag`). Documented as derived; the source has no category.
* **browsing around every invoice** (one invoice = one shop session, all its lines share the invoice time T):
  an optional `search` for the product type of one bought item; for each bought item a `view` (p=0.5) and a
  `click` (p=0.3) then an `add_to_cart`; 0–3 *distractors* (items of the same product type, viewed; some
  added to the cart and removed again); then the original `purchase` lines at T. Generated events are spread
  evenly over the minutes before T, never before the user's previous invoice, so time order and session
  order hold. Their ids derive from the purchase ids (`<purchase id>:view`, …) or `gen:<invoice>:<n>`.

Purchases keep their ids, times and context. The output is two canonical files (`events.jsonl.gz` sorted by
time, `catalog.jsonl.gz`), the same layout `streamrec train` and `streamrec replay` read.
"""

from __future__ import annotations

import gzip
import random
from collections import defaultdict
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from pathlib import Path

from contracts import Event, EventType, Item

__all__ = ["SAMPLE_DIR", "browse_events", "prepare_demo_data", "product_type", "with_categories"]

SAMPLE_DIR = Path(__file__).resolve().parent.parent / "data" / "online-retail"

# Title words that describe a variant rather than what the product is.
_MODIFIERS = frozenset(
    """RED PINK BLUE WHITE GREEN BLACK IVORY GOLD SILVER CREAM PURPLE YELLOW ORANGE BROWN GREY GRAY CHOCOLATE PASTEL
    RETROSPOT POLKADOT PAISLEY SPACEBOY DESIGN DESIGNS ASSORTED LARGE SMALL MEDIUM MINI JUMBO SET OF THE AND WITH IN
    VINTAGE LONDON GIRL BOY SKULLS SKULL WOODLAND DOLLY SPOTTY SPOTS STRIPE STRIPES FLORAL COLOUR COLOURS
    COL ANTIQUE CHRISTMAS BIRD BIRDS ROSE ROSES APPLES LOVE HEART HEARTS STAR STARS FLOWER FLOWERS""".split()
)


def product_type(title: str | None) -> str | None:
    """The product type of an Online Retail title (see the module docstring); None when no word qualifies."""
    words = [w for w in (title or "").upper().replace(",", " ").split() if w.isalpha() and len(w) >= 3]
    for word in reversed(words):
        if word not in _MODIFIERS:
            singular = word[:-1] if word.endswith("S") and not word.endswith("SS") and len(word) > 3 else word
            return singular.lower()
    return None


def with_categories(catalog: Iterable[Item]) -> dict[str, Item]:
    """The catalog with `category` = derived product type wherever the item has none."""
    out: dict[str, Item] = {}
    for item in catalog:
        category = item.category or product_type(item.title)
        out[item.item_id] = item.model_copy(update={"category": category})
    return out


def _event(eid: str, user: str, item: str | None, kind: EventType, ts: datetime, session: str | None) -> Event:
    return Event(event_id=eid, user_id=user, item_id=item, type=kind, ts=ts, session_id=session)


def _session_plan(
    purchases: Sequence[Event], catalog: dict[str, Item], by_type: dict[str, list[str]], rng: random.Random
) -> list[tuple[str, str | None, EventType, str | None]]:
    """(event id, item, type, query) of the browsing before one invoice, in order (times assigned later)."""
    first = purchases[0]
    session = first.session_id or first.event_id
    plan: list[tuple[str, str | None, EventType, str | None]] = []
    types = [catalog[p.item_id].category if p.item_id in catalog else None for p in purchases]
    searchable = [t for t in types if t]
    if searchable and rng.random() < 0.5:
        plan.append((f"gen:{session}:search", None, EventType.SEARCH, rng.choice(searchable)))
    n = 0
    for p, kind in zip(purchases, types, strict=True):
        if rng.random() < 0.5:
            plan.append((f"{p.event_id}:view", p.item_id, EventType.VIEW, None))
        if rng.random() < 0.3:
            plan.append((f"{p.event_id}:click", p.item_id, EventType.CLICK, None))
        # A distractor now and then: same product type, looked at, sometimes carted and dropped again.
        if kind and rng.random() < 0.15 and n < 3:
            others = [i for i in by_type.get(kind, ()) if i != p.item_id]
            if others:
                other, n = rng.choice(others), n + 1
                plan.append((f"gen:{session}:{n}:view", other, EventType.VIEW, None))
                if rng.random() < 0.4:
                    plan.append((f"gen:{session}:{n}:cart", other, EventType.ADD_TO_CART, None))
                    plan.append((f"gen:{session}:{n}:remove", other, EventType.REMOVE_FROM_CART, None))
        plan.append((f"{p.event_id}:cart", p.item_id, EventType.ADD_TO_CART, None))
    return plan


def browse_events(purchases: Sequence[Event], catalog: dict[str, Item], seed: int = 0) -> list[Event]:
    """Purchases plus generated browsing (module docstring), sorted by time; deterministic for a seed."""
    by_type: defaultdict[str, list[str]] = defaultdict(list)
    for item in catalog.values():
        if item.category:
            by_type[item.category].append(item.item_id)
    sessions: defaultdict[tuple[str, str], list[Event]] = defaultdict(list)
    for e in purchases:
        sessions[(e.user_id, e.session_id or e.event_id)].append(e)
    previous: dict[str, datetime] = {}
    out: list[Event] = []
    for (user, session), lines in sorted(sessions.items(), key=lambda kv: (kv[1][0].ts, kv[0])):
        rng = random.Random(f"{seed}:{user}:{session}")
        end = min(e.ts for e in lines)
        plan = _session_plan(lines, catalog, by_type, rng)
        span = timedelta(seconds=min(45.0 * len(plan), 1800.0))
        start = max(end - span, previous.get(user, end - span) + timedelta(seconds=1))
        step = (end - start) / (len(plan) + 1)
        for k, (eid, item_id, kind, query) in enumerate(plan, start=1):
            e = _event(eid, user, item_id, kind, start + step * k, session)
            out.append(e.model_copy(update={"query": query}) if query else e)
        out.extend(lines)
        previous[user] = max(e.ts for e in lines)
    out.sort(key=lambda e: e.ts)  # stable: within one instant, generated events stay before their purchase
    return out


def _write_jsonl_gz(path: Path, lines: Iterable[str]) -> None:
    tmp = path.with_suffix(".tmp")
    with open(tmp, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0, filename="") as gz:
        for line in lines:
            gz.write(line.encode() + b"\n")
    tmp.replace(path)


def _first_customers(src: Path, n: int, out: Path) -> Path:
    """Copy of the Online Retail csv with only the rows of the first `n` customer ids (sorted), for quick runs."""
    import csv
    import io

    path = src if src.is_file() else sorted(src.glob("online_retail*.csv*"))[0]
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8", newline="") as f:
        rows = list(csv.reader(f))
    keep = set(sorted({r[6] for r in rows[1:] if len(r) > 6 and r[6]})[:n])
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerows([rows[0], *(r for r in rows[1:] if len(r) > 6 and r[6] in keep)])
    out.mkdir(parents=True, exist_ok=True)
    target = out / "online_retail_sample.csv.gz"
    with open(target, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0, filename="") as gz:
        gz.write(buf.getvalue().encode("utf-8"))
    return target


def prepare_demo_data(out: Path, *, src: Path = SAMPLE_DIR, users: int | None = None, seed: int = 0) -> tuple[int, int]:
    """Import the sample into `out/raw`, write the enriched `out/events.jsonl.gz` + `out/catalog.jsonl.gz`.

    Args:
        out: Output folder (created).
        src: Online Retail folder or file (default: the committed sample under `data/online-retail/`).
        users: Keep only this many customers (the first in sorted id order), for a quick run; None keeps all.
        seed: Seed of the generated browsing.

    Returns:
        (events written, catalog items written).
    """
    from streamrec.data_import import import_dataset
    from streamrec.data_import.writer import read_catalog, read_events

    raw = out / "raw"
    if users is not None:
        src = _first_customers(src, users, out / "source")
    import_dataset("online-retail", src, raw)
    purchases = list(read_events(raw))
    catalog = with_categories(read_catalog(raw).values())
    events = browse_events(purchases, catalog, seed)
    _write_jsonl_gz(out / "events.jsonl.gz", (e.model_dump_json(exclude_none=True) for e in events))
    _write_jsonl_gz(out / "catalog.jsonl.gz", (i.model_dump_json() for i in catalog.values()))
    return len(events), len(catalog)
