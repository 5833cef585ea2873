"""The RFC 8259 oracle the validation tests judge the codecs by: UTF-8 JSON text, no NaN/Infinity, an object."""

from __future__ import annotations

import json
from typing import Any

__all__ = ["json_object"]


def _no_constant(name: str) -> Any:
    raise ValueError(name)


def json_object(value: bytes) -> dict[str, Any] | None:
    """The object `value` holds if it is UTF-8 JSON text (RFC 8259: no NaN/Infinity, no lone surrogate), else None."""
    try:
        doc = json.loads(value.decode("utf-8"), parse_constant=_no_constant)
        json.dumps(doc, ensure_ascii=False).encode("utf-8")  # a lone surrogate is not Unicode text
    except (ValueError, RecursionError):
        return None
    return doc if isinstance(doc, dict) else None
