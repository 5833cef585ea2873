"""`streamrec explain-eval`: fidelity (deletion/insertion AUC, ERASER) and cost of every attribution method."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

__all__ = ["register"]


def register(app: typer.Typer) -> None:
    """Attach the `explain-eval` command."""

    @app.command("explain-eval")
    def explain_eval(
        model: Annotated[Path, typer.Option(help="Trained model directory (manifest.json + model.safetensors).")],
        data: Annotated[Path, typer.Option(help="Imported directory (events.jsonl.gz, catalog.jsonl.gz).")],
        as_json: Annotated[bool, typer.Option("--json", help="Print the result as one JSON document.")] = False,
        report: Annotated[Path | None, typer.Option(help="Write a self-contained HTML report here.")] = None,
        max_users: Annotated[int, typer.Option(min=1, help="Users sampled (with >= --min-events events).")] = 64,
        min_events: Annotated[int, typer.Option(min=2, help="Shortest history of a sampled user.")] = 2,
        k: Annotated[int, typer.Option(min=1, help="Top items explained per user.")] = 3,
        curve_length: Annotated[int, typer.Option(min=1, help="Deletion/insertion curve length L.")] = 10,
        seed: Annotated[int, typer.Option(help="User sample and random-baseline seed.")] = 0,
    ) -> None:
        """Explain the model's top-k items for sampled users with every method and measure fidelity and cost."""
        import torch

        from contracts import StreamrecError
        from explain.evaluate import FidelityConfig, evaluate_explanations
        from explain.report import render_report
        from model.artifacts import load_model
        from model.backends import EagerTorchBackend
        from model.splits import load_catalog, load_events
        from model.torch_scorer import TorchScorer

        torch.set_num_threads(max(1, min(2, torch.get_num_threads())))
        try:
            loaded = load_model(model)
            events, catalog = load_events(data), load_catalog(data)
            backend = EagerTorchBackend(loaded.model, "cpu")
            scorer = TorchScorer(backend, loaded.vocab, loaded.model.config, loaded.manifest.version)
            config = FidelityConfig(
                max_users=max_users, min_events=min_events, k=k, curve_length=curve_length, seed=seed
            )
            result = evaluate_explanations(scorer, loaded.model, events, catalog, config)
        except (FileNotFoundError, StreamrecError, ValueError) as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(1) from exc
        if report is not None:
            report.write_text(render_report(result), encoding="utf-8")
        if as_json:
            typer.echo(json.dumps(_clean(result), indent=2, allow_nan=False))
            return
        for name, m in result["methods"].items():
            mark = "*" if name == result["default_method"] else " "
            typer.echo(
                f"{mark}{name:22s} deletion_auc={m['deletion_auc']:.4f} insertion_auc={m['insertion_auc']:.4f} "
                f"comp={m['comprehensiveness']:.4f} suff={m['sufficiency']:.4f} cost_ms={m['cost_ms']:.2f}"
            )


def _clean(value: object) -> object:
    """nan -> null (strict JSON), recursively."""
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_clean(v) for v in value]
    return None if isinstance(value, float) and value != value else value
