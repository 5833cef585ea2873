"""Model quality in one process: train the transformer on a split's training events, evaluate it and the baselines.

Run: `.venv/bin/python bench/model_quality.py DIR [--loo] [--baselines] [key=value ...]` on an imported
directory (`streamrec data import`). Time split: test = the last 24 h (as `streamrec evaluate --data DIR`), the model
trains on the events before it (as `streamrec train --exclude-last-day`); `--loo`: each user's last item is the
test target and the model never sees it (as `streamrec train --protocol loo` / `evaluate --protocol loo`).
`key=value` sets `ModelConfig` / `TrainConfig` fields (e.g. `loss=sampled n_negatives=1024 batch_size=64`).
Same functions as the CLI (`model.train.train`, `model.evaluate.evaluate`), without writing a model directory.
Prints NDCG@10 with its bootstrap 95 % interval per scorer; last line `RESULT key=value ...`.
"""

from __future__ import annotations

import dataclasses
import sys
import time
from pathlib import Path

import torch

from model.backends.eager import EagerTorchBackend
from model.baselines import CooccurrenceScorer, PopularityScorer, RecentItemsScorer, default_blend
from model.evaluate import EvalConfig, evaluate
from model.scoring import Scorer
from model.splits import cutoff_last_day, load_catalog, load_events, loo_split, split_at, time_split
from model.torch_scorer import TorchScorer
from model.train import Progress, TrainConfig, train
from model.transformer import ModelConfig


def _value(text: str) -> object:
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return {"True": True, "False": False}.get(text, text)


def main(argv: list[str]) -> None:
    """Train, evaluate, print."""
    torch.set_num_threads(1)
    if not argv:
        print(__doc__)
        print("RESULT skipped=1 reason=no_dataset_dir")  # `make bench` runs every script without arguments
        return
    directory = Path(argv[0])
    flags = {a for a in argv[1:] if a.startswith("--")}
    pairs = dict(a.split("=", 1) for a in argv[1:] if "=" in a)
    model_keys = {f.name for f in dataclasses.fields(ModelConfig)}
    model_kw = {k: _value(v) for k, v in pairs.items() if k in model_keys}
    train_kw = {k: _value(v) for k, v in pairs.items() if k not in model_keys}
    events, catalog = load_events(directory), load_catalog(directory)
    if "--loo" in flags:
        split = loo_split(events, catalog)
        train_kw.setdefault("valid_protocol", "loo")
    else:
        history, test = split_at(events, cutoff_last_day(events))
        split = time_split(history, test, catalog)
    config = TrainConfig(model=ModelConfig(**model_kw), **train_kw)  # type: ignore[arg-type]
    start = time.monotonic()

    def report(p: Progress) -> None:
        if p.ndcg is not None:
            print(f"epoch {p.epoch}: loss {p.loss:.4f} validation ndcg@10 {p.ndcg:.4f}", flush=True)

    result = train(split.train, catalog, config, on_progress=report)
    seconds = time.monotonic() - start
    scorers: dict[str, Scorer] = {
        "model": TorchScorer(EagerTorchBackend(result.model), result.vocab, result.model.config, "model")
    }
    if "--baselines" in flags:
        scorers |= {
            "popularity": PopularityScorer(),
            "cooccurrence": CooccurrenceScorer(),
            "recent": RecentItemsScorer(),
            "blend": default_blend(),
        }
    run = evaluate(split, scorers, EvalConfig())
    fields = [f"dataset={directory.name}", f"n={run.n_points}", f"train_s={seconds:.0f}"]
    fields.append(f"best_epoch={result.training['best_epoch']}/{result.training['epochs_run']}")
    for scorer in run.scorers:
        m = scorer.metrics["ndcg@10"]
        print(f"{scorer.name}: ndcg@10 {m.value:.4f} [{m.ci_low:.4f}, {m.ci_high:.4f}]")
        fields.append(f"{scorer.name}_ndcg10={m.value:.4f}")
    print("RESULT " + " ".join(fields))


if __name__ == "__main__":
    main(sys.argv[1:])
