"""Every `Settings` field is documented in the README's settings table, and the table names no other."""

from __future__ import annotations

import re
from pathlib import Path

from contracts import Settings

README = Path(__file__).resolve().parents[2] / "README.md"


def _documented() -> set[str]:
    """`STREAMREC_*` names in the table's first column; `_SUFFIX` cells swap the last part of the name before."""
    names: set[str] = set()
    for row in README.read_text(encoding="utf-8").splitlines():
        cells = row.split("|")
        if len(cells) < 3 or "STREAMREC_" not in cells[1]:
            continue
        full = ""
        for token in re.findall(r"`([A-Z0-9_]+)`", cells[1]):
            if token.startswith("STREAMREC_"):
                full = token
            else:
                full = full.rsplit("_", 1)[0] + token
            names.add(full)
    return names


def test_every_setting_is_in_the_readme_table() -> None:
    fields = {f"STREAMREC_{name.upper()}" for name in Settings.model_fields}
    documented = _documented()
    assert fields - documented == set(), "settings missing from the README table"
    assert documented - fields == set(), "README table names settings that do not exist"
