"""Rows for catalog items the serving model has never seen, from their text, without retraining.

A worker that reads a new item (a title, category or brand it has no row for) gives it a row as the continual
learner does (`model.continual.grow_vocabulary`: spare rows; with a text tower the row is the projected text and
a zero ID part, otherwise the similarity-weighted mean of its MiniLM text neighbours' rows) and builds a new
scorer around the grown model: for a two-stage model the counting parts get the item as a row without events,
so the text-neighbour source (`model.text_candidates`) can name it and the ranker can rank it. Nothing is changed
in place: the old scorer keeps serving until the caller swaps in the new one.

Only spare rows are used: a resized table would need a new compiled encoder; when they run out, items wait for
the learner's next promotion (which resizes). An eager encoder is rebuilt on the grown model (a new item in a
history embeds by its row); a compiled one keeps its encoder and serves the grown item table.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence

import torch
from torch import Tensor

from contracts import Item
from model.backends.base import ScoringBackend
from model.backends.eager import EagerTorchBackend
from model.continual import grow_vocabulary
from model.count_parts import CountParts
from model.scoring import Scorer
from model.text_tower import TextEncoder, item_text
from model.torch_scorer import TorchScorer
from model.transformer import SeqBatch, SeqRecModel
from model.two_stage import TwoStageScorer

__all__ = ["GrownTable", "with_new_items"]


class GrownTable:
    """A compiled backend's encoder with the item table of a grown model (same rows, new ones filled)."""

    def __init__(self, backend: ScoringBackend, model: SeqRecModel) -> None:
        """Args: the serving backend, the grown eager model whose item table is served."""
        self._backend = backend
        self.model = model.eval()
        self._table = model.item_table().detach().to(backend.device)

    @property
    def name(self) -> str:
        """The wrapped backend's label (the explainer picks its attribution method by it)."""
        return self._backend.name

    @property
    def device(self) -> torch.device:
        """Device of the wrapped backend."""
        return self._backend.device

    def encode(self, batch: SeqBatch) -> tuple[Tensor, Tensor]:
        """The compiled encoder's user vectors and repeat bonus."""
        return self._backend.encode(batch)

    def item_table(self) -> Tensor:
        """The grown model's item rows."""
        return self._table


def with_new_items(
    scorer: Scorer, items: Sequence[Item], catalog: Mapping[str, Item], encoder: TextEncoder
) -> tuple[Scorer, list[str]]:
    """`scorer` with rows for the titled `items` it does not know; (the same scorer, []) if none fits.

    Args:
        scorer: A `TorchScorer` or `TwoStageScorer` (anything else has no rows: returned as is).
        items: Catalog items just read.
        catalog: Every item known so far (text neighbours are looked up among them).
        encoder: The text model (MiniLM, loaded offline).
    """
    transformer = scorer.transformer if isinstance(scorer, TwoStageScorer) else scorer
    if not isinstance(transformer, TorchScorer):
        return scorer, []
    new = [i.item_id for i in items if item_text(i) and i.item_id not in transformer.vocab]
    new = list(dict.fromkeys(new))[: transformer.vocab.spare]
    model = getattr(transformer.backend, "model", None)
    if not new or not isinstance(model, SeqRecModel):
        return scorer, []
    grown_model, vocab, added = grow_vocabulary(model, transformer.vocab, new, catalog, encoder)
    backend: ScoringBackend = (
        EagerTorchBackend(grown_model, transformer.backend.device, transformer.backend.cache_mb)
        if isinstance(transformer.backend, EagerTorchBackend)
        else GrownTable(transformer.backend, grown_model)
    )
    grown = transformer.with_model(backend, vocab)
    if not isinstance(scorer, TwoStageScorer):
        return grown, added
    parts = scorer.builder.parts
    missing = [i for i in added if i not in parts.index]
    sequences = parts.sequences
    vocab_ids = [*sequences.vocab, *missing]
    index = {item: i for i, item in enumerate(vocab_ids)}
    grown_parts = CountParts(dataclasses.replace(sequences, vocab=vocab_ids, index=index)) if missing else parts
    return scorer.with_transformer(grown, scorer.version, grown_parts), added
