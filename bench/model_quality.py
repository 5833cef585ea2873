"""Model quality in one process: train the default two-stage model on a split's training events, evaluate it
next to the transformer alone and every baseline.

Run: `.venv/bin/python bench/model_quality.py DIR [DIR ...] [--loo] [--protocol=time] [--test-days=N]
[--cutoff=ISO] [key=value ...]` on imported directories (`streamrec data import`). Time split (default protocol
`next-new`, as `streamrec evaluate --data DIR`): test = the last 24 h (`--test-days=N`: the last N days;
`--cutoff=ISO`: from that time on, as `evaluate --cutoff`), the model trains on the events before it (as
`streamrec train --exclude-last-days N` / `--until ISO`); `--protocol=time` makes every test event a target
(the protocol before issue 11); `--loo`: each user's last item is the test target and the model never sees it
(as `streamrec train --protocol loo` / `evaluate --protocol loo`).

The model is what `streamrec train` builds with no flags (`model.train_two_stage.train_two_stage` with the
default `TwoStageConfig`). `key=value` overrides `ModelConfig` / `TrainConfig` / `TwoStageConfig` fields, or
`RankerConfig` fields as `ranker.<field>`, the same for every directory (for quick development runs only: the
README figures use none). Prints NDCG@10 with its bootstrap 95 % interval per scorer (and per target type); the
last line is `RESULT ndcg10_<dataset>=... best_baseline_<dataset>=... ratio_<dataset>=...` for every directory
(`ndcg10` = the default model, `best_baseline` = the highest baseline NDCG@10, `ratio` = their quotient).
"""

from __future__ import annotations

import dataclasses
import sys
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import torch

from model.backends.eager import EagerTorchBackend
from model.baselines import all_baselines
from model.evaluate import EvalConfig, EvalReport, ScorerFactory, evaluate
from model.ranker import RankerConfig
from model.scoring import Scorer
from model.splits import Split, load_catalog, load_events, loo_split, split_at, time_split
from model.text_tower import MiniLMEncoder, has_text
from model.torch_scorer import TorchScorer
from model.train import Progress, TrainConfig
from model.train_two_stage import TwoStageConfig, train_two_stage
from model.transformer import ModelConfig


def _value(text: str) -> object:
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return {"True": True, "False": False}.get(text, text)


def _config(pairs: dict[str, str], flags: dict[str, str]) -> TwoStageConfig:
    """The default `TwoStageConfig` with the `key=value` overrides (see the module docstring)."""
    groups: dict[str, dict[str, Any]] = {"model": {}, "train": {}, "two": {}, "ranker": {}}
    names = {
        "model": {f.name for f in dataclasses.fields(ModelConfig)},
        "two": {f.name for f in dataclasses.fields(TwoStageConfig)} - {"train", "ranker"},
    }
    for key, text in pairs.items():
        if key.startswith("ranker."):
            groups["ranker"][key.removeprefix("ranker.")] = _value(text)
        else:
            group = next((g for g, keys in names.items() if key in keys), "train")
            groups[group][key] = _value(text)
    if "--loo" in flags:
        groups["train"].setdefault("valid_protocol", "loo")
    elif flags.get("--protocol") == "time":
        groups["train"].setdefault("valid_protocol", "time")
    groups["train"].setdefault("refit", True)  # as the TwoStageConfig default
    train = TrainConfig(model=ModelConfig(**groups["model"]), **groups["train"])
    return TwoStageConfig(train=train, ranker=RankerConfig(**groups["ranker"]), **groups["two"])


def _split(directory: Path, flags: dict[str, str]) -> Split:
    events, catalog = load_events(directory), load_catalog(directory)
    if "--loo" in flags:
        return loo_split(events, catalog)
    days = float(flags.get("--test-days") or 1)
    cutoff = max(e.ts for e in events) - timedelta(days=days)
    if flags.get("--cutoff"):
        cutoff = datetime.fromisoformat(flags["--cutoff"])
    history, test = split_at(events, cutoff)
    return time_split(history, test, catalog, targets="every" if flags.get("--protocol") == "time" else "next-new")


