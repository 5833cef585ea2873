"""What the learner's gate ranks with: a version as workers serve it.

A version saved by `streamrec train` is usually a two-stage model (transformer + counting parts + ranker); a
fine-tune by the learner replaces only its transformer (`model.store` carries the parent's parts and ranker
over). So a candidate is judged inside the same two-stage model it will be served in: the gate compares
two-stage(candidate transformer) with two-stage(serving transformer), not the transformers alone, whose
ranking workers never show. The counting parts read item-side features (`ItemContext`: popularity,
co-occurrence) which workers take from the feature store; the gate builds them from the cycle's own training
sequences (`window_context`), the same for every model it compares.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from contracts import Event, Item
from contracts.state import UserState
from model.artifacts import LoadedModel
from model.backends.eager import EagerTorchBackend
from model.continual import ListsTop, Ranker
from model.scoring import ItemContext
from model.stream_buffer import UserSequence
from model.torch_scorer import TorchScorer
from model.train_two_stage import fit_context
from model.transformer import SeqRecModel
from model.two_stage import TwoStageScorer
from model.vocab import ItemVocab

__all__ = ["ServedModel", "TwoStageRanker", "window_context"]


@dataclass(frozen=True, slots=True)
class TwoStageRanker:
    """Item ids of a two-stage model's served lists (explanations are built by `score` and dropped)."""

    scorer: TwoStageScorer
    items: ItemContext

    def top(self, states: Sequence[UserState], k: int = 10) -> list[list[str]]:
        """Top-`k` item ids per user, as a worker would serve them with `items` as its feature store's view."""
        return [[s.item_id for s in row] for row in self.scorer.score(states, self.items, k)]


@dataclass(frozen=True, slots=True)
class ServedModel:
    """A transformer, its vocabulary, and the two-stage model it is served in (None: served alone)."""

    model: SeqRecModel
    vocab: ItemVocab
    two_stage: TwoStageScorer | None = None

    @classmethod
    def of(cls, loaded: LoadedModel) -> ServedModel:
        """A loaded version; a two-stage directory brings its counting parts and ranker."""
        if loaded.manifest.two_stage is None:
            return cls(loaded.model, loaded.vocab)
        from model.two_stage_store import load_two_stage  # local: it imports the training modules

        return cls(
            loaded.model, loaded.vocab, load_two_stage(loaded.path, loaded.manifest, _eager(loaded.model, loaded.vocab))
        )

    def with_transformer(self, model: SeqRecModel, vocab: ItemVocab) -> ServedModel:
        """The same serving setting (parts, ranker) around another transformer, e.g. a fine-tuned copy."""
        if self.two_stage is None:
            return ServedModel(model, vocab)
        return ServedModel(model, vocab, self.two_stage.with_transformer(_eager(model, vocab)))

    def ranker(self, items: ItemContext) -> ListsTop:
        """How this model ranks for the gate; `items` is read by the two-stage model only."""
        if self.two_stage is None:
            return Ranker(self.model, self.vocab)
        return TwoStageRanker(self.two_stage, items)


def window_context(sequences: Sequence[UserSequence], users: Sequence[str], catalog: Mapping[str, Item]) -> ItemContext:
    """Popularity and co-occurrence of a cycle's training sequences (`users[i]` owns `sequences[i]`)."""
    events = [
        Event.model_construct(event_id=e.event_id, user_id=user, item_id=e.item_id, type=e.type, ts=e.ts, query=e.query)
        for user, sequence in zip(users, sequences, strict=True)
        for e in sequence
    ]
    return fit_context(events, catalog, "loo")  # every item available, as in a worker


def _eager(model: SeqRecModel, vocab: ItemVocab) -> TorchScorer:
    return TorchScorer(EagerTorchBackend(model, "cpu"), vocab, model.config, "gate")
