"""Training the transformer, top to bottom: config -> data -> init -> loop -> eval -> best checkpoint.

Data: canonical events (+ catalog), split by time; the newest `valid_fraction` of events is the validation
window (`next-new` targets by default, `model.splits.time_split`; ranked as served, without the current item).
Every position of every training sequence predicts the next item (SASRec-style), with full softmax cross-entropy
over the catalog or a sampled softmax. AdamW, gradient clipping, early stopping on validation NDCG@10 (the
evaluation harness's metric functions), seeded and reproducible on CPU. Saving is `model.artifacts.save_model`'s job.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import hashlib
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from contracts import Event, EventType, Item
from model.backends.eager import EagerTorchBackend
from model.evaluate import point_metrics, rank_points
from model.exclude import ExcludeCurrentItem
from model.scoring import ItemContext, Scorer
from model.sequences import QueryCache, event_rows
from model.splits import (
    CATALOG_FILE,
    EVENTS_FILE,
    TargetRule,
    TestPoint,
    cutoff_at_fraction,
    loo_split,
    split_at,
    time_split,
)
from model.text_tower import TextEncoder, catalog_text_matrix
from model.torch_scorer import TorchScorer
from model.transformer import ModelConfig, SeqBatch, SeqRecModel, event_type_index
from model.vocab import ItemVocab

__all__ = [
    "Progress",
    "TrainConfig",
    "TrainResult",
    "build_vocab",
    "cold_start",
    "data_fingerprint",
    "train",
    "train_steps",
    "trained_rows",
    "resolve_loss",
    "validation_split",
]


@dataclass(frozen=True)
class TrainConfig:
    """Training knobs; `model` is a template whose `n_items` is set from the data."""

    model: ModelConfig = field(default_factory=ModelConfig)
    epochs: int = 30  # upper bound; early stopping usually ends sooner
    batch_size: int = 256  # sequences per step
    lr: float = 3e-3  # AdamW learning rate
    weight_decay: float = 0.01  # AdamW decoupled weight decay
    grad_clip: float = 1.0  # max gradient norm
    # full softmax over the catalog, sampled softmax, or auto: sampled above `SAMPLED_ABOVE` vocabulary rows (a
    # full softmax step costs O(catalog); the head-to-head on Taobao's 48.7k items gave the same NDCG at 1/9 time)
    loss: Literal["softmax", "sampled", "auto"] = "auto"
    n_negatives: int = 1024  # shared uniform negatives per step (sampled loss)
    seed: int = 0  # model init, shuffling, dropout, negatives, validation subsample
    # newest share of events used as the validation window (time protocols); 0.2 so that the two-stage ranker,
    # which learns from this window's targets, gets enough of them
    valid_fraction: float = 0.2
    # validation: newest window with next-new targets, the same window with every event a target, or each
    # user's last item
    valid_protocol: Literal["next-new", "time", "loo"] = "next-new"
    max_valid_points: int = 2000  # validation targets (subsampled with `seed`)
    # training targets: every next event, or only next events whose item differs from the current one (re-clicks
    # are never served, `model.exclude`); the same rule as the `next-new` protocol
    train_targets: TargetRule = "next-new"
    patience: int = 3  # epochs without a better validation NDCG@10 before stopping
    # wall-clock cap of the validated run (seconds; None: none): no epoch starts after it, so with the refit
    # (as many epochs on ~10 % more events) `streamrec train` stays within its 20-minute budget on 2 CPU cores
    max_train_seconds: float | None = 420.0
    spare_fraction: float = 0.1  # extra vocabulary rows for items the learner adds later
    text_cache_dir: Path | None = None  # where catalog text embeddings are cached
    refit: bool = False  # after early stopping, retrain from scratch on fit + validation events for the best epochs
    refit_epochs: int | None = None  # skip the validated run: refit for this many epochs (chosen by an earlier run)


@dataclass(frozen=True, slots=True)
class Progress:
    """One progress report: after a step (`ndcg` None) or after an epoch's validation."""

    epoch: int
    step: int
    steps: int
    loss: float
    ndcg: float | None = None


