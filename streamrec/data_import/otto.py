"""OTTO (Kaggle 2022) sessions: JSON lines `{"session": int, "events": [{"aid", "ts" (Unix ms), "type"}]}`.

Mapping: clicks -> click, carts -> add_to_cart, orders -> purchase. OTTO has no user ids: the session is the
user (`user_id = "s<session>"`, `session_id = session`). One source row = one event of a session; its id is
`otto:<file>:<line>:<index in the session>`. A line that is not valid JSON (or has no session / event list)
counts as one rejected row (`bad_json` / `bad_row`): its events cannot be counted.
Catalog: no metadata (bare item ids).
Reject reasons: `bad_json`, `bad_row`, `missing_item`, `unknown_type`, `bad_timestamp`.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from streamrec.data_import.common import (
    EventFields,
    Reject,
    SourceReader,
    event_id,
    from_unix_ms,
    open_text,
    pick_file,
    source_tag,
)

__all__ = ["OttoReader"]

_TYPES = {"clicks": "click", "carts": "add_to_cart", "orders": "purchase"}


class OttoReader(SourceReader):
    """Reads an OTTO `*.jsonl` file."""

    format_name = "otto"

    def locate(self, src: Path) -> list[Path]:
        """The one jsonl file of the folder."""
        return [pick_file(src, ["*.jsonl", "*.jsonl.gz"], "OTTO sessions jsonl")]

    def rows(self) -> Iterator[EventFields | Reject]:
        """One row per session event."""
        path = self.files[0]
        tag = source_tag(path)
        with open_text(path) as f:
            for line_no, text in enumerate(f, start=1):
                if text.strip():
                    yield from self._line(text, tag, line_no)

    def _line(self, text: str, tag: str, line: int) -> Iterator[EventFields | Reject]:
        where = f"{tag}:{line}"
        try:
            record = json.loads(text)
        except json.JSONDecodeError as exc:
            yield Reject("bad_json", where, str(exc), text.rstrip("\n")[:2000])
            return
        session = record.get("session") if isinstance(record, dict) else None
        events = record.get("events") if isinstance(record, dict) else None
        if session is None or isinstance(session, bool) or not isinstance(events, list):
            yield Reject("bad_row", where, "expected {'session': ..., 'events': [...]}", text.rstrip("\n")[:2000])
            return
        for index, raw in enumerate(events):
            yield self._event(raw, str(session), tag, line, index)

    def _event(self, raw: Any, session: str, tag: str, line: int, index: int) -> EventFields | Reject:
        where = f"{tag}:{line}:{index}"
        text = json.dumps(raw)[:2000]
        if not isinstance(raw, dict):
            return Reject("bad_row", where, "event is not an object", text)
        aid, ts, kind = raw.get("aid"), raw.get("ts"), _TYPES.get(str(raw.get("type")))
        if aid is None or aid == "":
            return Reject("missing_item", where, "no aid", text)
        if kind is None:
            return Reject("unknown_type", where, f"type {raw.get('type')!r}", text)
        if not isinstance(ts, int) or isinstance(ts, bool):
            return Reject("bad_timestamp", where, f"ts {ts!r} is not integer Unix ms", text)
        try:
            when = from_unix_ms(ts)
        except OverflowError:
            return Reject("bad_timestamp", where, f"ts {ts!r} out of range", text)
        return {
            "event_id": event_id(self.format_name, tag, line, index),
            "user_id": f"s{session}",
            "item_id": str(aid),
            "type": kind,
            "ts": when,
            "session_id": session,
        }
