"""`streamrec explain-eval` end to end on generated data with a tiny (untrained) model: JSON shape and sanity."""

from __future__ import annotations

import gzip
import json
from collections.abc import Sequence
from pathlib import Path

import torch
import typer
from pydantic import BaseModel
from typer.testing import CliRunner

from model.artifacts import save_model
from model.synthetic import synthetic_catalog, synthetic_events
from model.transformer import ModelConfig, SeqRecModel
from model.vocab import ItemVocab
from streamrec.commands import explain as explain_cmd

torch.set_num_threads(1)


def _write(path: Path, records: Sequence[BaseModel]) -> None:
    with gzip.open(path, "wt", encoding="utf-8") as handle:
        for record in records:
            handle.write(record.model_dump_json() + "\n")


def test_explain_eval_cli(tmp_path: Path) -> None:
    catalog = synthetic_catalog(n_clusters=3, per_cluster=6)
    events = synthetic_events(n_users=12, length=10, n_clusters=3, per_cluster=6)
    data = tmp_path / "data"
    data.mkdir()
    _write(data / "events.jsonl.gz", events)
    _write(data / "catalog.jsonl.gz", list(catalog.values()))
    torch.manual_seed(0)
    vocab = ItemVocab(sorted(catalog), capacity=len(catalog) + 1)
    model = SeqRecModel(ModelConfig(n_items=len(catalog) + 1, max_len=8, d_model=16, n_layers=1, n_heads=2))
    save_model(tmp_path / "model", model.eval(), vocab)
    app = typer.Typer()
    explain_cmd.register(app)
    app.command("noop")(lambda: None)  # a second command keeps typer in sub-command mode
    report = tmp_path / "report.html"
    args = ["explain-eval", "--model", str(tmp_path / "model"), "--data", str(data), "--json"]
    args += ["--report", str(report), "--max-users", "6", "--k", "2", "--curve-length", "4"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    out = json.loads(result.output)
    assert out["default_method"] == "item_similarity" and out["n_users"] == 6 and out["n_pairs"] == 12
    for name in ("occlusion", "gradient_x_input", "integrated_gradients", "attention", "item_similarity", "random"):
        metrics = out["methods"][name]
        for key in ("deletion_auc", "insertion_auc", "comprehensiveness", "sufficiency", "cost_ms"):
            assert isinstance(metrics[key], float)
    # Occlusion measures exactly the single-event deletions the curve starts with.
    assert out["methods"]["occlusion"]["deletion_curve"][0] >= out["methods"]["random"]["deletion_curve"][0]
    # The text leads with the default method's top event (up to float ties between two code paths).
    assert out["methods"]["item_similarity"]["text_agreement"] >= 0.9
    assert 0.0 < out["exposure"]["catalog_coverage"] <= 1.0
    assert report.read_text().startswith("<!doctype html>")


def test_explain_eval_missing_model_is_a_clear_error(tmp_path: Path) -> None:
    app = typer.Typer()
    explain_cmd.register(app)
    app.command("noop")(lambda: None)
    result = CliRunner().invoke(app, ["explain-eval", "--model", str(tmp_path), "--data", str(tmp_path)])
    assert result.exit_code == 1
    assert "manifest.json not found" in result.output
