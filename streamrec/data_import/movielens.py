"""MovieLens 100K: `u.data` (tab-separated `user item rating timestamp`), `u.item` (latin-1, `|`), `u.genre`.

Mapping: a rating is an implicit "the user engaged with this item" signal, not a view log: every rating ->
`click`, with `context.rating` (1-5). Timestamps are Unix seconds (UTC).
Catalog (only when a folder is given: `u.item` next to `u.data`): `title` = movie title with year (decoded as
latin-1, e.g. "Misérables, Les (1995)"), `category` = the first genre flag set, in `u.genre` order, skipping
"unknown" (None if the movie has no other genre).
Reject reasons: `bad_row` (not 4 fields), `missing_user`, `missing_item`, `bad_rating`, `bad_timestamp`.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

from streamrec.data_import.common import EventFields, ItemFields, from_unix_seconds, open_text, pick_file
from streamrec.data_import.delimited import Check, CsvReader, CsvSpec, Header, Row, missing

__all__ = ["MovielensReader"]

# Genre flag order of u.item; used when u.genre is absent (it is the fixed order of the 100K release).
_GENRES = (
    "unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime", "Documentary", "Drama",
    "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance", "Sci-Fi", "Thriller", "War", "Western",
)  # fmt: skip
_RATINGS = frozenset({"1", "2", "3", "4", "5"})


class MovielensReader(CsvReader):
    """Reads `u.data` (+ `u.item`, `u.genre` of the same folder)."""

    format_name = "movielens"
    spec = CsvSpec(
        columns=("user", "item", "rating", "timestamp"),
        delimiter="\t",
        header=Header.NONE,
        quoted=False,  # u.data has no quoting; blank lines are skipped, not rejected
        bad_row="expected {count} tab-separated fields, got {got}",
        wrong_layout="{path}: not a MovieLens u.data file (first line has {got} tab fields, expected {count})",
        checks=(
            missing("user", "missing_user", "user id"),
            missing("item", "missing_item", "item id"),
            Check("bad_rating", "rating", lambda value: value not in _RATINGS, "rating {value!r} not in 1..5"),
        ),
        time=("timestamp",),
        parse_time=from_unix_seconds,
    )

    def locate(self, src: Path) -> list[Path]:
        """`u.data`, then `u.item` and `u.genre` when `src` is the folder and they exist."""
        data = pick_file(src, ["u.data"], "MovieLens ratings (u.data)")
        extra = [src / name for name in ("u.item", "u.genre")] if src.is_dir() else []
        return [data, *[p for p in extra if p.is_file()]]

    def event(self, row: Row, ts: datetime) -> EventFields:
        """A rating as an engagement click, the rating kept in `context`."""
        return {
            "user_id": row["user"],
            "item_id": row["item"],
            "type": "click",
            "ts": ts,
            "context": {"rating": int(row["rating"])},
        }

    def items(self) -> Iterator[ItemFields]:
        """Movies of `u.item` with title and first genre."""
        paths = {p.name: p for p in self.files[1:]}
        if "u.item" not in paths:
            return
        genres = _read_genres(paths["u.genre"]) if "u.genre" in paths else list(_GENRES)
        with open_text(paths["u.item"], encoding="latin-1") as f:
            for text in f:
                fields = text.rstrip("\r\n").split("|")
                if len(fields) < 5 or not fields[0].strip():
                    continue
                flags = fields[5:]
                named = [genres[i] for i, flag in enumerate(flags) if flag == "1" and i < len(genres)]
                category = next((g for g in named if g != "unknown"), None)
                yield {"item_id": fields[0].strip(), "title": fields[1].strip()[:512] or None, "category": category}


def _read_genres(path: Path) -> list[str]:
    """`u.genre` lines `name|index` -> names by index."""
    by_index: dict[int, str] = {}
    with open_text(path, encoding="latin-1") as f:
        for text in f:
            name, _, index = text.strip().rpartition("|")
            if name and index.isdigit():
                by_index[int(index)] = name
    return [by_index.get(i, f"genre{i}") for i in range(max(by_index, default=-1) + 1)]
