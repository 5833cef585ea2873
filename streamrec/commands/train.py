"""`streamrec train`: train the two-stage model (transformer + counting parts + learned ranker) on an imported
directory and write a model directory; `--transformer-only` writes the transformer alone."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, TypeVar

import typer

from streamrec.commands.common import iso_time

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    from contracts import Event, Item
    from model.train import Progress as TrainProgress
    from model.train import TrainConfig

T = TypeVar("T")

__all__ = ["register", "train"]


class Protocol(StrEnum):
    """Which events train and which validate (matches `streamrec evaluate --protocol`)."""

    NEXT_NEW = "next-new"
    TIME = "time"
    LOO = "loo"


class Targets(StrEnum):
    """Which next events are training targets (`model.splits.is_target`)."""

    EVERY = "every"
    NEXT_NEW = "next-new"


class TextAdapter(StrEnum):
    """Adapter from the frozen MiniLM features to item rows."""

    LINEAR = "linear"
    MOE = "moe"


class Loss(StrEnum):
    """Training loss."""

    AUTO = "auto"
    SOFTMAX = "softmax"
    SAMPLED = "sampled"


# The command's options, one line each where they fit (typer reads them from the signature of `train`).
_Data = Annotated[Path, typer.Option(help="Imported directory (events.jsonl.gz, catalog.jsonl.gz).")]
_Out = Annotated[Path, typer.Option(help="Model directory to write (model.safetensors + manifest.json).")]
_Epochs = Annotated[int, typer.Option(min=1, help="Most epochs (early stopping on validation NDCG@10).")]
_Loss = Annotated[Loss, typer.Option(help="Full softmax, sampled softmax, or auto (sampled above 20,000 items).")]
_TextTower = Annotated[
    bool | None,
    typer.Option(
        "--text-tower/--no-text-tower",
        help="MiniLM item/query text (default: on when any catalog item has a title, category or brand).",
    ),
]
_IdDropout = Annotated[
    float, typer.Option(min=0.0, max=1.0, help="Text tower: share of item rows trained without their ID part.")
]
_TextAdapter = Annotated[TextAdapter, typer.Option(help="Text tower: one linear layer or whitening + experts.")]
_Seed = Annotated[int, typer.Option(help="Seed (init, shuffling, dropout, validation subsample).")]
_Until = Annotated[str | None, typer.Option(help="Train only on events before this ISO time (naive = UTC).")]
_Since = Annotated[str | None, typer.Option(help="Train only on events from this ISO time on (naive = UTC).")]
_ExcludeLastDay = Annotated[
    bool, typer.Option(help="Train only on events before the last 24 h (matches `streamrec evaluate --data`).")
]
_ExcludeLastDays = Annotated[
    float,
    typer.Option(min=0.0, help="Train only on events before the last N days (`streamrec evaluate --test-days N`)."),
]
_MaxLen = Annotated[int, typer.Option(min=1, help="Events per user sequence.")]
_DModel = Annotated[int, typer.Option(min=8, help="Hidden size.")]
_Layers = Annotated[int, typer.Option(min=1, help="Transformer blocks.")]
_BatchSize = Annotated[int, typer.Option(min=1, help="Sequences per step.")]
_Lr = Annotated[float, typer.Option(help="AdamW learning rate.")]
_Negatives = Annotated[int, typer.Option(min=1, help="Sampled negatives per step (sampled loss).")]
_Patience = Annotated[int, typer.Option(min=1, help="Epochs without a better validation NDCG@10 before stopping.")]
_ValidFraction = Annotated[float, typer.Option(help="Newest share of training events used for validation.")]
_MaxTrainSeconds = Annotated[
    float, typer.Option(min=0.0, help="No validated epoch starts after this many seconds (0: no cap).")
]
_TwoStage = Annotated[
    bool, typer.Option("--two-stage/--transformer-only", help="Candidates re-ranked by a learned ranker (default).")
]
_MaxValidPoints = Annotated[int, typer.Option(min=1, help="Validation targets at most.")]
_Dropout = Annotated[float, typer.Option(min=0.0, max=0.9, help="Dropout (embeddings, attention, residual).")]
_WeightDecay = Annotated[float, typer.Option(min=0.0, help="AdamW weight decay.")]
_CopyHead = Annotated[bool, typer.Option("--repeat-head/--no-repeat-head", help="Pointer over own past items.")]
_Refit = Annotated[
    bool, typer.Option(help="After early stopping, retrain for the best epoch count on training + validation events.")
]
_Protocol = Annotated[
    Protocol,
    typer.Option(
        help="next-new: validate on the newest --valid-fraction, targets = events whose item differs from "
        "the user's previous one; time: the same window, every event a target; loo: hold out every user's "
        "last item (the test target of `evaluate --protocol loo`) and validate on the one before it."
    ),
]
_TrainTargets = Annotated[
    Targets,
    typer.Option(help="every: every next event is a target; next-new: not the re-clicks of the current item."),
]


def register(app: typer.Typer) -> None:
    """Attach the `train` command."""
    app.command("train")(train)


def train(
    data: _Data,
    out: _Out,
    epochs: _Epochs = 30,
    loss: _Loss = Loss.AUTO,
    text_tower: _TextTower = None,
    seed: _Seed = 0,
    until: _Until = None,
    since: _Since = None,
    exclude_last_day: _ExcludeLastDay = False,
    exclude_last_days: _ExcludeLastDays = 0.0,
    max_len: _MaxLen = 50,
    d_model: _DModel = 64,
    layers: _Layers = 2,
    batch_size: _BatchSize = 256,
    lr: _Lr = 3e-3,
    negatives: _Negatives = 1024,
    patience: _Patience = 3,
    valid_fraction: _ValidFraction = 0.2,
    max_train_seconds: _MaxTrainSeconds = 420.0,
    two_stage: _TwoStage = True,
    max_valid_points: _MaxValidPoints = 2000,
    dropout: _Dropout = 0.2,
    weight_decay: _WeightDecay = 0.01,
    copy_head: _CopyHead = True,
    refit: _Refit = True,
    protocol: _Protocol = Protocol.NEXT_NEW,
    train_targets: _TrainTargets = Targets.NEXT_NEW,
    id_dropout: _IdDropout = 0.25,
    text_adapter: _TextAdapter = TextAdapter.LINEAR,
) -> None:
    """Train the two-stage model (CPU is fine) and save it with a verified manifest.

    Defaults are the tested ones for every dataset: next-new targets, early stopping on the newest
    --valid-fraction, the ranker fitted on that window, then everything refitted on all events.
    """
    import torch

    from model.text_tower import has_text
    from model.train import TrainConfig
    from model.transformer import ModelConfig

    torch.manual_seed(seed)
    events, catalog, window = _load(data, until, since, 1.0 if exclude_last_day else exclude_last_days, protocol)
    model = ModelConfig(
        max_len=max_len, d_model=d_model, n_layers=layers, dropout=dropout, copy_head=copy_head,
        text_tower=has_text(catalog) if text_tower is None else text_tower, id_dropout=id_dropout,
        text_adapter=text_adapter.value,
    )  # fmt: skip
    config = TrainConfig(
        model=model, epochs=epochs, batch_size=batch_size, lr=lr, n_negatives=negatives, patience=patience,
        loss=loss.value, seed=seed, valid_fraction=valid_fraction, valid_protocol=protocol.value,
        weight_decay=weight_decay, max_valid_points=max_valid_points, train_targets=train_targets.value,
        text_cache_dir=out / ".text-cache", refit=refit, max_train_seconds=max_train_seconds or None,
    )  # fmt: skip
    fingerprint = {**window, "protocol": protocol.value, "events": len(events)}
    _train_and_save(data, out, events, catalog, config, two_stage, fingerprint)


def _load(
    data: Path, until: str | None, since: str | None, last_days: float, protocol: Protocol
) -> tuple[list[Event], dict[str, Item], dict[str, str | None]]:
    """Events and catalog of `data` restricted to the training window, and that window for the manifest."""
    from datetime import timedelta

    from contracts import StreamrecError
    from model.splits import load_catalog, load_events, loo_split

    try:
        events = load_events(data)
        catalog = load_catalog(data)
    except (FileNotFoundError, StreamrecError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from exc
    limit = None if until is None else iso_time(until, "--until")
    if limit is None and last_days > 0 and events:
        limit = max(e.ts for e in events) - timedelta(days=last_days)
    if limit is not None:
        events = [e for e in events if e.ts < limit]
    first = None if since is None else iso_time(since, "--since")
    if first is not None:
        events = [e for e in events if e.ts >= first]
    if protocol is Protocol.LOO:
        events = sorted(loo_split(events, catalog).train, key=lambda e: e.ts)  # never see the test targets
    window = {"until": limit.isoformat() if limit else None, "since": first.isoformat() if first else None}
    return events, catalog, window


def _train_and_save(
    data: Path,
    out: Path,
    events: list[Event],
    catalog: dict[str, Item],
    config: TrainConfig,
    two_stage: bool,
    fingerprint: Mapping[str, object],
) -> None:
    """Run the training under a progress display and write the model directory."""
    from contracts import StreamrecError
    from model.artifacts import save_model
    from model.text_tower import MiniLMEncoder
    from model.train import data_fingerprint, train
    from model.train_two_stage import TwoStageConfig, train_two_stage
    from model.two_stage_store import save_two_stage

    fingerprint = {**data_fingerprint(data), **fingerprint}
    try:
        encoder = MiniLMEncoder() if config.model.text_tower else None
        if two_stage:
            result = _with_progress(
                lambda report, log: train_two_stage(events, catalog, TwoStageConfig(config), report, log, encoder)
            )
            manifest = save_two_stage(out, result, data=fingerprint)
        else:
            alone = _with_progress(lambda report, _: train(events, catalog, config, encoder, report))
            manifest = save_model(
                out, alone.model, alone.vocab, data=fingerprint, metrics=alone.metrics, training=alone.training
            )
    except (ValueError, StreamrecError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from exc
    ranker = manifest.metrics.get("ranker_holdout_ndcg@10")
    extra = f", ranker held-out ndcg@10={ranker:.4f}" if ranker is not None else ""
    typer.echo(
        f"saved {manifest.version} to {out}: transformer validation ndcg@10={manifest.metrics['ndcg@10']:.4f} "
        f"(best epoch {manifest.training['best_epoch']}/{manifest.training['epochs_run']}){extra}"
    )


def _with_progress(run: Callable[[Callable[[TrainProgress], None], Callable[[str], None]], T]) -> T:
    """Call `run(report, log)` under a rich progress bar showing live loss and validation NDCG@10."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    columns = (
        TextColumn("epoch {task.fields[epoch]}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("loss {task.fields[loss]:.4f}  val ndcg@10 {task.fields[ndcg]}"),
        TimeElapsedColumn(),
    )
    with Progress(*columns, transient=False) as bar:
        task = bar.add_task("train", total=None, epoch=1, loss=float("nan"), ndcg="-")

        def report(p: TrainProgress) -> None:
            if p.ndcg is None:
                bar.update(task, completed=p.step, total=p.steps, epoch=p.epoch, loss=p.loss)
            else:
                bar.update(task, ndcg=f"{p.ndcg:.4f}")
                bar.console.log(f"epoch {p.epoch}: loss {p.loss:.4f}, validation ndcg@10 {p.ndcg:.4f}")

        return run(report, bar.console.log)