@dataclass(frozen=True, slots=True)
class TrainResult:
    """The best model (by validation NDCG@10) and what it was trained on."""

    model: SeqRecModel
    vocab: ItemVocab
    metrics: dict[str, float]  # validation metrics of the best epoch
    history: list[dict[str, float]]  # per epoch: loss, ndcg@10
    cutoff: datetime  # validation window start
    training: dict[str, Any]  # settings for the manifest


def build_vocab(events: Sequence[Event], catalog: Mapping[str, Item], spare_fraction: float) -> ItemVocab:
    """Items by event count (desc, then id), then catalog-only items (cold start) by id; plus spare rows."""
    counts = Counter(e.item_id for e in events if e.item_id is not None)
    ordered = sorted(counts, key=lambda i: (-counts[i], i))
    ordered += sorted(set(catalog) - counts.keys())
    spare = max(16, int(len(ordered) * spare_fraction))
    return ItemVocab(ordered, capacity=len(ordered) + 1 + spare)


def data_fingerprint(directory: Path) -> dict[str, Any]:
    """sha256 of the canonical files of an imported directory (what a model was trained on)."""
    out: dict[str, Any] = {"dir": str(directory)}
    for name in (EVENTS_FILE, CATALOG_FILE):
        path = Path(directory) / name
        if path.is_file():
            digest = hashlib.sha256()
            with path.open("rb") as handle:
                for block in iter(lambda: handle.read(1 << 20), b""):
                    digest.update(block)
            out[name] = digest.hexdigest()
    return out


_SEARCH = event_type_index(EventType.SEARCH)


@dataclass(frozen=True, slots=True)
class _Windows:
    """Left-padded training sequences: inputs and next-item targets, all (N, T)."""

    items: torch.Tensor
    types: torch.Tensor
    gaps: torch.Tensor
    mask: torch.Tensor
    targets: torch.Tensor
    queries: torch.Tensor  # row into the query matrix, 0 = none
    query_matrix: torch.Tensor | None  # (Q + 1, D)


def _windows(
    events: Sequence[Event],
    vocab: ItemVocab,
    config: ModelConfig,
    queries: QueryCache | None,
    rule: TargetRule = "every",
) -> _Windows:
    by_user: dict[str, list[Event]] = {}
    for event in events:
        by_user.setdefault(event.user_id, []).append(event)
    t = config.max_len
    rows: list[tuple[np.ndarray, ...]] = []
    query_ids: dict[str, int] = {}
    for user_id in sorted(by_user):
        enc = event_rows(by_user[user_id], vocab, config.n_gap_buckets)
        q = np.asarray([query_ids.setdefault(s, len(query_ids) + 1) if s else 0 for s in enc.queries], dtype=np.int64)
        nexts = np.where(enc.types[1:] == _SEARCH, 0, enc.items[1:])
        if rule == "next-new":  # a re-click of the item at this position is no target (`model.splits`)
            nexts = np.where(enc.items[1:] == enc.items[:-1], 0, nexts)
        for end in range(len(enc.items) - 1, 0, -t):  # windows of inputs [end - t, end), newest first
            start = max(0, end - t)
            rows.append(
                (enc.items[start:end], enc.types[start:end], enc.gaps[start:end], q[start:end], nexts[start:end])
            )
    arrays = [np.zeros((len(rows), t), dtype=np.int64) for _ in range(6)]
    for r, parts in enumerate(rows):
        n = len(parts[0])
        for a, part in zip((0, 1, 2, 5, 4), parts, strict=True):  # -> items, types, gaps, mask, targets, queries
            arrays[a][r, t - n :] = part
        arrays[3][r, t - n :] = 1
    matrix = None
    if config.text_tower:
        matrix = torch.zeros((len(query_ids) + 1, config.text_dim))
        if query_ids and queries is not None:
            vectors = queries.embed(list(query_ids))
            for text, row in query_ids.items():
                matrix[row] = torch.from_numpy(vectors[text])
    items, types, gaps, mask, targets, qrows = (torch.from_numpy(a) for a in arrays)
    return _Windows(items, types, gaps, mask, targets, qrows, matrix)


