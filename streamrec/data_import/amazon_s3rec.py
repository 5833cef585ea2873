"""Amazon review sequences in the S3-Rec layout: `<name>.txt` lines `user item1 item2 ...` + `*_item2attributes.json`.

Mapping: each (user, item) review -> `purchase` (a review implies the reviewer bought the item). The data has no
timestamps, only the order, so the time is synthesised: `ts = 2000-01-01T00:00Z + position days` (position = 0-based
index in the user's line), which keeps each user's order and gives every user the same calendar. Such events carry
`context.synthetic_ts = true`; do not compare these times with real ones. One source row = one item of a line
(`amazon-s3rec:<file>:<line>:<position>`); a line with a user but no items is one `empty_sequence` reject.
Catalog: the S3-Rec attribute ids of an item mix brand and category ids with no names. `category` =
`"attr:<id>"` for the item's attribute shared by the most items of the catalog (ties: smaller id), i.e. the
broadest group it belongs to, which is what an exact-match category feature can use; `title` = all of the
item's attribute ids in the file's order (`"attr:24 attr:1 attr:25"`), the only text there is, so the text tower
can relate items that share attributes (a brand, a sub-category) without names.
Reject reasons: `empty_sequence`.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

from streamrec.data_import.common import (
    DataImportError,
    EventFields,
    ItemFields,
    Reject,
    SourceReader,
    event_id,
    open_text,
    pick_file,
    source_tag,
)

__all__ = ["SYNTHETIC_EPOCH", "AmazonS3RecReader"]

SYNTHETIC_EPOCH = datetime(2000, 1, 1, tzinfo=UTC)


class AmazonS3RecReader(SourceReader):
    """Reads `<name>.txt` (+ `<name>_item2attributes.json` when a folder is given)."""

    format_name = "amazon-s3rec"

    def locate(self, src: Path) -> list[Path]:
        """The sequences file, then the attributes json when `src` is a folder that has one."""
        sequences = pick_file(src, ["*.txt"], "S3-Rec sequences (.txt)")
        attributes = sorted(src.glob("*item2attributes*.json")) if src.is_dir() else []
        if len(attributes) > 1:
            msg = f"{src}: several *item2attributes*.json files; pass the sequences file alone"
            raise DataImportError(msg)
        return [sequences, *attributes]

    def rows(self) -> Iterator[EventFields | Reject]:
        """One row per (user, item) of every line."""
        path = self.files[0]
        tag = source_tag(path)
        with open_text(path) as f:
            for line_no, text in enumerate(f, start=1):
                tokens = text.split()
                if not tokens:
                    continue
                if line_no == 1 and not tokens[0].isdigit():
                    msg = f"{path}: not an S3-Rec sequences file (first token {tokens[0]!r} is not an id)"
                    raise DataImportError(msg)
                if len(tokens) == 1:
                    yield Reject("empty_sequence", f"{tag}:{line_no}", "user without items", text.strip())
                    continue
                user = tokens[0]
                for position, item in enumerate(tokens[1:]):
                    yield {
                        "event_id": event_id(self.format_name, tag, line_no, position),
                        "user_id": user,
                        "item_id": item,
                        "type": "purchase",
                        "ts": SYNTHETIC_EPOCH + timedelta(days=position),
                        "context": {"synthetic_ts": True},
                    }

    def items(self) -> Iterator[ItemFields]:
        """Items of the attributes json: their broadest attribute as category, all of them as title."""
        if len(self.files) < 2:
            return
        with open_text(self.files[1]) as f:
            attributes = json.load(f)
        if not isinstance(attributes, dict):
            msg = f"{self.files[1]}: expected a JSON object {{item: [attribute ids]}}"
            raise DataImportError(msg)
        lists = {str(k): [a for a in v if isinstance(a, int)] for k, v in attributes.items() if isinstance(v, list)}
        frequency = Counter(a for attrs in lists.values() for a in attrs)
        for item, attrs in lists.items():
            broadest = min(attrs, key=lambda a: (-frequency[a], a)) if attrs else None
            yield {
                "item_id": item,
                "category": None if broadest is None else f"attr:{broadest}",
                "title": " ".join(f"attr:{a}" for a in attrs) or None,  # every attribute, as text for the tower
            }
