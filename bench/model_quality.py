"""Model quality in one process: train the transformer on a split's training events, evaluate it and the baselines.

Run: `.venv/bin/python bench/model_quality.py DIR [DIR ...] [--loo] [--protocol=time] [--fused] [key=value ...]`
on imported directories (`streamrec data import`). Time split (default protocol `next-new`, as `streamrec
evaluate --data DIR`): test = the last 24 h, the model trains on the events before it (as `streamrec train
--exclude-last-day`); `--protocol=time` makes every test event a target (the protocol before issue 11); `--loo`:
each user's last item is the test target and the model never sees it (as `streamrec train --protocol loo` /
`evaluate --protocol loo`). `--fused` also evaluates the transformer and the counting baselines re-ranked by a
linear model fitted on the training run's validation window (`model.rerank`; use it without `refit`).
`key=value` sets `ModelConfig` / `TrainConfig` fields (e.g. `loss=sampled n_negatives=1024 batch_size=64`), the
same for every directory. Same functions as the CLI (`model.train.train`, `model.evaluate.evaluate`), without
writing a model directory. Prints NDCG@10 with its bootstrap 95 % interval per scorer (and per target type);
last line `RESULT ndcg10_<dataset>=... best_baseline_<dataset>=... ratio_<dataset>=...` for every directory
(`best_baseline` = the highest baseline NDCG@10, `ratio` = transformer / best baseline; with `--fused` also
`fused_ndcg10_<dataset>` and `fused_ratio_<dataset>`).
"""

from __future__ import annotations

import dataclasses
import sys
import time
from pathlib import Path

import torch

from contracts import Event
from model.backends.eager import EagerTorchBackend
from model.baselines import CooccurrenceScorer, all_baselines
from model.evaluate import EvalConfig, EvalReport, ScorerFactory, evaluate, split_context
from model.exclude import ExcludeCurrentItem
from model.rerank import RerankScorer, fit_weights
from model.scoring import Scorer
from model.sknn import SessionKnnScorer
from model.splits import Split, cutoff_last_day, load_catalog, load_events, loo_split, split_at, time_split
from model.torch_scorer import TorchScorer
from model.train import Progress, TrainConfig, TrainResult, train
from model.transformer import ModelConfig
from model.transitions import RepeatThenTransitionsScorer, TransitionScorer


def _value(text: str) -> object:
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return {"True": True, "False": False}.get(text, text)


def _fused_parts(model: Scorer, events: list[Event]) -> list[tuple[str, Scorer]]:
    """The re-ranker's parts, fitted on `events`, each without the current item (as served)."""
    parts: list[tuple[str, Scorer]] = [
        ("model", model),
        ("transitions", TransitionScorer.fit(events)),
        ("repeat-transitions", RepeatThenTransitionsScorer.fit(events)),
        ("vsknn", SessionKnnScorer.fit(events)),
        ("cooccurrence", CooccurrenceScorer()),
    ]
    return [(name, ExcludeCurrentItem(scorer)) for name, scorer in parts]


def fused(split: Split, result: TrainResult, model: Scorer, seed: int) -> RerankScorer:
    """Transformer + counting baselines re-ranked by weights fitted on the training run's validation window.

    The parts are fitted on the events before the validation window (as the transformer of a run without
    `refit` was), the weights on its next-new targets; the returned scorer's parts are refitted on all of
    `split.train`. The test window is never looked at.
    """
    fit, held_out = split_at(sorted(split.train, key=lambda e: e.ts), result.cutoff)
    valid = time_split(fit, held_out, split.catalog, max_points=2000, seed=seed)
    names = [name for name, _ in _fused_parts(model, [])]
    weights = fit_weights([s for _, s in _fused_parts(model, fit)], valid.points, split_context(valid))
    print("re-ranker weights (listed, 1/(1+rank), scaled score) per part:", flush=True)
    for n, name in enumerate(names):
        print(f"  {name}: " + " ".join(f"{w:+.3f}" for w in weights[3 * n : 3 * n + 3]), flush=True)
    return RerankScorer(_fused_parts(model, list(split.train)), weights)


def _split(directory: Path, flags: dict[str, str]) -> Split:
    events, catalog = load_events(directory), load_catalog(directory)
    if "--loo" in flags:
        return loo_split(events, catalog)
    history, test = split_at(events, cutoff_last_day(events))
    return time_split(history, test, catalog, targets="every" if flags.get("--protocol") == "time" else "next-new")


def _print(run: EvalReport) -> None:
    for scorer in run.scorers:
        m = scorer.metrics["ndcg@10"]
        kinds = " ".join(f"{kind} {ms['ndcg@10'].value:.4f} (n={n})" for kind, (n, ms) in scorer.by_event_type.items())
        print(f"{scorer.name}: ndcg@10 {m.value:.4f} [{m.ci_low:.4f}, {m.ci_high:.4f}]  {kinds}", flush=True)


def run_one(directory: Path, flags: dict[str, str], pairs: dict[str, str]) -> list[str]:
    """Train and evaluate on one directory; the RESULT fields of that dataset."""
    model_keys = {f.name for f in dataclasses.fields(ModelConfig)}
    model_kw = {k: _value(v) for k, v in pairs.items() if k in model_keys}
    train_kw = {k: _value(v) for k, v in pairs.items() if k not in model_keys}
    split = _split(directory, flags)
    if "--loo" in flags:
        train_kw.setdefault("valid_protocol", "loo")
    elif flags.get("--protocol") == "time":
        train_kw.setdefault("valid_protocol", "time")
    config = TrainConfig(model=ModelConfig(**model_kw), **train_kw)  # type: ignore[arg-type]
    start = time.monotonic()

    def report(p: Progress) -> None:
        if p.ndcg is not None:
            print(f"epoch {p.epoch}: loss {p.loss:.4f} validation ndcg@10 {p.ndcg:.4f}", flush=True)

    result = train(split.train, split.catalog, config, on_progress=report)
    seconds = time.monotonic() - start
    model = TorchScorer(EagerTorchBackend(result.model), result.vocab, result.model.config, "model")
    scorers: dict[str, Scorer | ScorerFactory] = {"model": model}
    if "--fused" in flags:
        scorers["fused"] = fused(split, result, model, config.seed)
    run = evaluate(split, {**scorers, **all_baselines()}, EvalConfig())
    print(f"{directory.name}: {run.protocol}, {run.n_points} test points, {run.n_items} items, train {seconds:.0f} s")
    _print(run)
    scores = {s.name: s.metrics["ndcg@10"].value for s in run.scorers}
    best = max((name for name in scores if name not in scorers), key=scores.__getitem__)  # baselines only
    name = directory.name.replace("-", "_")
    print(f"{name}: best baseline {best}, best epoch {result.training['best_epoch']}/{result.training['epochs_run']}")
    out = [
        f"ndcg10_{name}={scores['model']:.4f}",
        f"best_baseline_{name}={scores[best]:.4f}",
        f"ratio_{name}={_ratio(scores['model'], scores[best]):.3f}",
    ]
    if "fused" in scores:
        out += [
            f"fused_ndcg10_{name}={scores['fused']:.4f}",
            f"fused_ratio_{name}={_ratio(scores['fused'], scores[best]):.3f}",
        ]
    return out


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