def _batch(w: _Windows, idx: torch.Tensor) -> tuple[SeqBatch, torch.Tensor]:
    # Drop the columns that are padding in every row (left padding: positions and recency are unchanged).
    start = w.items.shape[1] - int(w.mask[idx].sum(1).max())
    cols = slice(start, None)
    text = None if w.query_matrix is None else w.query_matrix[w.queries[idx, cols]]
    batch = SeqBatch(w.items[idx, cols], w.types[idx, cols], w.gaps[idx, cols], w.mask[idx, cols], text)
    return batch, w.targets[idx, cols]


def _bucketed_order(mask: torch.Tensor, batch_size: int, generator: torch.Generator) -> list[torch.Tensor]:
    """Shuffled batches of windows of similar length (less padding to compute), in shuffled order."""
    order = torch.randperm(mask.shape[0], generator=generator)
    lengths = mask.sum(1)
    batches: list[torch.Tensor] = []
    pool = 50 * batch_size  # sort by length within pools of 50 batches, keep randomness across pools
    for start in range(0, len(order), pool):
        part = order[start : start + pool]
        part = part[torch.argsort(lengths[part], stable=True)]
        batches.extend(part[i : i + batch_size] for i in range(0, len(part), batch_size))
    return [batches[i] for i in torch.randperm(len(batches), generator=generator).tolist()]


def _validate(
    model: SeqRecModel, vocab: ItemVocab, points: Sequence[TestPoint], queries: QueryCache | None, protocol: str
) -> dict[str, float]:
    scorer: Scorer = TorchScorer(EagerTorchBackend(model, "cpu"), vocab, model.config, "validation", queries)
    if protocol == "next-new":
        scorer = ExcludeCurrentItem(scorer)  # ranked as served (and as `streamrec evaluate` ranks)
    ranked = rank_points(scorer, points, ItemContext())
    values = point_metrics(ranked, [p.target for p in points])
    model.train()
    return {name: float(v.mean()) if len(v) else 0.0 for name, v in values.items()}


def _init_model(
    config: TrainConfig, vocab: ItemVocab, catalog: Mapping[str, Item], encoder: TextEncoder | None
) -> SeqRecModel:
    torch.manual_seed(config.seed)
    model = SeqRecModel(dataclasses.replace(config.model, n_items=vocab.capacity))
    if config.model.text_tower and encoder is not None:
        matrix, _ = catalog_text_matrix(vocab.ids, catalog, encoder, config.text_cache_dir)
        model.set_item_text(torch.from_numpy(matrix))
    return model


def _candidates(vocab: ItemVocab) -> torch.Tensor:
    """(V,) bool: the rows a target may be; padding and spare rows never are."""
    candidates = torch.zeros(vocab.capacity, dtype=torch.bool)
    candidates[1 : len(vocab) + 1] = True
    return candidates


def trained_rows(windows: _Windows, capacity: int) -> torch.Tensor:
    """(V,) bool: rows with at least one training event (as input or target); padding row 0 is not one."""
    seen = torch.zeros(capacity, dtype=torch.bool)
    seen[windows.items.flatten()] = True
    seen[windows.targets.flatten()] = True
    seen[0] = False
    return seen


