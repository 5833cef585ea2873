"""Continual fine-tuning of a serving transformer: replay reservoir, growing vocabulary, guarded steps, ranking.

One learner cycle (driven by `streams/learner/`) is: `grow_vocabulary` for items the model has never seen
(spare rows first, a resized table when they run out; a titled item's row starts from the text tower, or from
its text neighbours' rows, else from its category's mean), `fine_tune` for a few AdamW steps on fresh sequences
mixed with sequences replayed from a `ReplayReservoir` (against forgetting; sampled softmax on large vocabularies,
as in offline training), then `model.gate.gate`: candidate
vs serving vs anchor on the newest held-back window, ranked here by `Ranker` / `ndcg_values`. A non-finite
loss, an exploding gradient norm or non-finite weights discard the update (`FineTuneResult.ok` False, with the
reason).

`run_cycle` is that cycle as one function without Kafka or a model store: the base as served, the window, the
catalog and the stored versions to compare with in, a `CycleDecision` (promote or not, why, the gate's
numbers, the candidate) out. The learner service saves and promotes the candidate when told to.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import random
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, Protocol

import numpy as np
import torch

from contracts import EventType, Item
from model.cycle_config import ContinualConfig, GateConfig
from model.exclude import current_item
from model.metrics import ndcg_at_k
from model.scoring import ItemContext, UserState
from model.sequences import EventRows, batch_from_states, event_rows
from model.splits import TestPoint
from model.stream_buffer import CycleData, UserSequence
from model.targets import next_new_points
from model.text_tower import TextEncoder, item_text
from model.torch_scorer import chunked_topk
from model.train import SAMPLED_ABOVE
from model.transformer import ModelConfig, SeqBatch, SeqRecModel, event_type_index
from model.vocab import ItemVocab

if TYPE_CHECKING:
    from model.gate import GateResult

__all__ = [
    "CachedEncoder",
    "ContinualConfig",
    "CycleDecision",
    "CycleInputs",
    "FineTuneResult",
    "ListsTop",
    "Ranker",
    "ReplayReservoir",
    "Servable",
    "UserSequence",
    "encode_sequences",
    "fine_tune",
    "grow_vocabulary",
    "judge",
    "ndcg_at_10",
    "ndcg_values",
    "resolve_loss",
    "run_cycle",
]

_SEARCH = event_type_index(EventType.SEARCH)


class CachedEncoder:
    """A `TextEncoder` that remembers every text it embedded (item texts recur every cycle)."""

    def __init__(self, encoder: TextEncoder) -> None:
        """Args: the text model."""
        self._encoder = encoder
        self._cache: dict[str, np.ndarray] = {}

    @property
    def name(self) -> str:
        """The wrapped model's name."""
        return self._encoder.name

    @property
    def dim(self) -> int:
        """Embedding size."""
        return self._encoder.dim

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """Embeddings of `texts`; only texts never seen before reach the model."""
        missing = sorted({t for t in texts if t not in self._cache})
        if missing:
            self._cache.update(zip(missing, self._encoder.encode(missing), strict=True))
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        return np.stack([self._cache[t] for t in texts]).astype(np.float32)


class ReplayReservoir:
    """Uniform sample (reservoir sampling, Algorithm R) of every sequence ever offered, bounded in size."""

    def __init__(self, size: int, seed: int = 0) -> None:
        """Args: sequences kept, sampling seed."""
        self.size = size
        self.seen = 0
        self._items: list[UserSequence] = []
        self._rng = random.Random(seed)

    def __len__(self) -> int:
        """Sequences held."""
        return len(self._items)

    def add(self, sequences: Sequence[UserSequence]) -> None:
        """Offer sequences; each of the `seen` so far is kept with probability size/seen."""
        for sequence in sequences:
            self.seen += 1
            if len(self._items) < self.size:
                self._items.append(sequence)
            else:
                j = self._rng.randrange(self.seen)
                if j < self.size:
                    self._items[j] = sequence

    def sample(self, n: int) -> list[UserSequence]:
        """Up to `n` distinct held sequences."""
        return self._rng.sample(self._items, min(n, len(self._items)))


@dataclass(frozen=True, slots=True)
class FineTuneResult:
    """A candidate model, or why the update was discarded."""

    model: SeqRecModel | None  # None when discarded
    ok: bool
    reason: str  # "ok" or what went wrong
    steps: int  # steps taken
    loss_first: float
    loss_last: float
    max_grad_norm: float  # largest pre-clip gradient norm seen


