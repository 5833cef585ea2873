"""Import every staged real dataset (../shared/data) and check counts against its README and every line against
the contracts and the JSON Schemas. Marked `shared_data`: skipped where ../shared/data is absent.
"""

from __future__ import annotations

import csv
import gzip
import json
import os
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import jsonschema_rs
import pytest

from contracts.records import Event, Item
from streamrec.data_import import ImportReport, import_dataset, read_events

pytestmark = pytest.mark.shared_data

REPO = Path(__file__).resolve().parents[2]
SHARED = Path(os.environ.get("STREAMREC_SHARED_DATA", REPO.parent / "shared" / "data"))
SCHEMAS = REPO / "schemas"

# format -> (folder, README facts: rows read, event types, users, items)
EXPECTED: dict[str, tuple[str, int, dict[str, int], int, int]] = {
    "taobao": (
        "taobao_userbehavior",
        72_932,
        {"view": 65_559, "add_to_cart": 3_883, "click": 1_969, "purchase": 1_521},
        814,
        48_750,
    ),
    "yoochoose": ("yoochoose_rsc15_sample", 70_278, {"click": 70_278}, 17_794, 2_933),
    "otto": ("otto_sample", 862, {"click": 800, "add_to_cart": 52, "purchase": 10}, 20, 0),
    "rees46": ("rees46_multicategory_sample", 1_000, {"view": 987, "add_to_cart": 3, "purchase": 10}, 330, 534),
    "movielens": ("movielens_100k", 100_000, {"click": 100_000}, 943, 1_682),
    "amazon-s3rec": ("amazon_beauty_s3rec", 198_502, {"purchase": 198_502}, 22_363, 12_101),
    "diginetica": ("diginetica_cikm16", 30_416, {"view": 12_391, "purchase": 18_025}, 0, 0),
    "online-retail": ("online_retail_uci", 431_673, {}, 0, 0),
}


def _require_shared() -> None:
    if not SHARED.is_dir():
        pytest.skip(f"shared datasets not found at {SHARED} (set STREAMREC_SHARED_DATA to run these tests)")


ImportCache = dict[str, tuple[ImportReport, Path]]


@pytest.fixture(scope="module")
def cache() -> ImportCache:
    _require_shared()
    return {}


@pytest.fixture
def imported(
    cache: ImportCache, tmp_path_factory: pytest.TempPathFactory
) -> Callable[[str], tuple[ImportReport, Path]]:
    """`imported(fmt)` -> (report, output folder); each dataset is imported once per module."""

    def get(fmt: str) -> tuple[ImportReport, Path]:
        if fmt not in cache:
            out = tmp_path_factory.mktemp(fmt)
            cache[fmt] = (import_dataset(fmt, SHARED / EXPECTED[fmt][0], out), out)
        return cache[fmt]

    return get


Imported = Callable[[str], tuple[ImportReport, Path]]


def _validator(name: str, model: type[Event] | type[Item]) -> jsonschema_rs.Draft202012Validator:
    # Compiled validator: the same Draft 2020-12 checks as `jsonschema`, ~70x faster on these ~1M lines.
    path = SCHEMAS / name
    schema = json.loads(path.read_text()) if path.exists() else model.model_json_schema()
    return jsonschema_rs.Draft202012Validator(schema)


def _gz_lines(path: Path) -> Iterator[str]:
    with gzip.open(path, "rt", encoding="utf-8") as f:
        yield from f


@pytest.mark.slow  # ~1M lines through pydantic and the JSON Schemas
@pytest.mark.parametrize("fmt", list(EXPECTED))
def test_every_line_is_a_valid_contract_record(imported: Imported, fmt: str) -> None:
    report, out = imported(fmt)
    events, items = _validator("event.json", Event), _validator("item.json", Item)
    previous: datetime | None = None
    ids: set[str] = set()
    for n, line in enumerate(_gz_lines(out / "events.jsonl.gz"), start=1):
        event = Event.model_validate_json(line)
        events.validate(json.loads(line))
        assert previous is None or event.ts >= previous, f"line {n} out of time order"
        previous = event.ts
        ids.add(event.event_id)
    assert len(ids) == report.rows_written
    catalog = 0
    for line in _gz_lines(out / "catalog.jsonl.gz"):
        Item.model_validate_json(line)
        items.validate(json.loads(line))
        catalog += 1
    assert catalog == report.catalog_items


@pytest.mark.parametrize("fmt", list(EXPECTED))
def test_counts_match_readme(imported: Imported, fmt: str) -> None:
    report, _ = imported(fmt)
    _, rows, types, users, items = EXPECTED[fmt]
    assert report.rows_read == rows
    assert report.rows_read == report.rows_written + report.rows_rejected
    if types:
        assert report.event_types == dict(sorted(types.items()))
    if users:
        assert report.users == users
    if items:
        assert report.items == items


def test_online_retail_details(imported: Imported) -> None:
    report, out = imported("online-retail")
    assert report.rejected_by_reason["cancellation"] == 7_852  # README: 7,852 cancellation lines
    assert set(report.rejected_by_reason) <= {"cancellation", "missing_user", "non_product", "bad_quantity"}
    assert report.users <= 4_010 and report.first_ts == "2010-12-01T08:26:00+00:00"
    # After the clocks went back (2011-10-30) UK time is GMT = UTC, so the last sale keeps its local hour.
    assert report.last_ts is not None and report.last_ts.startswith("2011-10-31T17:")
    summer = next(e for e in read_events(out) if e.event_id.endswith(":209031"))  # 2011-06-01 07:37 BST
    assert summer.ts == datetime(2011, 6, 1, 6, 37, tzinfo=UTC) and summer.item_id == "23299"
    reference = _items_file(SHARED / "online_retail_uci" / "items_from_shared_slice.csv")
    with gzip.open(out / "catalog.jsonl.gz", "rt", encoding="utf-8") as f:
        titles = {item.item_id: item.title for item in map(Item.model_validate_json, f)}
    shared = set(titles) & set(reference)
    assert len(shared) > 3_800
    assert all(titles[code] == reference[code] for code in shared)


def _items_file(path: Path) -> dict[str, str]:
    with path.open(encoding="utf-8", newline="") as f:
        return {row["stock_code"]: row["description"].strip() for row in csv.DictReader(f)}


def test_diginetica_and_movielens_catalogs(imported: Imported) -> None:
    digi, _ = imported("diginetica")
    assert digi.catalog_items == 184_047 and digi.catalog_with_category == 184_047  # every event item has a category
    movies, out = imported("movielens")
    assert movies.catalog_with_title == 1_682
    with gzip.open(out / "catalog.jsonl.gz", "rt", encoding="utf-8") as f:
        titles = {item.title for item in map(Item.model_validate_json, f)}
    assert "Misérables, Les (1995)" in titles  # latin-1 decoded


def test_time_spans(imported: Imported) -> None:
    assert imported("taobao")[0].last_ts == "2017-12-02T15:59:59+00:00"
    assert str(imported("yoochoose")[0].first_ts).startswith("2014-04-01T01:02")
    assert str(imported("otto")[0].first_ts).startswith("2022-07-31T22:00")
    assert imported("rees46")[0].last_ts == "2019-10-01T00:17:26+00:00"
    assert str(imported("movielens")[0].first_ts).startswith("1997-09-20")
