"""`streamrec evaluate`: offline next-item evaluation of the baselines and a trained model (see `model.evaluate`)."""

from __future__ import annotations

import json
from datetime import timedelta
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from streamrec.commands.common import iso_time

if TYPE_CHECKING:
    from model.evaluate import EvalReport, ScorerFactory
    from model.scoring import Scorer
    from model.splits import Split, TargetRule

__all__ = ["register"]


class Baseline(StrEnum):
    """Which baselines to evaluate."""

    POPULARITY = "popularity"
    COOCCURRENCE = "cooccurrence"
    RECENT = "recent"
    BLEND = "blend"
    TRANSITIONS = "transitions"
    REPEAT_TRANSITIONS = "repeat-transitions"
    VSKNN = "vsknn"
    ALL = "all"
    NONE = "none"


class Protocol(StrEnum):
    """Split protocol (`model.splits`): targets in a time window (next-new or every event), or leave-one-out."""

    NEXT_NEW = "next-new"
    TIME = "time"
    LOO = "loo"


def _baselines(choice: Baseline) -> dict[str, Scorer | ScorerFactory]:
    """Baselines by name (`model.baselines.all_baselines`)."""
    from model.baselines import all_baselines

    every = all_baselines()
    if choice is Baseline.ALL:
        return every
    return {} if choice is Baseline.NONE else {choice.value: every[choice.value]}


def _model_scorer(path: Path) -> Scorer:
    try:
        from model.artifacts import load_scorer  # provided with the transformer
    except ImportError as exc:
        msg = f"cannot evaluate --model: model.artifacts.load_scorer is not available ({exc})"
        raise typer.BadParameter(msg, param_hint="--model") from exc
    scorer: Scorer = load_scorer(path)
    return scorer


def _split(
    protocol: Protocol,
    history: Path | None,
    test: Path | None,
    data: Path | None,
    cutoff: str | None,
    test_fraction: float | None,
    max_points: int | None,
    seed: int,
    test_days: float | None = None,
) -> Split:
    from model.splits import (
        cutoff_at_fraction,
        cutoff_last_day,
        load_catalog,
        load_events,
        loo_split,
        split_at,
        time_split,
    )

    if protocol is Protocol.LOO:
        source = data or history
        if source is None or test is not None:
            msg = "--protocol loo needs exactly one dataset: --data DIR"
            raise typer.BadParameter(msg, param_hint="--data")
        return loo_split(load_events(source), load_catalog(source), max_points=max_points, seed=seed)
    targets: TargetRule = "every" if protocol is Protocol.TIME else "next-new"
    if history is not None and test is not None and data is None:
        catalog = {**load_catalog(history), **load_catalog(test)}
        return time_split(
            load_events(history), load_events(test), catalog, max_points=max_points, seed=seed, targets=targets
        )
    if data is None or history is not None or test is not None:
        msg = "give either --history DIR --test DIR, or --data DIR (split by time)"
        raise typer.BadParameter(msg, param_hint="--data")
    events = load_events(data)
    if not events:
        msg = f"{data} has no events"
        raise typer.BadParameter(msg, param_hint="--data")
    if cutoff is not None:
        at = iso_time(cutoff, "--cutoff", "2017-12-02T00:00:00+08:00")
    elif test_days:
        at = max(e.ts for e in events) - timedelta(days=test_days)
    else:
        at = cutoff_at_fraction(events, test_fraction) if test_fraction else cutoff_last_day(events)
    train, held_out = split_at(events, at)
    return time_split(train, held_out, load_catalog(data), max_points=max_points, seed=seed, targets=targets)


def _print_table(report: EvalReport) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    names = ["hr@10", "ndcg@10", "hr@20", "mrr@20"]
    title = f"{report.protocol} split: {report.n_points} test points, {report.n_train_events} training events"
    table = Table(title=title)
    for column in ["scorer", "target", "n", *names]:
        label = column in ("scorer", "target")
        table.add_column(column, justify="left" if label else "right", no_wrap=label)
    for scorer in report.scorers:
        rows = [("all", scorer.n, scorer.metrics)]
        rows += [(kind, n, metrics) for kind, (n, metrics) in scorer.by_event_type.items()]
        rows += [(segment, n, metrics) for segment, (n, metrics) in scorer.by_segment.items()]
        for kind, n, metrics in rows:
            cells = [f"{metrics[m].value:.4f} [{metrics[m].ci_low:.4f}, {metrics[m].ci_high:.4f}]" for m in names]
            table.add_row(scorer.name if kind == "all" else "", kind, str(n), *cells)
    console.print(table)


def register(app: typer.Typer) -> None:
    """Attach the `evaluate` command."""

    @app.command("evaluate")
    def evaluate(
        history: Annotated[Path | None, typer.Option(help="Imported directory with the training history.")] = None,
        test: Annotated[
            Path | None, typer.Option(help="Imported directory with the test window (after --history).")
        ] = None,
        data: Annotated[Path | None, typer.Option(help="One imported directory, split by time (or LOO).")] = None,
        model: Annotated[
            Path | None, typer.Option(help="Trained model directory to evaluate next to the baselines.")
        ] = None,
        baseline: Annotated[Baseline, typer.Option(help="Baselines to evaluate.")] = Baseline.ALL,
        protocol: Annotated[
            Protocol,
            typer.Option(
                help="next-new: test-window events whose item differs from the user's previous one, ranked over "
                "the training items without the current item (as served); time: every test-window event; "
                "loo: each user's last item."
            ),
        ] = Protocol.NEXT_NEW,
        cutoff: Annotated[
            str | None, typer.Option(help="With --data: test starts here (ISO time; naive = UTC).")
        ] = None,
        test_fraction: Annotated[
            float | None, typer.Option(help="With --data: newest fraction of events as test.")
        ] = None,
        test_days: Annotated[
            float | None, typer.Option(min=0.0, help="With --data: the last N days as test (default 1).")
        ] = None,
        max_points: Annotated[int | None, typer.Option(min=1, help="Subsample at most this many test points.")] = None,
        seed: Annotated[int, typer.Option(help="Seed for subsampling and the bootstrap.")] = 0,
        bootstrap: Annotated[int, typer.Option(min=1, help="Bootstrap resamples per confidence interval.")] = 1000,
        as_json: Annotated[bool, typer.Option("--json", help="Print one JSON document instead of a table.")] = False,
    ) -> None:
        """Evaluate next-item ranking (HR@10, NDCG@10, HR@20, Recall@20, MRR@20 with 95 % bootstrap CIs)."""
        from contracts import StreamrecError
        from model.evaluate import EvalConfig
        from model.evaluate import evaluate as run

        scorers = _baselines(baseline)
        if model is not None:
            scorers["model"] = _model_scorer(model)
        if not scorers:
            msg = "nothing to evaluate: --baseline none and no --model"
            raise typer.BadParameter(msg, param_hint="--baseline")
        try:
            split = _split(protocol, history, test, data, cutoff, test_fraction, max_points, seed, test_days)
            report = run(split, scorers, EvalConfig(bootstrap=bootstrap, seed=seed))
        except (FileNotFoundError, StreamrecError, ValueError) as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(1) from exc
        if as_json:
            typer.echo(json.dumps(report.to_dict(), indent=2))
        else:
            _print_table(report)
