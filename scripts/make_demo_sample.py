"""Rebuild `data/online-retail/online_retail_sample.csv.gz` from the full UCI Online Retail file (seeded).

The sample keeps *every* line (header and column order unchanged, including cancellations and guest-free
rows) of a seeded random choice of customers with 3..40 invoices and at most 250 lines, so each sampled user
has a real multi-visit history. Usage:

    python scripts/make_demo_sample.py ../shared/data/online_retail_uci/online_retail_2010-12-01_to_2011-10-31.csv.gz
"""

from __future__ import annotations

import csv
import gzip
import io
import random
import sys
from collections import defaultdict
from pathlib import Path

__all__ = ["main"]

CUSTOMERS = 300
SEED = 7
OUT = Path(__file__).resolve().parent.parent / "data" / "online-retail" / "online_retail_sample.csv.gz"


def main(src: Path, out: Path = OUT) -> None:
    """Write the sample; prints rows and customers kept."""
    with gzip.open(src, "rt", encoding="utf-8", newline="") as f:
        rows = list(csv.reader(f))
    header, body = rows[0], rows[1:]
    invoices: defaultdict[str, set[str]] = defaultdict(set)
    lines: defaultdict[str, int] = defaultdict(int)
    for r in body:
        if r[6]:
            invoices[r[6]].add(r[0])
            lines[r[6]] += 1
    eligible = sorted(c for c in invoices if 3 <= len(invoices[c]) <= 40 and lines[c] <= 250)
    chosen = set(random.Random(SEED).sample(eligible, CUSTOMERS))
    kept = [r for r in body if r[6] in chosen]
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(kept)
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0, filename="") as gz:
        gz.write(buf.getvalue().encode("utf-8"))
    print(f"{out}: {len(kept)} lines, {len(chosen)} customers (of {len(eligible)} eligible)")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