def _print(run: EvalReport) -> None:
    for scorer in run.scorers:
        m = scorer.metrics["ndcg@10"]
        kinds = " ".join(
            f"{kind} {ms['ndcg@10'].value:.4f} [{ms['ndcg@10'].ci_low:.4f}, {ms['ndcg@10'].ci_high:.4f}] (n={n})"
            for kind, (n, ms) in scorer.by_event_type.items()
        )
        print(f"{scorer.name}: ndcg@10 {m.value:.4f} [{m.ci_low:.4f}, {m.ci_high:.4f}]  {kinds}", flush=True)


def _report(p: Progress) -> None:
    if p.ndcg is not None:
        print(f"transformer epoch {p.epoch}: loss {p.loss:.4f} validation ndcg@10 {p.ndcg:.4f}", flush=True)


def run_one(directory: Path, flags: dict[str, str], pairs: dict[str, str]) -> list[str]:
    """Train and evaluate on one directory; the RESULT fields of that dataset."""
    split = _split(directory, flags)
    config = _config(pairs, flags)
    if "text_tower" not in pairs:  # as `streamrec train`: on whenever the catalog has text
        model = dataclasses.replace(config.train.model, text_tower=has_text(split.catalog))
        config = dataclasses.replace(config, train=dataclasses.replace(config.train, model=model))
    encoder = MiniLMEncoder() if config.train.model.text_tower else None
    print(f"text tower: {'on' if encoder else 'off'}", flush=True)
    start, cpu = time.monotonic(), time.process_time()
    result = train_two_stage(
        split.train, split.catalog, config, _report, lambda line: print(line, flush=True), text_encoder=encoder
    )
    seconds, cpu_seconds = time.monotonic() - start, time.process_time() - cpu
    alone = result.transformer.model
    transformer = TorchScorer(EagerTorchBackend(alone), result.transformer.vocab, alone.config, "transformer")
    scorers: dict[str, Scorer | ScorerFactory] = {"model": result.scorer(), "transformer": transformer}
    run = evaluate(split, {**scorers, **all_baselines()}, EvalConfig())
    print(
        f"{directory.name}: {run.protocol}, {run.n_points} test points, {run.n_items} items, "
        f"train {seconds:.0f} s wall, {cpu_seconds:.0f} s CPU"
    )
    _print(run)
    scores = {s.name: s.metrics["ndcg@10"].value for s in run.scorers}
    best = max((name for name in scores if name not in scorers), key=scores.__getitem__)  # baselines only
    name = directory.name.replace("-", "_")
    print(f"{name}: best baseline {best}, transformer best epoch {result.training['best_epoch']}")
    return [
        f"ndcg10_{name}={scores['model']:.4f}",
        f"best_baseline_{name}={scores[best]:.4f}",
        f"ratio_{name}={_ratio(scores['model'], scores[best]):.3f}",
        f"train_seconds_{name}={seconds:.0f}",
    ]


def _ratio(value: float, baseline: float) -> float:
    return value / baseline if baseline > 0 else float("inf")


def main(argv: list[str]) -> None:
    """Train, evaluate, print, per directory."""
    torch.set_num_threads(1)
    directories = [Path(a) for a in argv if not a.startswith("--") and "=" not in a]
    if not directories:
        print(__doc__)
        print("RESULT skipped=1 reason=no_dataset_dir")  # `make bench` runs every script without arguments
        return
    flags = {a.split("=", 1)[0]: (a.split("=", 1)[1] if "=" in a else "") for a in argv if a.startswith("--")}
    pairs = dict(a.split("=", 1) for a in argv if "=" in a and not a.startswith("--"))
    fields: list[str] = []
    for directory in directories:
        fields += run_one(directory, flags, pairs)
    print("RESULT " + " ".join(fields))


if __name__ == "__main__":
    main(sys.argv[1:])
