"""The counting parts of the two-stage model: transition counts, V-SKNN index and item counts of one event history.

Everything is derived from `model.sessions.Sequences`, so saving the sequences (vocabulary, concatenated rows,
last timestamps) in a safetensors file is enough to rebuild the parts exactly (`to_tensors` / `from_tensors`).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping

import numpy as np
import scipy.sparse as sp
import torch

from contracts import Event, ModelError
from model.sessions import Sequences
from model.sknn import SessionKnnScorer

__all__ = ["CountParts"]


class CountParts:
    """Transitions C (V, V), its transpose, item counts and a V-SKNN index over the same vocabulary."""

    def __init__(self, sequences: Sequences) -> None:
        """Args: the fitted training sequences."""
        self.sequences = sequences
        self.transitions: sp.csr_matrix = sequences.transitions()  # C[i, j]: j directly after i
        self.reverse: sp.csr_matrix = self.transitions.T.tocsr()  # C[j, i] by row j
        self.out_degree = np.asarray(self.transitions.sum(axis=1)).ravel()  # (V,) transitions leaving each item
        rows = sequences.rows
        flat = np.concatenate(rows) if rows else np.zeros(0, dtype=np.int64)
        self.item_counts = np.bincount(flat, minlength=len(sequences.vocab)).astype(np.float64)  # (V,)
        self.sknn = SessionKnnScorer(sequences)

    @classmethod
    def fit(cls, events: Iterable[Event], extra_items: Iterable[str] = ()) -> CountParts:
        """Build the parts from training events (any order); `extra_items`: rows without events (all counts 0)."""
        return cls(Sequences.build(events, extra_items))

    @property
    def vocab(self) -> list[str]:
        """Index -> item id (most frequent first)."""
        return self.sequences.vocab

    @property
    def index(self) -> Mapping[str, int]:
        """Item id -> index."""
        return self.sequences.index

    def to_tensors(self) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
        """(tensors, string metadata) for `safetensors.torch.save_file`."""
        rows = self.sequences.rows
        lengths = np.asarray([len(r) for r in rows], dtype=np.int64)
        flat = np.concatenate(rows) if rows else np.zeros(0, dtype=np.int64)
        tensors = {
            "rows": torch.from_numpy(flat.astype(np.int64)),
            "lengths": torch.from_numpy(lengths),
            "last_ts": torch.from_numpy(self.sequences.last_ts.astype(np.float64)),
        }
        return tensors, {"vocab": json.dumps(self.vocab)}

    @classmethod
    def from_tensors(cls, tensors: Mapping[str, torch.Tensor], metadata: Mapping[str, str]) -> CountParts:
        """Inverse of `to_tensors`.

        Raises:
            ModelError: missing or inconsistent tensors.
        """
        try:
            vocab = list(json.loads(metadata["vocab"]))
            flat, lengths = tensors["rows"].numpy(), tensors["lengths"].numpy()
            last_ts = tensors["last_ts"].numpy()
        except (KeyError, ValueError, TypeError) as exc:
            msg = f"count parts are incomplete: {exc}"
            raise ModelError(msg) from exc
        if int(lengths.sum()) != len(flat) or len(last_ts) != len(lengths) or (len(flat) and flat.max() >= len(vocab)):
            msg = "count parts are inconsistent (row lengths, timestamps or vocabulary size)"
            raise ModelError(msg)
        rows = np.split(flat.astype(np.int64), np.cumsum(lengths)[:-1]) if len(lengths) else []
        index = {item: i for i, item in enumerate(vocab)}
        return cls(Sequences(vocab, index, list(rows), last_ts.astype(np.float64)))