def cold_start(model: SeqRecModel, vocab: ItemVocab, windows: _Windows) -> torch.Tensor:
    """Softmax candidates of a training run; with the text tower, rows without training events become text-only.

    Their ID part is set to zero and they are left out of the softmax, so it stays zero (no gradient, and weight
    decay keeps zero at zero): a cold item is scored by its text exactly as a new item will be, rather than by a
    random ID row, and training never pushes the text of unseen items down as negatives.
    """
    candidates = _candidates(vocab)
    if model.text_proj is None:
        return candidates
    trained = trained_rows(windows, vocab.capacity)
    with torch.no_grad():
        model.item_emb.weight[~trained] = 0.0
    return candidates & trained


def _adamw(model: SeqRecModel, config: TrainConfig) -> torch.optim.Optimizer:
    return torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)


def _epoch(
    model: SeqRecModel,
    windows: _Windows,
    optimizer: torch.optim.Optimizer,
    config: TrainConfig,
    candidates: torch.Tensor,
    generator: torch.Generator,
    report: Callable[[float, int, int], None],
) -> float:
    batches = _bucketed_order(windows.mask, config.batch_size, generator)
    steps = len(batches)
    total = 0.0
    for step, idx in enumerate(batches):
        total += _step(model, windows, idx, optimizer, config, candidates, generator)
        report(total / (step + 1), step + 1, steps)
    return total / max(steps, 1)


def _step(
    model: SeqRecModel,
    windows: _Windows,
    idx: torch.Tensor,
    optimizer: torch.optim.Optimizer,
    config: TrainConfig,
    candidates: torch.Tensor,
    generator: torch.Generator,
) -> float:
    """One optimizer step on windows `idx`; returns the loss."""
    batch, targets = _batch(windows, idx)
    negatives = None
    if config.loss == "sampled":
        # Distinct rows (without replacement), so the log(V/N) correction is exact for uniform sampling.
        negatives = 1 + torch.randperm(int(candidates.sum()), generator=generator)[: config.n_negatives]
    out = model(batch, targets, candidates=candidates, negatives=negatives)
    assert out.loss is not None
    optimizer.zero_grad(set_to_none=True)
    out.loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
    optimizer.step()
    return float(out.loss.detach())


@dataclass(frozen=True, slots=True)
class _Prepared:
    vocab: ItemVocab
    model: SeqRecModel
    queries: QueryCache | None
    windows: _Windows
    points: Sequence[TestPoint]
    cutoff: datetime
    n_fit: int
    everything: Sequence[Event]  # fit + validation events, time-ordered (the refit's training data)


def _prepare(
    events: Sequence[Event], catalog: Mapping[str, Item], config: TrainConfig, encoder: TextEncoder | None
) -> _Prepared:
    if config.model.text_tower and encoder is None:
        msg = "text_tower training needs a text_encoder"
        raise ValueError(msg)
    ordered = sorted(events, key=lambda e: e.ts)
    if len(ordered) < 2:
        msg = f"not enough data: {len(ordered)} events"
        raise ValueError(msg)
    fit, points, cutoff = validation_split(ordered, catalog, config, config.max_valid_points)
    vocab = build_vocab(ordered, catalog, config.spare_fraction)
    model = _init_model(config, vocab, catalog, encoder)
    queries = QueryCache(encoder) if encoder is not None and config.model.text_tower else None
    windows = _windows(fit, vocab, model.config, queries, config.train_targets)
    if windows.items.shape[0] == 0 or not points:
        msg = f"not enough data: {windows.items.shape[0]} training sequences, {len(points)} validation targets"
        raise ValueError(msg)
    return _Prepared(vocab, model, queries, windows, points, cutoff, len(fit), ordered)


SAMPLED_ABOVE = 20_000  # vocabulary rows above which `loss="auto"` samples negatives


def resolve_loss(config: TrainConfig, vocab: ItemVocab) -> TrainConfig:
    """`config` with `loss="auto"` replaced by `sampled` (large catalogs) or `softmax`."""
    if config.loss != "auto":
        return config
    return dataclasses.replace(config, loss="sampled" if vocab.capacity > SAMPLED_ABOVE else "softmax")