def encode_sequences(
    sequences: Sequence[UserSequence], vocab: ItemVocab, config: ModelConfig
) -> tuple[SeqBatch, torch.Tensor]:
    """Left-padded inputs and next-item targets (B, T): the newest `max_len + 1` usable events of each sequence."""
    t = config.max_len
    rows: list[EventRows] = [event_rows(s, vocab, config.n_gap_buckets) for s in sequences]
    arrays = [np.zeros((len(rows), t), dtype=np.int64) for _ in range(5)]  # items, types, gaps, mask, targets
    for r, enc in enumerate(rows):
        items, types, gaps = enc.items[-(t + 1) :], enc.types[-(t + 1) :], enc.gaps[-(t + 1) :]
        n = len(items) - 1  # inputs; the last event is only a target
        if n <= 0:
            continue
        nexts = np.where(types[1:] == _SEARCH, 0, items[1:])
        for a, part in enumerate((items[:-1], types[:-1], gaps[:-1])):
            arrays[a][r, t - n :] = part
        arrays[3][r, t - n :] = 1
        arrays[4][r, t - n :] = nexts
    items_t, types_t, gaps_t, mask_t, targets_t = (torch.from_numpy(a) for a in arrays)
    return SeqBatch(items_t, types_t, gaps_t, mask_t), targets_t


def _resized(model: SeqRecModel, capacity: int) -> SeqRecModel:
    """A copy of `model` with `capacity` item rows (old rows kept, new rows zero)."""
    grown = SeqRecModel(dataclasses.replace(model.config, n_items=capacity))
    state = model.state_dict()
    target = grown.state_dict()
    for name, tensor in state.items():
        if name in ("item_emb.weight", "item_text"):
            target[name][: tensor.shape[0]] = tensor
            target[name][tensor.shape[0] :] = 0.0
        else:
            target[name] = tensor
    grown.load_state_dict(target)
    return grown


@torch.no_grad()
def grow_vocabulary(
    model: SeqRecModel,
    vocab: ItemVocab,
    new_items: Sequence[str],
    catalog: Mapping[str, Item],
    encoder: TextEncoder | None = None,
    growth: float = 0.25,
    neighbours: int = 5,
) -> tuple[SeqRecModel, ItemVocab, list[str]]:
    """Give rows to items the model does not know; returns (model, vocab, added ids) — new objects if grown.

    The input model and vocabulary are never modified (the serving model may share them).
    """
    added = list(dict.fromkeys(i for i in new_items if i not in vocab))
    if not added:
        return model, vocab, []
    capacity = vocab.capacity
    if len(added) > vocab.spare:
        capacity = len(vocab) + 1 + len(added) + max(64, int(vocab.capacity * growth))
        model = _resized(model, capacity)
    else:
        model = copy.deepcopy(model)
    vocab = ItemVocab(vocab.ids, capacity=capacity)
    rows = vocab.add(added)
    _init_rows(model, vocab, rows, added, catalog, encoder, neighbours)
    return model, vocab, added


def _init_rows(
    model: SeqRecModel,
    vocab: ItemVocab,
    rows: list[int],
    added: list[str],
    catalog: Mapping[str, Item],
    encoder: TextEncoder | None,
    neighbours: int,
) -> None:
    emb = model.item_emb.weight  # (V, C)
    known = len(vocab) - len(added)  # rows 1..known are the old items
    texts = {i: item_text(catalog[i]) for i in added if i in catalog}
    titled = [i for i in added if texts.get(i)]
    vectors: dict[str, torch.Tensor] = {}
    if encoder is not None and titled:
        encoded = torch.from_numpy(encoder.encode([texts[i] or "" for i in titled]))
        vectors = dict(zip(titled, encoded, strict=True))
    if model.text_proj is not None:
        for item_id, row in zip(added, rows, strict=True):
            if item_id in vectors:
                model.item_text[row] = vectors[item_id]  # the text tower scores it; its ID row starts at zero
    neighbour_rows = _text_neighbours(vectors, vocab, catalog, encoder, known, neighbours)
    by_category: dict[str, list[int]] = {}
    for row in range(1, known + 1):
        item = catalog.get(vocab.item(row))
        if item is not None and item.category is not None:
            by_category.setdefault(item.category, []).append(row)
    scale = 0.1 / math.sqrt(emb.shape[1])
    for item_id, row in zip(added, rows, strict=True):
        if model.text_proj is not None and item_id in vectors:
            emb[row] = 0.0
        elif item_id in neighbour_rows:
            rows_, weights = neighbour_rows[item_id]
            emb[row] = (weights[:, None] * emb[rows_]).sum(0)  # similarity-weighted mean of the neighbours
        elif (category := getattr(catalog.get(item_id), "category", None)) in by_category:
            emb[row] = emb[by_category[category]].mean(0)
        else:
            emb[row] = torch.randn(emb.shape[1]) * scale  # unknown: a small vector, neutral scores


