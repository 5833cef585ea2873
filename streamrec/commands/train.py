"""`streamrec train`: train the two-stage model (transformer + counting parts + learned ranker) on an imported
directory and write a model directory; `--transformer-only` writes the transformer alone."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer

from streamrec.commands.common import iso_time
from streamrec.commands.options import ConfigOption, Opt, merge, read_config, with_options

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    from contracts import Event, Item
    from model.train import Progress as TrainProgress
    from model.train import TrainConfig

T = TypeVar("T")

__all__ = ["OPTIONS", "register", "train"]


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


# The command's options (`--data`, `--out`, `--config` aside): each is also a key of the `--config` file.
OPTIONS = {
    "epochs": Opt("Most epochs (early stopping on validation NDCG@10).", int, 30, min=1),
    "loss": Opt("Full softmax, sampled softmax, or auto (sampled above 20,000 items).", Loss, Loss.AUTO),
    "text_tower": Opt(
        "MiniLM item/query text (default: on when any catalog item has a title, category or brand).",
        bool | None,
        flags=("--text-tower/--no-text-tower",),
    ),
    "seed": Opt("Seed (init, shuffling, dropout, validation subsample).", int, 0),
    "until": Opt("Train only on events before this ISO time (naive = UTC).", str | None),
    "since": Opt("Train only on events from this ISO time on (naive = UTC).", str | None),
    "exclude_last_day": Opt(
        "Train only on events before the last 24 h (matches `streamrec evaluate --data`).", bool, False
    ),
    "exclude_last_days": Opt(
        "Train only on events before the last N days (`streamrec evaluate --test-days N`).", float, 0.0, min=0
    ),
    "max_len": Opt("Events per user sequence.", int, 50, min=1),
    "d_model": Opt("Hidden size.", int, 64, min=8),
    "layers": Opt("Transformer blocks.", int, 2, min=1),
    "batch_size": Opt("Sequences per step.", int, 256, min=1),
    "lr": Opt("AdamW learning rate.", float, 3e-3),
    "negatives": Opt("Sampled negatives per step (sampled loss).", int, 1024, min=1),
    "patience": Opt("Epochs without a better validation NDCG@10 before stopping.", int, 3, min=1),
    "valid_fraction": Opt("Newest share of training events used for validation.", float, 0.2),
    "max_train_seconds": Opt("No validated epoch starts after this many seconds (0: no cap).", float, 420.0, min=0),
    "two_stage": Opt(
        "Candidates re-ranked by a learned ranker (default).", bool, True, flags=("--two-stage/--transformer-only",)
    ),
    "max_valid_points": Opt("Validation targets at most.", int, 2000, min=1),
    "dropout": Opt("Dropout (embeddings, attention, residual).", float, 0.2, min=0, max=0.9),
    "weight_decay": Opt("AdamW weight decay.", float, 0.01, min=0),
    "copy_head": Opt("Pointer over own past items.", bool, True, flags=("--repeat-head/--no-repeat-head",)),
    "refit": Opt("After early stopping, retrain for the best epoch count on training + validation events.", bool, True),
    "protocol": Opt(
        "next-new: validate on the newest --valid-fraction, targets = events whose item differs from "
        "the user's previous one; time: the same window, every event a target; loo: hold out every user's "
        "last item (the test target of `evaluate --protocol loo`) and validate on the one before it.",
        Protocol,
        Protocol.NEXT_NEW,
    ),
    "train_targets": Opt(
        "every: every next event is a target; next-new: not the re-clicks of the current item.",
        Targets,
        Targets.NEXT_NEW,
    ),
    "id_dropout": Opt("Text tower: share of item rows trained without their ID part.", float, 0.25, min=0, max=1),
    "text_adapter": Opt("Text tower: one linear layer or whitening + experts.", TextAdapter, TextAdapter.LINEAR),
}
_Data = Annotated[Path, typer.Option(help="Imported directory (events.jsonl.gz, catalog.jsonl.gz).")]
_Out = Annotated[Path, typer.Option(help="Model directory to write (model.safetensors + manifest.json).")]


def register(app: typer.Typer) -> None:
    """Attach the `train` command."""
    app.command("train")(train)


@with_options(OPTIONS)
def train(context: typer.Context, data: _Data, out: _Out, config: ConfigOption = None, **values: Any) -> None:
    """Train the two-stage model (CPU is fine) and save it with a verified manifest.

    Defaults are the tested ones for every dataset: next-new targets, early stopping on the newest
    --valid-fraction, the ranker fitted on that window, then everything refitted on all events. `--config FILE`
    reads option values from a TOML file (keys: the option names, e.g. `d_model = 64`); flags given win.
    """
    import torch

    from model.text_tower import has_text
    from model.train import TrainConfig
    from model.transformer import ModelConfig

    v = merge(context, values, read_config(config, OPTIONS)) if config is not None else values
    torch.manual_seed(v["seed"])
    last_days = 1.0 if v["exclude_last_day"] else v["exclude_last_days"]
    events, catalog, window = _load(data, v["until"], v["since"], last_days, v["protocol"])
    model = ModelConfig(
        max_len=v["max_len"], d_model=v["d_model"], n_layers=v["layers"], dropout=v["dropout"],
        copy_head=v["copy_head"], text_tower=has_text(catalog) if v["text_tower"] is None else v["text_tower"],
        id_dropout=v["id_dropout"], text_adapter=v["text_adapter"].value,
    )  # fmt: skip
    train_config = TrainConfig(
        model=model, epochs=v["epochs"], batch_size=v["batch_size"], lr=v["lr"], n_negatives=v["negatives"],
        patience=v["patience"], loss=v["loss"].value, seed=v["seed"], valid_fraction=v["valid_fraction"],
        valid_protocol=v["protocol"].value, weight_decay=v["weight_decay"], max_valid_points=v["max_valid_points"],
        train_targets=v["train_targets"].value, text_cache_dir=out / ".text-cache", refit=v["refit"],
        max_train_seconds=v["max_train_seconds"] or None,
    )  # fmt: skip
    fingerprint = {**window, "protocol": v["protocol"].value, "events": len(events)}
    _train_and_save(data, out, events, catalog, train_config, v["two_stage"], fingerprint)


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
