"""`streamrec data import`: public e-commerce logs -> canonical `contracts.Event` / `contracts.Item` JSON lines.

One module per source format (its docstring documents the mapping; `README.md` has the summary table); the
delimited formats declare a `delimited.CsvSpec` and share its reading loop; `pipeline` validates, sorts and
writes; `writer` owns the output files.

Example:
    >>> from pathlib import Path
    >>> from streamrec.data_import import import_dataset
    >>> report = import_dataset("otto", Path("tests/fixtures/otto"), Path("/tmp/otto-import"))
    >>> report.rows_read == report.rows_written + report.rows_rejected
    True
"""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path

from streamrec.data_import.amazon_s3rec import AmazonS3RecReader
from streamrec.data_import.common import DataImportError, SourceReader
from streamrec.data_import.diginetica import DigineticaReader
from streamrec.data_import.movielens import MovielensReader
from streamrec.data_import.online_retail import OnlineRetailReader
from streamrec.data_import.otto import OttoReader
from streamrec.data_import.pipeline import ImportReport, run_import
from streamrec.data_import.rees46 import Rees46Reader
from streamrec.data_import.taobao import TaobaoReader
from streamrec.data_import.writer import (
    CATALOG_FILE,
    EVENTS_FILE,
    REJECTED_FILE,
    REPORT_FILE,
    read_catalog,
    read_events,
)
from streamrec.data_import.yoochoose import YoochooseReader

__all__ = [
    "CATALOG_FILE",
    "EVENTS_FILE",
    "READERS",
    "REJECTED_FILE",
    "REPORT_FILE",
    "DataImportError",
    "ImportReport",
    "SourceFormat",
    "import_dataset",
    "read_catalog",
    "read_events",
]


class SourceFormat(StrEnum):
    """Source layouts `streamrec data import --format` understands."""

    TAOBAO = "taobao"
    ONLINE_RETAIL = "online-retail"
    YOOCHOOSE = "yoochoose"
    DIGINETICA = "diginetica"
    REES46 = "rees46"
    OTTO = "otto"
    MOVIELENS = "movielens"
    AMAZON_S3REC = "amazon-s3rec"


READERS: dict[SourceFormat, type[SourceReader]] = {
    SourceFormat.TAOBAO: TaobaoReader,
    SourceFormat.ONLINE_RETAIL: OnlineRetailReader,
    SourceFormat.YOOCHOOSE: YoochooseReader,
    SourceFormat.DIGINETICA: DigineticaReader,
    SourceFormat.REES46: Rees46Reader,
    SourceFormat.OTTO: OttoReader,
    SourceFormat.MOVIELENS: MovielensReader,
    SourceFormat.AMAZON_S3REC: AmazonS3RecReader,
}


def import_dataset(fmt: str, src: Path, out: Path, *, chunk_rows: int = 250_000) -> ImportReport:
    """Import `src` (a dataset folder or one file of its layout) of format `fmt` into the folder `out`.

    Writes `events.jsonl.gz` (sorted by time, then source order), `catalog.jsonl.gz`, `rejected.jsonl.gz`
    and `import_report.json`.

    Raises:
        DataImportError: Unknown format, missing source, or a source that is not of this format.
    """
    try:
        source_format = SourceFormat(fmt)
    except ValueError:
        known = ", ".join(f.value for f in SourceFormat)
        msg = f"unknown format {fmt!r} (known: {known})"
        raise DataImportError(msg) from None
    return run_import(READERS[source_format](src), out, chunk_rows=chunk_rows)