def _text_neighbours(
    vectors: Mapping[str, torch.Tensor],
    vocab: ItemVocab,
    catalog: Mapping[str, Item],
    encoder: TextEncoder | None,
    known: int,
    k: int,
) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """For each new titled item: rows of its `k` most text-similar known items and their weights (similarity,
    normalised; dissimilar items get none). Works without a text tower."""
    if encoder is None or not vectors:
        return {}
    pool = [(row, item_text(catalog[vocab.item(row)])) for row in range(1, known + 1) if vocab.item(row) in catalog]
    pool = [(row, text) for row, text in pool if text]
    if not pool:
        return {}
    known_vectors = torch.from_numpy(encoder.encode([text for _, text in pool if text]))  # (K, D) unit length
    pool_rows = torch.tensor([row for row, _ in pool])
    out = {}
    for item_id, vector in vectors.items():
        sims, picked = (known_vectors @ vector).topk(min(k, len(pool)))  # (k,) cosine, best first
        weights = sims.clamp(min=0.0)
        if float(weights.sum()) > 0.0:
            out[item_id] = (pool_rows[picked], weights / weights.sum())
    return out


def fine_tune(
    model: SeqRecModel,
    vocab: ItemVocab,
    fresh: Sequence[UserSequence],
    reservoir: ReplayReservoir,
    config: ContinualConfig,
) -> FineTuneResult:
    """A few guarded AdamW steps on `fresh` + replayed sequences, on a copy of `model`."""
    candidate = copy.deepcopy(model).train()
    torch.manual_seed(config.seed + reservoir.seen)
    rng = random.Random(config.seed + reservoir.seen)
    allowed = torch.zeros(vocab.capacity, dtype=torch.bool)
    allowed[1 : len(vocab) + 1] = True  # padding and unclaimed rows are never targets
    optimizer = torch.optim.AdamW(candidate.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    n_replay = round(config.batch_size * config.replay_fraction) if len(reservoir) else 0
    sampled = resolve_loss(config, vocab) == "sampled"
    losses: list[float] = []
    worst = 0.0
    for _ in range(config.steps):
        picked = rng.sample(list(fresh), min(len(fresh), config.batch_size - n_replay)) + reservoir.sample(n_replay)
        batch, targets = encode_sequences(picked, vocab, candidate.config)
        if not bool((targets > 0).any()):
            continue
        # Distinct known rows (without replacement), so the model's log(V/N) correction is exact.
        negatives = 1 + torch.randperm(len(vocab))[: config.n_negatives] if sampled else None
        loss = candidate(batch, targets, candidates=allowed, negatives=negatives).loss
        assert loss is not None  # noqa: S101 (targets were given)
        value = float(loss.detach())
        if not math.isfinite(value) or value > config.max_loss:
            return _discarded(f"loss {value:.4g} at step {len(losses) + 1}", losses, worst)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        norm = float(torch.nn.utils.clip_grad_norm_(candidate.parameters(), config.grad_clip))
        worst = max(worst, norm) if math.isfinite(norm) else math.inf
        if not math.isfinite(norm) or norm > config.max_grad_norm:
            return _discarded(f"gradient norm {norm:.4g} at step {len(losses) + 1}", losses, worst)
        optimizer.step()
        losses.append(value)
    if not losses:
        return _discarded("no training targets", losses, worst)
    if not all(bool(torch.isfinite(p).all()) for p in candidate.parameters()):
        return _discarded("non-finite weights after the update", losses, worst)
    return FineTuneResult(candidate.eval(), True, "ok", len(losses), losses[0], losses[-1], worst)


def resolve_loss(config: ContinualConfig, vocab: ItemVocab) -> Literal["softmax", "sampled"]:
    """The loss `fine_tune` uses: `config.loss`, with "auto" resolved by the vocabulary's row count."""
    if config.loss != "auto":
        return config.loss
    return "sampled" if vocab.capacity > SAMPLED_ABOVE else "softmax"


def _discarded(reason: str, losses: list[float], worst: float) -> FineTuneResult:
    first = losses[0] if losses else math.nan
    last = losses[-1] if losses else math.nan
    return FineTuneResult(None, False, reason, len(losses), first, last, worst)


class ListsTop(Protocol):
    """Anything the gate ranks with: `Ranker`, `model.served_ranking.TwoStageRanker`."""

    def top(self, states: Sequence[UserState], k: int = 10) -> list[list[str]]:
        """Top-`k` item ids per user."""
        ...


@dataclass(frozen=True, slots=True)
class Ranker:
    """A model and its vocabulary, ranked the way `TorchScorer` ranks them, without building explanations."""

    model: SeqRecModel
    vocab: ItemVocab

    @torch.no_grad()
    def top(self, states: Sequence[UserState], k: int = 10, batch_size: int = 256) -> list[list[str]]:
        """Top-`k` item ids per user (full catalog; padding/spare rows, just-purchased and current items excluded).

        The current item (of the user's latest event) is excluded as in serving (`model.exclude`) and in the
        `next-new` protocol the gate's targets follow.
        """
        self.model.eval()
        table = self.model.item_table()  # (V, C)
        blocked = torch.ones(table.shape[0], dtype=torch.bool)
        blocked[1 : len(self.vocab) + 1] = False
        out: list[list[str]] = []
        for start in range(0, len(states), batch_size):
            chunk = states[start : start + batch_size]
            batch, _ = batch_from_states(chunk, self.vocab, self.model.config)
            users, copy = self.model.encode(batch)  # (B, C), (B, T)
            bought = [
                [r for r in map(self.vocab.index, [*u.purchased_recently, current_item(u)]) if r is not None]
                for u in chunk
            ]
            values, rows = chunked_topk(users, table, k, blocked, bought, bonus_rows=batch.items, bonus=copy)
            for vals, picked in zip(values.tolist(), rows.tolist(), strict=True):
                out.append([self.vocab.item(r) for v, r in zip(vals, picked, strict=True) if math.isfinite(v)])
        return out


def ndcg_values(ranker: ListsTop, points: Sequence[TestPoint]) -> np.ndarray:
    """Full-ranking NDCG@10 of `ranker` per point (N,), in the order of `points`."""
    if not points:
        return np.zeros(0, dtype=np.float64)
    ranked = ranker.top([p.state for p in points], k=10)
    return np.array([ndcg_at_k(r, p.target, 10) for r, p in zip(ranked, points, strict=True)], dtype=np.float64)


def ndcg_at_10(ranker: ListsTop, points: Sequence[TestPoint]) -> float:
    """Mean full-ranking NDCG@10 of `ranker` over `points` (0.0 without points)."""
    return float(ndcg_values(ranker, points).mean()) if points else 0.0


class Servable(Protocol):
    """A version as workers serve it (`model.served_ranking.ServedModel`): what a cycle tunes and ranks with."""

    @property
    def model(self) -> SeqRecModel:
        """The transformer."""
        ...

    @property
    def vocab(self) -> ItemVocab:
        """Its vocabulary."""
        ...

    def with_transformer(self, model: SeqRecModel, vocab: ItemVocab) -> Servable:
        """The same serving setting around another transformer (the fine-tuned copy)."""
        ...

    def ranker(self, items: ItemContext) -> ListsTop:
        """How it ranks for the gate, with `items` as the feature store's view."""
        ...


@dataclass(frozen=True)
class CycleInputs:
    """What one cycle reads besides its window: catalog, replay, and the stored versions it is compared with."""

    base_version: str  # the version the cycle fine-tunes (what serves)
    catalog: Mapping[str, Item] = field(default_factory=dict)  # titles and categories of known items
    new_items: Sequence[str] = ()  # catalog items announced since the last cycle (rows if the base lacks them)
    reservoir: ReplayReservoir = field(default_factory=lambda: ReplayReservoir(0))  # sampled, never added to here
    encoder: TextEncoder | None = None  # text rows for new titled items (None: neighbours / category means)
    anchor_version: str | None = None  # `ModelStore.anchor()`: the last full `streamrec train` (None: no check)
    frozen_version: str = ""  # a fixed version scored on every window for drift reports ("": none)
    reference: Callable[[str], Servable] | None = None  # a stored version as served (anchor, frozen reference)


@dataclass(frozen=True)
class CycleDecision:
    """The outcome of `run_cycle`: promote the candidate or not, why, and every number logged."""

    promote: bool  # the candidate passed the gate (the caller saves it and compare-and-sets CURRENT)
    reason: str
    record: dict[str, Any]  # fields of the learner's log line (losses, gate numbers, seconds per phase)
    candidate: Servable | None = None  # the fine-tuned model as served (None: the update was discarded)
    gate: GateResult | None = None  # None: discarded before the gate
    carry: bool = False  # no decision (too few targets): the window's users train again next cycle

    @property
    def metrics(self) -> dict[str, float]:
        """The gate's numbers for the manifest and `ModelUpdate.metrics` (empty when discarded)."""
        return self.gate.metrics() if self.gate is not None else {}


def run_cycle(
    base: Servable, data: CycleData, inputs: CycleInputs, config: ContinualConfig, gate_config: GateConfig
) -> CycleDecision:
    """Grow the base's vocabulary, fine-tune it on `data.train` (+ replay) and gate it on `data.points`.

    No I/O: stored versions come through `inputs.reference`. The candidate is judged as it will be served
    (inside the base's serving setting), on item-side features built from the window's own sequences.
    """
    from model.served_ranking import window_context  # local: served_ranking imports this module

    new = [i for i in [*data.items, *inputs.new_items] if i not in base.vocab]
    encoder = inputs.encoder if inputs.catalog else None
    model, vocab, added = grow_vocabulary(base.model, base.vocab, new, inputs.catalog, encoder, config.growth)
    record: dict[str, Any] = {"new_items": len(added), "loss": resolve_loss(config, vocab)}
    phase = time.perf_counter()
    tuned = fine_tune(model, vocab, data.train, inputs.reservoir, config)
    record["fine_tune_seconds"], phase = round(time.perf_counter() - phase, 3), time.perf_counter()
    record |= {"steps": tuned.steps, "loss_first": tuned.loss_first, "loss_last": tuned.loss_last,
               "max_grad_norm": tuned.max_grad_norm}  # fmt: skip
    if tuned.model is None:
        reason = f"update discarded: {tuned.reason}"
        return CycleDecision(False, reason, record | {"reason": reason})
    items = window_context(data.train, data.users, inputs.catalog)
    candidate = base.with_transformer(tuned.model, vocab)
    decision = judge(base.ranker(items), candidate.ranker(items), data.points, inputs, gate_config, items)
    record |= decision.record | {"gate_seconds": round(time.perf_counter() - phase, 3)}
    return dataclasses.replace(decision, record=record, candidate=candidate)


def judge(
    serving: ListsTop,
    candidate: ListsTop,
    points: Sequence[TestPoint],
    inputs: CycleInputs,
    gate_config: GateConfig,
    items: ItemContext,
) -> CycleDecision:
    """The gate on `points` (candidate vs serving vs anchor), with the frozen reference's NDCG@10 for drift."""
    from model.gate import gate  # local: the gate imports this module

    anchor = None if inputs.anchor_version is None else _reference_ranker(inputs, inputs.anchor_version, serving, items)
    result = gate(candidate, serving, anchor, points, gate_config)
    record: dict[str, Any] = {"candidate_ndcg": result.candidate_ndcg, "serving_ndcg": result.serving_ndcg,
                              "anchor_ndcg": result.anchor_ndcg, "anchor_version": inputs.anchor_version,
                              "gate": result.metrics(), "reason": result.reason}  # fmt: skip
    frozen = inputs.frozen_version
    if frozen and result.points:
        if frozen == inputs.anchor_version:
            value = result.anchor_ndcg
        elif frozen == inputs.base_version:
            value = result.serving_ndcg
        else:
            targets = next_new_points(points)[-gate_config.max_points :]
            value = ndcg_at_10(_reference_ranker(inputs, frozen, serving, items), targets)
        record |= {"frozen_ndcg": value, "frozen_version": frozen}
    return CycleDecision(result.promote, result.reason, record, gate=result, carry=not result.points)


def _reference_ranker(inputs: CycleInputs, version: str, serving: ListsTop, items: ItemContext) -> ListsTop:
    """A stored version's ranker (`serving` when it is the base)."""
    if version == inputs.base_version:
        return serving
    if inputs.reference is None:
        msg = f"version {version} is compared with but no `reference` loader was given"
        raise ValueError(msg)
    return inputs.reference(version).ranker(items)
