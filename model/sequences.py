"""Event histories -> the transformer's left-padded tensors (`model.transformer.SeqBatch`), for training and serving.

One event becomes (item row, event-type row, time-gap bucket, query text). Items without a vocabulary row are
dropped from the input (their time still counts in the next gap); a search keeps item row 0 and carries its
query's text embedding when the text tower is on. A user with no usable event gets a single padding "start"
token, so every row has a real last position.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from contracts import Event, EventType
from model.scoring import PastEvent, UserState
from model.text_tower import TextEncoder
from model.transformer import ModelConfig, SeqBatch, event_type_index
from model.vocab import ItemVocab

__all__ = ["EventRows", "QueryCache", "batch_from_rows", "batch_from_states", "event_rows"]


@dataclass(frozen=True, slots=True)
class EventRows:
    """One user's encoded events, oldest first; `kept` maps each row back to its index in the input events."""

    items: np.ndarray  # (n,) int64 item rows, 0 for searches
    types: np.ndarray  # (n,) int64 event-type rows
    gaps: np.ndarray  # (n,) int64 time-gap buckets
    queries: tuple[str | None, ...]  # (n,) search text or None
    kept: np.ndarray  # (n,) int64 index into the input events


def event_rows(events: Sequence[Event | PastEvent], vocab: ItemVocab, n_gap_buckets: int) -> EventRows:
    """Encode one user's events (oldest first)."""
    items, types, seconds, queries, kept = [], [], [], [], []
    previous = None
    for index, event in enumerate(events):
        gap = -1.0 if previous is None else (event.ts - previous).total_seconds()
        previous = event.ts
        row = vocab.index(event.item_id)
        if event.type is EventType.SEARCH:
            row = 0
        elif row is None:
            continue  # unknown item: nothing to embed
        items.append(row)
        types.append(event_type_index(event.type))
        seconds.append(gap)
        queries.append(event.query if event.type is EventType.SEARCH else None)
        kept.append(index)
    return EventRows(
        items=np.asarray(items, dtype=np.int64),
        types=np.asarray(types, dtype=np.int64),
        gaps=_gap_buckets(np.asarray(seconds, dtype=np.float64), n_gap_buckets),
        queries=tuple(queries),
        kept=np.asarray(kept, dtype=np.int64),
    )


def _gap_buckets(seconds: np.ndarray, n_buckets: int) -> np.ndarray:
    """`model.transformer.gap_bucket` in numpy (a user's ~50 gaps: torch's per-call overhead was most of it);
    a negative gap marks the user's first event (bucket 1)."""
    buckets = 2 + np.floor(np.log2(1.0 + np.maximum(seconds, 0.0))).astype(np.int64)
    capped: np.ndarray = np.minimum(buckets, n_buckets - 1)
    capped[seconds < 0] = 1
    return capped


class QueryCache:
    """Search-query embeddings with a bounded LRU cache (the text model is only called for new queries)."""

    def __init__(self, encoder: TextEncoder, max_size: int = 100_000) -> None:
        """Args: the text model, number of query embeddings kept."""
        self.encoder = encoder
        self._max_size = max_size
        self._cache: OrderedDict[str, np.ndarray] = OrderedDict()
        self._lock = threading.Lock()

    def embed(self, queries: Sequence[str]) -> dict[str, np.ndarray]:
        """Embedding of every distinct query in `queries`."""
        with self._lock:
            missing = sorted({q for q in queries if q not in self._cache})
            if missing:
                for query, vector in zip(missing, self.encoder.encode(missing), strict=True):
                    self._cache[query] = vector
            out = {}
            for query in set(queries):
                self._cache.move_to_end(query)
                out[query] = self._cache[query]
            while len(self._cache) > self._max_size:
                self._cache.popitem(last=False)
            return out


def batch_from_rows(
    rows: Sequence[EventRows], config: ModelConfig, queries: QueryCache | None = None, length: int | None = None
) -> SeqBatch:
    """Left-pad encoded users (newest `length` events each, default `config.max_len`) into one batch."""
    length = length or config.max_len
    b = len(rows)
    items = np.zeros((b, length), dtype=np.int64)
    types = np.zeros((b, length), dtype=np.int64)
    gaps = np.zeros((b, length), dtype=np.int64)
    mask = np.zeros((b, length), dtype=np.int64)
    wanted: list[tuple[int, int, str]] = []  # (row, position, query)
    for r, user in enumerate(rows):
        n = min(len(user.items), length)
        if n == 0:
            mask[r, -1] = 1  # "start" token: a user vector for users with no usable history
            continue
        items[r, length - n :] = user.items[-n:]
        types[r, length - n :] = user.types[-n:]
        gaps[r, length - n :] = user.gaps[-n:]
        mask[r, length - n :] = 1
        for offset, query in enumerate(user.queries[-n:]):
            if query:
                wanted.append((r, length - n + offset, query))
    text = None
    if config.text_tower:
        text_np = np.zeros((b, length, config.text_dim), dtype=np.float32)  # (B, T, D)
        if wanted and queries is not None:
            vectors = queries.embed([q for _, _, q in wanted])
            for r, position, query in wanted:
                text_np[r, position] = vectors[query]
        text = torch.from_numpy(text_np)
    t = [torch.from_numpy(a) for a in (items, types, gaps, mask)]
    return SeqBatch(t[0], t[1], t[2], t[3], query_text=text)


def batch_from_states(
    users: Sequence[UserState], vocab: ItemVocab, config: ModelConfig, queries: QueryCache | None = None
) -> tuple[SeqBatch, list[EventRows]]:
    """The padded batch of `users` and each user's encoded events (for evidence indices)."""
    rows = [event_rows(user.events, vocab, config.n_gap_buckets) for user in users]
    return batch_from_rows(rows, config, queries), rows
