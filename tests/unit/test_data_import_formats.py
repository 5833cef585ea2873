"""Per-format mapping of `streamrec data import` on tiny hand-made fixtures (tests/fixtures/<format>/)."""

from __future__ import annotations

import gzip
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from contracts.records import Event, Item
from streamrec.data_import import ImportReport, import_dataset, read_catalog, read_events

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"


def run(fmt: str, tmp_path: Path, src: Path | None = None) -> tuple[ImportReport, list[Event], dict[str, Item]]:
    out = tmp_path / "out"
    report = import_dataset(fmt, src or FIXTURES / fmt, out)
    assert report.rows_read == report.rows_written + report.rows_rejected
    return report, list(read_events(out)), read_catalog(out)


def rejected(tmp_path: Path) -> list[dict[str, Any]]:
    with gzip.open(tmp_path / "out" / "rejected.jsonl.gz", "rt", encoding="utf-8") as f:
        return [json.loads(line) for line in f]


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0, micro: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, second, micro, tzinfo=UTC)


def test_taobao_mapping_order_and_rejects(tmp_path: Path) -> None:
    report, events, catalog = run("taobao", tmp_path)
    assert (report.rows_read, report.rows_written) == (8, 5)
    assert report.rejected_by_reason == {"bad_row": 1, "bad_timestamp": 1, "unknown_type": 1}
    assert [e.event_id for e in events] == [f"taobao:UserBehavior_sample:{n}" for n in (6, 2, 4, 3, 5)]
    assert [e.type.value for e in events] == ["purchase", "view", "add_to_cart", "click", "view"]
    assert events[3].context == {"source_type": "fav"}
    assert events[1].ts == utc(2017, 11, 24, 17, 21, 10)  # 1511544070 s, UTC
    assert report.event_types == {"add_to_cart": 1, "click": 1, "purchase": 1, "view": 2}
    assert (report.users, report.items) == (2, 3)
    assert {k: v.category for k, v in catalog.items()} == {
        "2268318": "2520377",
        "2333346": "2520771",
        "2576651": "149192",
    }
    assert {r["where"] for r in rejected(tmp_path)} == {f"UserBehavior_sample:{n}" for n in (7, 8, 9)}


def test_taobao_reads_gzip_without_header(tmp_path: Path) -> None:
    lines = (FIXTURES / "taobao" / "UserBehavior_sample.csv").read_text().splitlines()[1:6]
    src = tmp_path / "UserBehavior.csv.gz"
    src.write_bytes(gzip.compress(("\n".join(lines) + "\n").encode()))
    report, events, _ = run("taobao", tmp_path, src)
    assert (report.rows_read, report.rows_rejected) == (5, 0)
    assert events[0].event_id == "taobao:UserBehavior:5"


def test_online_retail_mapping_and_utc(tmp_path: Path) -> None:
    report, events, catalog = run("online-retail", tmp_path)
    assert (report.rows_read, report.rows_written) == (10, 5)
    assert report.rejected_by_reason == {
        "bad_quantity": 1,
        "bad_timestamp": 1,
        "cancellation": 1,
        "missing_user": 1,
        "non_product": 1,
    }
    assert [e.event_id.rsplit(":", 1)[1] for e in events] == ["2", "3", "7", "9", "8"]
    # Winter: GMT = UTC. Summer: BST = UTC+1, so 10:00 local is 09:00 UTC.
    assert events[0].ts == utc(2010, 12, 1, 8, 26)
    assert events[-1].ts == utc(2011, 6, 1, 9, 0)
    assert events[-1].ts.utcoffset() is not None
    third = events[2]
    assert (third.user_id, third.item_id, third.session_id, third.type.value) == (
        "14911",
        "22139",
        "536415",
        "purchase",
    )
    assert third.context == {"quantity": 2, "unit_price": 4.95, "country": "EIRE"}
    assert set(catalog) == {"85123A", "71053", "22139", "21843"}  # POST and D are not products
    assert catalog["85123A"].title == "WHITE HANGING HEART T-LIGHT HOLDER"  # most frequent description
    assert catalog["85123A"].price == pytest.approx(2.55)  # median of 2.55, 2.95, 2.55
    assert catalog["22139"].title == "RETROSPOT TEA SET, CERAMIC"


def test_yoochoose_sessions_as_users_and_exact_ms(tmp_path: Path) -> None:
    report, events, catalog = run("yoochoose", tmp_path)
    assert report.files[0].endswith("yoochoose-clicks-sample_train_full.tsv")
    assert (report.rows_read, report.rows_written) == (6, 4)
    assert report.rejected_by_reason == {"bad_row": 1, "bad_timestamp": 1}
    assert [e.event_id for e in events] == [f"yoochoose:yoochoose-clicks-sample_train_full:{n}" for n in (4, 5, 2, 3)]
    assert events[0].user_id == "s1" and events[0].session_id == "1"
    assert events[0].ts == utc(2014, 4, 2, 11, 10, 0, 500_000)
    assert events[3].ts == utc(2014, 4, 2, 11, 30, 12, 318_000)
    assert {e.type.value for e in events} == {"click"}
    assert len(catalog) == 4 and all(item.title is None for item in catalog.values())


