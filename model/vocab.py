"""Item vocabulary of the transformer: item id <-> embedding row, with padding and spare rows.

Row 0 is padding (and the "no item" input of a search event). Rows `1 .. len(ids)` are the known items, in
the order they were given. Rows after them are spare: the continual learner (or the text tower, for a new
item with a title) claims them without changing any tensor shape, so a grown model still loads in place.

Example:
    >>> vocab = ItemVocab(["a", "b"], capacity=5)
    >>> vocab.index("b"), vocab.index("zzz"), vocab.spare
    (2, None, 2)
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from contracts import ModelError

__all__ = ["PAD", "ItemVocab"]

PAD = 0  # padding row; never scored


class ItemVocab:
    """Item ids mapped to rows `1..n`; `capacity` rows in total (padding + items + spare)."""

    def __init__(self, item_ids: Sequence[str], capacity: int | None = None) -> None:
        """Args: item ids in row order (unique, row 1 first); capacity = total rows (default: no spare)."""
        self._ids: list[str] = list(item_ids)
        self._index: dict[str, int] = {item: row for row, item in enumerate(self._ids, start=1)}
        if len(self._index) != len(self._ids):
            msg = "item vocabulary has duplicate ids"
            raise ModelError(msg)
        needed = len(self._ids) + 1
        self.capacity = needed if capacity is None else capacity
        if self.capacity < needed:
            msg = f"vocabulary capacity {self.capacity} < {needed} rows needed (padding + items)"
            raise ModelError(msg)

    def __len__(self) -> int:
        """Number of known items (padding and spare rows excluded)."""
        return len(self._ids)

    def __contains__(self, item_id: object) -> bool:
        """Whether `item_id` has a row."""
        return item_id in self._index

    @property
    def ids(self) -> list[str]:
        """Known item ids in row order (row 1 first); a copy."""
        return list(self._ids)

    @property
    def spare(self) -> int:
        """Unclaimed rows left."""
        return self.capacity - len(self._ids) - 1

    def index(self, item_id: str | None) -> int | None:
        """Row of `item_id`, or None if unknown (or `item_id` is None)."""
        return None if item_id is None else self._index.get(item_id)

    def item(self, row: int) -> str:
        """Item id of a claimed row (>= 1)."""
        if not 1 <= row <= len(self._ids):
            msg = f"row {row} holds no item"
            raise IndexError(msg)
        return self._ids[row - 1]

    def add(self, item_ids: Iterable[str]) -> list[int]:
        """Claim spare rows for new ids (known ids keep their row); returns the rows, in input order.

        Raises:
            ModelError: not enough spare rows.
        """
        rows = []
        for item_id in item_ids:
            row = self._index.get(item_id)
            if row is None:
                if self.spare <= 0:
                    msg = f"no spare vocabulary rows left (capacity {self.capacity})"
                    raise ModelError(msg)
                self._ids.append(item_id)
                row = self._index[item_id] = len(self._ids)
            rows.append(row)
        return rows