def validation_split(
    ordered: Sequence[Event], catalog: Mapping[str, Item], config: TrainConfig, max_points: int | None
) -> tuple[list[Event], Sequence[TestPoint], datetime]:
    """(events before the validation window, its targets, window start) for time-ordered `ordered`.

    `config.valid_protocol` chooses the window (newest `valid_fraction`, or every user's last item for `loo`);
    at most `max_points` targets (None: all), subsampled with `config.seed`.
    """
    if config.valid_protocol == "loo":
        split = loo_split(ordered, catalog, target="test", max_points=max_points, seed=config.seed)
        return sorted(split.train, key=lambda e: e.ts), split.points, ordered[-1].ts
    cutoff = cutoff_at_fraction(ordered, config.valid_fraction)
    fit, held_out = split_at(ordered, cutoff)
    targets: TargetRule = "every" if config.valid_protocol == "time" else "next-new"
    points = time_split(fit, held_out, catalog, max_points=max_points, seed=config.seed, targets=targets).points
    return fit, points, cutoff


def train(
    events: Sequence[Event],
    catalog: Mapping[str, Item],
    config: TrainConfig,
    text_encoder: TextEncoder | None = None,
    on_progress: Callable[[Progress], None] | None = None,
) -> TrainResult:
    """Train on `events` (time-split for validation) and return the best epoch's model.

    Args:
        events: Canonical events (any order).
        catalog: Items (titles feed the text tower; catalog-only items get rows for cold start).
        config: Training knobs.
        text_encoder: Needed when `config.model.text_tower` (item texts and search queries).
        on_progress: Called after every step and every validation.

    Raises:
        ValueError: too little data for a training sequence and a validation target.
    """
    data = _prepare(events, catalog, config, text_encoder)
    config = resolve_loss(config, data.vocab)
    report = on_progress or (lambda _: None)
    if config.refit_epochs is not None:
        model = _refit(data, config, catalog, text_encoder, config.refit_epochs, report)
        return _refit_only(data, config, config.refit_epochs, model)
    model, vocab = data.model, data.vocab
    candidates = cold_start(model, vocab, data.windows)
    optimizer = _adamw(model, config)
    generator = torch.Generator().manual_seed(config.seed)
    best: tuple[float, int, dict[str, float], dict[str, torch.Tensor]] | None = None
    history: list[dict[str, float]] = []
    started = time.monotonic()
    for epoch in range(1, config.epochs + 1):
        if config.max_train_seconds is not None and time.monotonic() - started > config.max_train_seconds:
            break
        model.train()
        step_report = functools.partial(_step_report, report, epoch)
        loss = _epoch(model, data.windows, optimizer, config, candidates, generator, step_report)
        metrics = _validate(model, vocab, data.points, data.queries, config.valid_protocol)
        history.append({"epoch": epoch, "loss": loss, "ndcg@10": metrics["ndcg@10"]})
        report(Progress(epoch, 0, 0, loss, metrics["ndcg@10"]))
        if best is None or metrics["ndcg@10"] > best[0]:
            best = (metrics["ndcg@10"], epoch, metrics, copy.deepcopy(model.state_dict()))
        elif epoch - best[1] >= config.patience:
            break
    assert best is not None
    if config.refit:
        # The validation window holds the newest behaviour, which serving sees next; early stopping has chosen
        # how long to train, so a fresh model trains that long on everything (no further validation).
        model = _refit(data, config, catalog, text_encoder, best[1], report)
    else:
        model.load_state_dict(best[3])
    model.eval()
    training = _settings(config, data, len(history), best[1])
    metrics = {**best[2], "valid_points": float(len(data.points))}
    return TrainResult(model, vocab, metrics, history, data.cutoff, training)