def test_diginetica_views_purchases_and_categories(tmp_path: Path) -> None:
    report, events, catalog = run("diginetica", tmp_path)
    assert (report.rows_read, report.rows_written) == (7, 5)
    assert report.rejected_by_reason == {"bad_row": 1, "bad_timestamp": 1}
    by_id = {e.event_id: e for e in events}
    view = by_id["diginetica:sample_train-item-views:2"]
    assert (view.user_id, view.session_id, view.type.value) == ("s1", "1", "view")
    assert view.ts == utc(2016, 5, 9, 0, 8, 46, 309_000)  # eventdate + 526309 ms
    purchase = by_id["diginetica:train-purchases:2"]
    assert (purchase.user_id, purchase.type.value, purchase.context) == ("18278", "purchase", {"ordernumber": "16421"})
    assert by_id["diginetica:train-purchases:3"].user_id == "s151"
    assert [e.ts for e in events] == sorted(e.ts for e in events)
    assert catalog["81766"].category == "1096" and catalog["999999"].category == "7"
    assert catalog["175874"].category is None  # in an event, not in the category map
    assert report.catalog_items == 6


def test_rees46_types_and_catalog_text(tmp_path: Path) -> None:
    report, events, catalog = run("rees46", tmp_path)
    assert (report.rows_read, report.rows_written) == (7, 5)
    assert report.rejected_by_reason == {"bad_timestamp": 1, "unknown_type": 1}
    assert [e.type.value for e in events] == ["view", "view", "add_to_cart", "remove_from_cart", "purchase"]
    assert events[0].item_id == "44600062" and events[0].ts == utc(2019, 10, 1)
    assert events[2].session_id == "c6bd7419-0748-4172-b1e9-8d2a4b0a6a41"
    assert events[2].context == {"price": 1079.5}
    phone = catalog["1004237"]
    assert (phone.title, phone.category, phone.brand, phone.price) == (
        "apple electronics smartphone",
        "electronics.smartphone",
        "apple",
        1079.5,
    )
    assert catalog["44600062"].category == "2103807459595387724"  # no category_code: the numeric id
    assert catalog["3900821"].brand is None and catalog["3900821"].title == "appliances environment water heater"


def test_otto_events_per_session(tmp_path: Path) -> None:
    report, events, _ = run("otto", tmp_path)
    assert (report.rows_read, report.rows_written) == (7, 5)
    assert report.rejected_by_reason == {"bad_json": 1, "unknown_type": 1}
    assert [e.event_id for e in events] == ["otto:otto_sample:2:0", "otto:otto_sample:1:0", "otto:otto_sample:4:0",
                                            "otto:otto_sample:1:1", "otto:otto_sample:1:2"]  # fmt: skip
    assert [e.type.value for e in events] == ["click", "click", "click", "add_to_cart", "purchase"]
    assert events[1].user_id == "s0" and events[1].ts == utc(2022, 7, 31, 22, 0, 0, 25_000)


def test_movielens_ratings_titles_latin1(tmp_path: Path) -> None:
    report, events, catalog = run("movielens", tmp_path)
    assert (report.rows_read, report.rows_written) == (5, 3)
    assert report.rejected_by_reason == {"bad_rating": 1, "bad_row": 1}
    assert [e.event_id for e in events] == ["movielens:u.data:3", "movielens:u.data:1", "movielens:u.data:2"]
    assert events[0].type.value == "click" and events[0].context == {"rating": 1}
    assert catalog["377"].title == "Misérables, Les (1995)"
    assert {k: v.category for k, v in catalog.items()} == {"242": "Comedy", "267": None, "302": "Crime", "377": "Drama"}


def test_amazon_synthetic_monotone_time(tmp_path: Path) -> None:
    report, events, catalog = run("amazon-s3rec", tmp_path)
    assert (report.rows_read, report.rows_written) == (8, 7)
    assert report.rejected_by_reason == {"empty_sequence": 1}
    user1 = [e for e in events if e.user_id == "1"]
    assert [e.item_id for e in user1] == ["1", "2", "3"]
    assert [e.ts for e in user1] == [utc(2000, 1, 1), utc(2000, 1, 2), utc(2000, 1, 3)]
    assert all(e.type.value == "purchase" and e.context == {"synthetic_ts": True} for e in events)
    assert [e.event_id for e in events[:3]] == [
        "amazon-s3rec:Sample:1:0",
        "amazon-s3rec:Sample:2:0",
        "amazon-s3rec:Sample:4:0",
    ]
    assert {k: v.category for k, v in catalog.items()} == {
        "1": "attr:20",
        "2": "attr:20",
        "3": "attr:30",
        "4": "attr:20",
    }
    assert all(v.title and v.category in v.title.split() for v in catalog.values())  # every attribute, as text


@pytest.mark.parametrize(
    ("fmt", "name", "content"),
    [
        ("online-retail", "online_retail_x.csv", "a,b\n1,2\n"),
        ("yoochoose", "clicks.tsv", "a\tb\tc\n1\t2\t3\n"),
        ("rees46", "x.csv", "user,item\n1,2\n"),
        ("taobao", "UserBehavior.csv", "1;2;3\n"),
        ("movielens", "u.data", "1|2|3\n"),
        ("amazon-s3rec", "x.txt", "user items\n"),
        ("diginetica", "x.csv", "a;b;c\n"),
    ],
)
def test_wrong_layout_is_a_clear_error(tmp_path: Path, fmt: str, name: str, content: str) -> None:
    from streamrec.data_import import DataImportError

    src = tmp_path / name
    src.write_text(content)
    with pytest.raises(DataImportError, match=r"not a|does not look like"):
        import_dataset(fmt, src, tmp_path / "out")
    assert not (tmp_path / "out" / "events.jsonl.gz").exists()
