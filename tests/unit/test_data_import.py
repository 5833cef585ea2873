"""`streamrec data import` machinery: determinism, sorting with spills, rejects, schema validity, the CLI."""

from __future__ import annotations

import gzip
import json
from datetime import UTC, datetime
from pathlib import Path

import jsonschema
import pytest
from typer.testing import CliRunner

from contracts.records import Event, Item
from streamrec.cli import app
from streamrec.commands import register_all
from streamrec.data_import import DataImportError, SourceFormat, import_dataset, read_events
from streamrec.data_import.common import source_tag
from streamrec.data_import.online_retail import parse_uk_time
from streamrec.data_import.yoochoose import parse_seconds_ms

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
SCHEMAS = Path(__file__).resolve().parents[2] / "schemas"
ALL_FORMATS = [f.value for f in SourceFormat]


def _schema(name: str, model: type[Event] | type[Item]) -> dict[str, object]:
    path = SCHEMAS / name
    return json.loads(path.read_text()) if path.exists() else model.model_json_schema()


def _lines(path: Path) -> list[str]:
    with gzip.open(path, "rt", encoding="utf-8") as f:
        return f.read().splitlines()


@pytest.mark.parametrize("fmt", ALL_FORMATS)
def test_reimport_is_byte_identical_and_ids_unique(tmp_path: Path, fmt: str) -> None:
    first = import_dataset(fmt, FIXTURES / fmt, tmp_path / "a")
    second = import_dataset(fmt, FIXTURES / fmt, tmp_path / "b", chunk_rows=2)  # forces spilled sorted runs
    for name in ("events.jsonl.gz", "catalog.jsonl.gz", "rejected.jsonl.gz"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name
    assert first.rows_written == second.rows_written > 0
    ids = [e.event_id for e in read_events(tmp_path / "a")]
    assert len(ids) == len(set(ids)) == first.rows_written
    assert all(len(i) <= 128 for i in ids)


@pytest.mark.parametrize("fmt", ALL_FORMATS)
def test_outputs_match_json_schemas_and_are_time_sorted(tmp_path: Path, fmt: str) -> None:
    import_dataset(fmt, FIXTURES / fmt, tmp_path)
    event_validator = jsonschema.Draft202012Validator(_schema("event.json", Event))
    item_validator = jsonschema.Draft202012Validator(_schema("item.json", Item))
    events = [json.loads(line) for line in _lines(tmp_path / "events.jsonl.gz")]
    for record in events:
        event_validator.validate(record)
        assert Event.model_validate(record).ts.utcoffset() is not None
    for line in _lines(tmp_path / "catalog.jsonl.gz"):
        item_validator.validate(json.loads(line))
        Item.model_validate_json(line)
    times = [Event.model_validate(r).ts for r in events]
    assert times == sorted(times)
    report = json.loads((tmp_path / "import_report.json").read_text())
    assert report["rows_written"] == len(events)
    assert (
        sum(report["rejected_by_reason"].values())
        == report["rows_rejected"]
        == len(_lines(tmp_path / "rejected.jsonl.gz"))
    )


def test_spilled_sort_keeps_source_order_on_ties(tmp_path: Path) -> None:
    rows = ["user_id,item_id,category_id,behavior_type,timestamp"]
    rows += [f"{u},{i},7,pv,{1511544000 + (i % 3)}" for i in range(40) for u in (1, 2)]
    src = tmp_path / "UserBehavior.csv"
    src.write_text("\n".join(rows) + "\n")
    import_dataset("taobao", src, tmp_path / "out", chunk_rows=7)
    events = list(read_events(tmp_path / "out"))
    keys = [(e.ts, int(e.event_id.rsplit(":", 1)[1])) for e in events]
    assert keys == sorted(keys) and len(keys) == 80


def test_contract_violation_is_rejected_as_invalid_event(tmp_path: Path) -> None:
    src = tmp_path / "UserBehavior.csv"
    src.write_text(f"1,{'9' * 200},7,pv,1511544000\n1,5,7,pv,1511544001\n")
    report = import_dataset("taobao", src, tmp_path / "out")
    assert report.rejected_by_reason == {"invalid_event": 1}
    assert "item_id" in report.rejected_examples["invalid_event"][0]
    assert report.catalog_rejected == 1  # the 200-char id cannot be a catalog entry either
    assert report.catalog_items == 1


def test_source_errors(tmp_path: Path) -> None:
    with pytest.raises(DataImportError, match="source not found"):
        import_dataset("otto", tmp_path / "missing", tmp_path / "out")
    with pytest.raises(DataImportError, match="unknown format"):
        import_dataset("csv", FIXTURES / "otto", tmp_path / "out")
    (tmp_path / "two").mkdir()
    for name in ("a.jsonl", "b.jsonl"):
        (tmp_path / "two" / name).write_text("")
    with pytest.raises(DataImportError, match="several"):
        import_dataset("otto", tmp_path / "two", tmp_path / "out")
    with pytest.raises(DataImportError, match="no REES46 events csv"):
        import_dataset("rees46", FIXTURES / "otto", tmp_path / "out")


def test_source_tag() -> None:
    assert source_tag(Path("userbehavior_head_before_2017-12-03CST.csv.gz")) == "userbehavior_head_before_2017-12-03CST"
    assert source_tag(Path("u.data")) == "u.data"
    assert source_tag(Path("my file:x.tsv")) == "my_file_x"
    long = source_tag(Path("x" * 300 + ".csv"))
    assert len(long) == 64 and long != source_tag(Path("x" * 299 + "y.csv"))[:64]


def test_uk_time_conversion() -> None:
    assert parse_uk_time("2011-01-15 12:00:00") == datetime(2011, 1, 15, 12, tzinfo=UTC)
    assert parse_uk_time("2011-07-15 12:00") == datetime(2011, 7, 15, 11, tzinfo=UTC)
    # 01:30 happens twice on 2011-10-30; the first (BST) occurrence is taken.
    assert parse_uk_time("2011-10-30 01:30:00") == datetime(2011, 10, 30, 0, 30, tzinfo=UTC)
    with pytest.raises(ValueError, match="does not match"):
        parse_uk_time("30/10/2011 01:30")


def test_seconds_with_ms_parse_exactly() -> None:
    assert parse_seconds_ms("1396437466.94") == 1396437466940
    assert parse_seconds_ms("1396437466.318") == 1396437466318
    assert parse_seconds_ms("1396437466") == 1396437466000
    for bad in ("1396437466.1234", "x.5", "", "1.2.3"):
        with pytest.raises(ValueError, match="Unix seconds"):
            parse_seconds_ms(bad)


@pytest.fixture(scope="module")
def cli() -> CliRunner:
    if not any(getattr(group, "name", None) == "data" for group in app.registered_groups):
        register_all(app)
    return CliRunner()


def test_cli_import_prints_counts(cli: CliRunner, tmp_path: Path) -> None:
    result = cli.invoke(app, ["data", "import", "--format", "taobao", str(FIXTURES / "taobao"), "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert "rows read" in result.output and "unknown_type" in result.output
    assert (tmp_path / "events.jsonl.gz").exists() and (tmp_path / "import_report.json").exists()


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["--format", "taobao", "/nonexistent/streamrec-data", "--out", "OUT"], 2, "source not found"),
        (["--format", "parquet", str(FIXTURES / "taobao"), "--out", "OUT"], 2, "unknown --format"),
        (["--format", "online-retail", str(FIXTURES / "taobao"), "--out", "OUT"], 1, "no Online Retail"),
    ],
)
def test_cli_errors_exit_non_zero(cli: CliRunner, tmp_path: Path, args: list[str], code: int, message: str) -> None:
    args = [str(tmp_path / "out") if a == "OUT" else a for a in args]
    result = cli.invoke(app, ["data", "import", *args])
    assert result.exit_code == code
    assert message in " ".join(result.output.split())
