"""Training the two-stage model, top to bottom: transformer -> counting parts -> ranker -> refit on everything.

1. The transformer trains on the events before the validation window with early stopping on it
   (`model.train.train`, next-new targets).
2. The counting parts (`model.count_parts`) are fitted on the same events, so on the validation window every
   part is as far from its data as it will be from the test (or serving) events.
3. The ranker (`model.ranker`) is fitted on the validation window's targets (up to `ranker_points` whose item
   the parts know), with its own early stopping on held-out shares of them.
4. Refit (default): the transformer is retrained from scratch on all events for the epoch count early stopping
   chose, and the counting parts are refitted on all events; the ranker is kept (its features are
   scale-free: log counts, ranks, relative scores).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from contracts import Event, Item
from model.backends.eager import EagerTorchBackend
from model.count_parts import CountParts
from model.interactions import InteractionIndex
from model.rank_features import FEATURES
from model.ranker import RankerConfig, RankerEnsemble, fit_ranker, list_ndcg
from model.scoring import ItemContext
from model.sequences import QueryCache
from model.splits import TestPoint
from model.text_tower import TextEncoder, item_text
from model.torch_scorer import TorchScorer
from model.train import Progress, TrainConfig, TrainResult, train, validation_split
from model.two_stage import CandidateBuilder, TwoStageScorer, training_examples

__all__ = ["TwoStageConfig", "TwoStageResult", "fit_context", "text_items", "train_two_stage"]


@dataclass(frozen=True)
class TwoStageConfig:
    """Knobs of the whole pipeline (the defaults of `streamrec train`)."""

    # the transformer; `refit` (on by default here) refits every part on all events after early stopping
    train: TrainConfig = field(default_factory=lambda: TrainConfig(refit=True))
    ranker: RankerConfig = field(default_factory=RankerConfig)
    depth: int = 50  # items per source list in the candidate union
    ranker_points: int = 10_000  # validation targets the ranker learns from (subsampled with the seed)


@dataclass(frozen=True, slots=True)
class TwoStageResult:
    """The fitted parts and what they were trained on."""

    transformer: TrainResult  # the served transformer (refitted unless `train.refit` is off)
    parts: CountParts
    ranker: RankerEnsemble
    metrics: dict[str, float]  # validation metrics: transformer alone and ranker
    training: dict[str, Any]

    def scorer(self, version: str = "two-stage") -> TwoStageScorer:
        """The servable scorer of this result (eager torch on CPU)."""
        model = self.transformer.model
        torch_scorer = TorchScorer(EagerTorchBackend(model, "cpu"), self.transformer.vocab, model.config, version)
        return TwoStageScorer(CandidateBuilder(torch_scorer, self.parts, self.depth), self.ranker, version)

    @property
    def depth(self) -> int:
        """Items per source list."""
        return int(self.training["depth"])


def fit_context(
    events: Sequence[Event], catalog: Mapping[str, Item], protocol: str, new_items: bool = False
) -> ItemContext:
    """Feature-store view of `events` (popularity, co-occurrence).

    Outside `loo` only their items are available, unless `new_items` (a text tower can rank items without
    events, and the ranker must see such targets to learn when to trust it).
    """
    trained = {e.item_id for e in events if e.item_id is not None}
    unavailable = set() if protocol == "loo" or new_items else set(catalog) - trained
    return InteractionIndex.build(events, catalog).item_context(unavailable=unavailable)


def text_items(catalog: Mapping[str, Item], enabled: bool) -> list[str]:
    """Catalog items with a text (rows of the counting parts even without events), when the text tower is on."""
    return sorted(i for i, item in catalog.items() if item_text(item) is not None) if enabled else []


def _learnable(points: Sequence[TestPoint], parts: CountParts, limit: int, seed: int) -> list[TestPoint]:
    """Up to `limit` points (seeded subsample) whose target the parts know.

    A target first seen inside the validation window can be no candidate (as a test target outside the training
    items is a miss), so it teaches the ranker nothing; on Taobao, whose window spans days, most are such.
    """
    known = [p for p in points if p.target in parts.index]
    if len(known) <= limit:
        return known
    keep = np.sort(np.random.default_rng(seed).choice(len(known), size=limit, replace=False))
    return [known[i] for i in keep.tolist()]


def train_two_stage(
    events: Sequence[Event],
    catalog: Mapping[str, Item],
    config: TwoStageConfig | None = None,
    on_progress: Callable[[Progress], None] | None = None,
    log: Callable[[str], None] | None = None,
    text_encoder: TextEncoder | None = None,
) -> TwoStageResult:
    """Fit the two-stage model on `events` (module docstring); `log` gets one line per stage.

    `text_encoder` is needed when `config.train.model.text_tower` (item texts, search queries, text neighbours).

    Raises:
        ValueError: too little data for the transformer's or the ranker's validation.
    """
    config = config or TwoStageConfig()
    say = log or (lambda _: None)
    started = time.monotonic()
    text_on = config.train.model.text_tower
    extra = text_items(catalog, text_on)
    validated = train(events, catalog, dataclasses.replace(config.train, refit=False), text_encoder, on_progress)
    say(f"transformer: best epoch {validated.training['best_epoch']}, validation ndcg@10 "
        f"{validated.metrics['ndcg@10']:.4f} ({time.monotonic() - started:.0f} s)")  # fmt: skip
    ordered = sorted(events, key=lambda e: e.ts)
    fit, every_point, _ = validation_split(ordered, catalog, config.train, None)
    parts = CountParts.fit(fit, extra)
    points = _learnable(every_point, parts, config.ranker_points, config.train.seed)
    model = validated.model
    queries = QueryCache(text_encoder) if text_on and text_encoder is not None else None
    torch_scorer = TorchScorer(EagerTorchBackend(model, "cpu"), validated.vocab, model.config, "validation", queries)
    builder = CandidateBuilder(torch_scorer, parts, config.depth)
    context = fit_context(fit, catalog, config.train.valid_protocol, new_items=text_on)
    examples = training_examples(builder, points, context)
    covered = sum(1 for _, gold in examples if gold >= 0) / max(len(examples), 1)
    say(f"ranker: {len(examples)} validation targets, {covered:.1%} among the candidates "
        f"({time.monotonic() - started:.0f} s)")  # fmt: skip

    def ranker_report(epoch: int, loss: float, ndcg: float) -> None:
        say(f"ranker epoch {epoch}: loss {loss:.4f}, held-out ndcg@10 {ndcg:.4f}")

    ranker, ranker_metrics = fit_ranker(examples, config.ranker, ranker_report)
    for name in ("t_logp", "tr_log", "sk_log"):  # one source alone on the same lists, for comparison
        column = FEATURES.index(name)
        alone = sum(list_ndcg(f[:, column], gold) for f, gold in examples) / max(len(examples), 1)
        say(f"validation ndcg@10 of {name} alone over the candidates: {alone:.4f}")
    served, served_parts = validated, parts
    if config.train.refit:
        epochs = int(validated.training["best_epoch"])
        say(f"refit on all {len(ordered)} events: transformer {epochs} epochs, counting parts")
        refit = dataclasses.replace(config.train, refit_epochs=epochs)
        served = train(events, catalog, refit, text_encoder, on_progress)
        served_parts = CountParts.fit(ordered, extra)
    seconds = time.monotonic() - started
    metrics = {**validated.metrics, **ranker_metrics, "ranker_coverage": covered}
    training = {
        **validated.training, "refit": config.train.refit, "depth": config.depth, "ranker_points": len(examples),
        "ranker": dataclasses.asdict(config.ranker), "train_seconds": round(seconds, 1),
    }  # fmt: skip
    say(f"done in {seconds:.0f} s")
    return TwoStageResult(served, served_parts, ranker, metrics, training)