def _settings(config: TrainConfig, data: _Prepared, epochs_run: int, best_epoch: int) -> dict[str, Any]:
    """What the manifest records about a validated run."""
    training = {
        "loss": config.loss, "epochs_run": epochs_run, "best_epoch": best_epoch, "seed": config.seed,
        "lr": config.lr, "batch_size": config.batch_size, "valid_fraction": config.valid_fraction,
        "valid_points": len(data.points), "train_sequences": int(data.windows.items.shape[0]),
        "train_events": data.n_fit, "cutoff": data.cutoff.isoformat(), "refit": config.refit,
        "train_targets": config.train_targets, "max_train_seconds": config.max_train_seconds,
    }  # fmt: skip
    if config.refit:
        training["refit_events"] = len(data.everything)
    return training


def _refit_only(data: _Prepared, config: TrainConfig, epochs: int, model: SeqRecModel) -> TrainResult:
    """The result of a run that only refitted `model` for `epochs` on every event (no validation)."""
    model.eval()
    training = {
        "loss": config.loss, "epochs_run": epochs, "best_epoch": epochs, "seed": config.seed, "lr": config.lr,
        "batch_size": config.batch_size, "valid_points": 0, "refit": True, "refit_events": len(data.everything),
        "cutoff": data.everything[-1].ts.isoformat(),
    }  # fmt: skip
    return TrainResult(model, data.vocab, {"valid_points": 0.0}, [], data.everything[-1].ts, training)


def _refit(
    data: _Prepared,
    config: TrainConfig,
    catalog: Mapping[str, Item],
    encoder: TextEncoder | None,
    epochs: int,
    report: Callable[[Progress], None],
) -> SeqRecModel:
    model = _init_model(config, data.vocab, catalog, encoder)
    windows = _windows(data.everything, data.vocab, model.config, data.queries, config.train_targets)
    candidates = cold_start(model, data.vocab, windows)
    optimizer = _adamw(model, config)
    generator = torch.Generator().manual_seed(config.seed)
    model.train()
    for epoch in range(1, epochs + 1):
        step_report = functools.partial(_step_report, report, epoch)
        _epoch(model, windows, optimizer, config, candidates, generator, step_report)
    return model


def _step_report(report: Callable[[Progress], None], epoch: int, loss: float, step: int, steps: int) -> None:
    report(Progress(epoch, step, steps, loss))


def train_steps(
    model: SeqRecModel,
    vocab: ItemVocab,
    events: Sequence[Event],
    steps: int,
    config: TrainConfig | None = None,
    optimizer: torch.optim.Optimizer | None = None,
    text_encoder: TextEncoder | None = None,
) -> list[float]:
    """Fine-tune `model` in place for `steps` optimizer steps on the sequences of `events` (for the learner).

    Batches of `config.batch_size` windows are drawn at random (seeded by `config.seed`), with the same loss as
    `train` (`config.loss`). Items without a row in `vocab` are skipped. Returns the loss of every step; the model
    is left in eval mode. `optimizer` defaults to a fresh AdamW with `config.lr` / `config.weight_decay`.

    Raises:
        ValueError: `events` give no training sequence.
    """
    config = resolve_loss(config or TrainConfig(), vocab)
    queries = QueryCache(text_encoder) if text_encoder is not None and model.config.text_tower else None
    windows = _windows(sorted(events, key=lambda e: e.ts), vocab, model.config, queries, config.train_targets)
    n = windows.items.shape[0]
    if n == 0:
        msg = "not enough data: no training sequence in the given events"
        raise ValueError(msg)
    candidates = _candidates(vocab)
    optimizer = optimizer or _adamw(model, config)
    generator = torch.Generator().manual_seed(config.seed)
    losses = []
    model.train()
    for _ in range(steps):
        idx = torch.randint(n, (min(config.batch_size, n),), generator=generator)
        losses.append(_step(model, windows, idx, optimizer, config, candidates, generator))
    model.eval()
    return losses
