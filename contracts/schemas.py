"""JSON Schema export: `schemas/*.json` are generated from the records here, never edited by hand."""

from __future__ import annotations

import json
from pathlib import Path

from pydantic import BaseModel

from contracts.records import DeadLetter, Event, Item, ModelUpdate, Recommendation

__all__ = ["SCHEMA_MODELS", "render_schemas", "write_schemas"]

# File name -> record; one file per topic payload.
SCHEMA_MODELS: dict[str, type[BaseModel]] = {
    "event.json": Event,
    "item.json": Item,
    "recommendation.json": Recommendation,
    "dead_letter.json": DeadLetter,
    "model_update.json": ModelUpdate,
}


def render_schemas() -> dict[str, str]:
    """The text of every schema file, keyed by file name (stable: sorted keys, trailing newline)."""
    rendered = {}
    for name, model in SCHEMA_MODELS.items():
        schema = model.model_json_schema(mode="validation")
        schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
        schema["$id"] = f"urn:streamrec:schema:{name}"
        rendered[name] = json.dumps(schema, indent=2, sort_keys=True) + "\n"
    return rendered


def write_schemas(directory: Path) -> list[Path]:
    """Write every schema into `directory`; returns the paths written."""
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, text in render_schemas().items():
        path = directory / name
        path.write_text(text, encoding="utf-8")
        written.append(path)
    return written
