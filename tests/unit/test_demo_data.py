"""The demo's data: committed Online Retail sample → seeded multi-behaviour stream."""

from __future__ import annotations

import gzip
from collections import Counter
from pathlib import Path

import pytest

from contracts import Event, EventType
from streamrec.data_import.writer import read_catalog, read_events
from streamrec.demo_data import SAMPLE_DIR, browse_events, prepare_demo_data, product_type, with_categories


@pytest.mark.parametrize(
    ("title", "expected"),
    [
        ("WHITE HANGING HEART T-LIGHT HOLDER", "holder"),
        ("JUMBO BAG RED RETROSPOT", "bag"),
        ("SET OF 3 CAKE TINS PANTRY DESIGN", "pantry"),
        ("PACK OF 72 RETROSPOT CAKE CASES", "case"),
        ("GLASS", "glass"),
        ("RED", None),
        (None, None),
    ],
)
def test_product_type_is_the_last_non_modifier_word_singular(title: str | None, expected: str | None) -> None:
    assert product_type(title) == expected


@pytest.fixture(scope="module")
def prepared(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("demo")
    prepare_demo_data(out, users=25, seed=3)
    return out


def test_sample_is_committed_small_and_has_attribution() -> None:
    sample = SAMPLE_DIR / "online_retail_sample.csv.gz"
    assert sample.stat().st_size < 2_000_000
    with gzip.open(sample, "rt", encoding="utf-8") as f:
        assert f.readline().startswith("InvoiceNo,StockCode,Description")
    readme = (SAMPLE_DIR.parent / "README.md").read_text(encoding="utf-8")
    assert "CC BY 4.0" in readme and "Daqing Chen" in readme


def test_prepared_stream_has_every_behaviour_in_time_order_with_purchases_kept(prepared: Path) -> None:
    events = list(read_events(prepared))
    raw = list(read_events(prepared / "raw"))
    kinds = Counter(e.type for e in events)
    assert set(kinds) == set(EventType), kinds
    assert [e.ts for e in events] == sorted(e.ts for e in events)
    assert len({e.event_id for e in events}) == len(events)
    purchases = [e for e in events if e.type is EventType.PURCHASE]
    assert purchases == raw  # ids, times and context of the source purchases untouched, same order
    assert len({e.user_id for e in events}) == 25
    assert all(e.query for e in events if e.type is EventType.SEARCH)
    catalog = read_catalog(prepared)
    titled = [i for i in catalog.values() if i.title]
    assert sum(1 for i in titled if i.category) >= 0.99 * len(titled)  # derived product types


def test_generated_browsing_precedes_its_invoice_and_never_reaches_the_previous_one(prepared: Path) -> None:
    events = list(read_events(prepared))
    invoice_time = {e.session_id: e.ts for e in events if e.type is EventType.PURCHASE}
    by_user: dict[str, list[Event]] = {}
    for e in events:
        by_user.setdefault(e.user_id, []).append(e)
    for user_events in by_user.values():
        last_invoice = None
        for e in user_events:
            if e.type is EventType.PURCHASE:
                last_invoice = e.ts
                continue
            assert e.ts < invoice_time[e.session_id]
            assert last_invoice is None or e.ts > last_invoice


def test_generator_is_deterministic_per_seed(prepared: Path) -> None:
    raw = list(read_events(prepared / "raw"))
    catalog = with_categories(read_catalog(prepared / "raw").values())
    a, b, c = browse_events(raw, catalog, seed=3), browse_events(raw, catalog, seed=3), browse_events(raw, catalog, 4)
    assert a == b
    assert a != c
    assert a == list(read_events(prepared))
