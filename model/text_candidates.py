"""Text-neighbour candidates of the two-stage model: items whose text is nearest to the user's recent items' texts.

The other candidate sources (transformer top list aside) are counts, so an item without events is never one of
their candidates; this source needs no events, only the item's text embedding (`model.text_tower`), so a new
item enters the candidate set as soon as it has a text. Profile = recency-weighted mean (1, 1/2, 1/4, ...) of
the unit text vectors of the user's last `n_recent` distinct known items; score = cosine to the profile.

Example:
    >>> import numpy as np
    >>> unit_rows(np.asarray([[3.0, 4.0], [0.0, 0.0]])).tolist()
    [[0.6, 0.8], [0.0, 0.0]]
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from model.scoring import UserState
from model.sessions import context_items

__all__ = ["TextNeighbours", "unit_rows"]


def unit_rows(matrix: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (all-zero rows, items without text, stay zero). Shape as `matrix`, float32."""
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    out: np.ndarray = np.divide(matrix, norms, out=np.zeros_like(matrix), where=norms > 0).astype(np.float32)
    return out


class TextNeighbours:
    """Cosine similarity of every item's text to each user's recent items (module docstring)."""

    def __init__(self, text: np.ndarray, n_recent: int = 5) -> None:
        """Args: (V, D) text embeddings in count-vocabulary order (zero rows: no text), items in the profile."""
        self.text = unit_rows(np.asarray(text, dtype=np.float32))
        self.n_recent = n_recent

    def similarities(self, users: Sequence[UserState], index: Mapping[str, int]) -> tuple[np.ndarray, np.ndarray]:
        """(B, V) cosine of each item to each user's profile, and the same with the profile's own items at 0.

        The second array is the candidate list's score (`model.sessions.top_rows` keeps positive entries only):
        the user's own recent items, the current one first among them, are never text neighbours of themselves.
        """
        profiles = np.zeros((len(users), self.text.shape[1]), dtype=np.float32)
        own: list[list[int]] = []
        for u, user in enumerate(users):
            rows = [r for r, _ in context_items(user, index, self.n_recent)]
            own.append(rows)
            if rows:
                weights = (0.5 ** np.arange(len(rows), dtype=np.float32))[:, None]
                profiles[u] = (weights * self.text[rows]).sum(0)
        sims = unit_rows(profiles) @ self.text.T  # (B, V)
        listed = sims.copy()
        for u, rows in enumerate(own):
            listed[u, rows] = 0.0
        return sims, listed
