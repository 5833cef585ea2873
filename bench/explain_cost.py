"""Cost of explanations: per-batch scoring time on CPU at batch 32, with and without the default explainer.

Both variants run in the same process, interleaved batch by batch (so machine load hits both alike). "Without"
= `TorchScorer.score` (its own cheap evidence included); "with" = the same plus `Explainer.explain` using the
default method for the eager backend (`explain.explainer.DEFAULT_METHOD`). With `--model DIR --data DIR` a
trained model and real users are used; otherwise a random-initialised model of the default shape and synthetic
users with full histories (weights do not change the cost). Last line: `RESULT overhead=<fraction> ...`.

Two clocks, both medians over the rounds: wall time, and the thread's CPU time (`time.thread_time`; torch runs
on this one thread, `--threads 1`). On a shared machine the wall clock mostly measures the neighbours, so
`overhead` is the CPU-time ratio unless `--clock wall`; both ratios are printed. Long-lived set-up objects are
moved out of the garbage collector's view (`gc.freeze`, as a server does after loading) so a full collection
of the data set does not land at random in one timed variant.

Garbage collection follows the worker's policy: the worker runs each micro-batch inside `streams.runtime.gc_paused`
(no automatic collection from take to delivery; what the batch leaves behind is collected after it), so each
timed round runs inside the same `gc_paused` block, both variants alike. Without it, a collection triggered by the
explain step's ~3,000 new records (~1.2 ms per batch measured with the collector on) would be charged to the
explain step here although the worker never pays it inside a batch.

Every timed round, and each variant in it, gets a fresh `ItemContext` built as the worker builds one per
micro-batch (`FeatureStore.read_batch`: new mappings around the same cached
lists), before its clock starts. Reusing one context across rounds would let the explainer's per-context memos
(`explain.reasons.ReasonIndex`: trending and category ranks, title tokens, cart neighbours) carry over, which a
worker never gets. (The worker also merges the recommended items' catalog data in before explaining,
`streams.batch.with_catalog`; here the context already holds the whole catalog, so that is a no-op.)

    nice -n 10 .venv/bin/python bench/explain_cost.py --items 50000 --rounds 9
    nice -n 10 .venv/bin/python bench/explain_cost.py --model MODEL_DIR --data DATA_DIR --method occlusion
"""

from __future__ import annotations

import argparse
import gc
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

from explain.explainer import Explainer, default_method
from model.backends import EagerTorchBackend
from model.scoring import ItemContext, UserState
from model.torch_scorer import TorchScorer
from model.transformer import ModelConfig, SeqRecModel
from model.vocab import ItemVocab
from streams.runtime import gc_paused

sys.path.insert(0, str(Path(__file__).resolve().parent))
from scoring import synthetic_users  # noqa: E402 (the scoring bench's)


def _synthetic(n_items: int, users: int, length: int) -> tuple[SeqRecModel, ItemVocab, list[UserState]]:
    torch.manual_seed(0)
    model = SeqRecModel(ModelConfig(n_items=n_items + 1, max_len=length)).eval()
    vocab = ItemVocab([f"i{n}" for n in range(n_items)], capacity=n_items + 1)
    states = synthetic_users(users, n_items, length)
    return model, vocab, states


def _trained(model_dir: Path, data: Path, users: int) -> tuple[SeqRecModel, ItemVocab, list[UserState], ItemContext]:
    from explain.evaluate import sample_users
    from model.artifacts import load_model
    from model.interactions import InteractionIndex
    from model.splits import load_catalog, load_events

    loaded = load_model(model_dir)
    events, catalog = load_events(data), load_catalog(data)
    lazy = InteractionIndex.build(events, catalog).item_context()
    # Plain dicts, as the worker gets them from the feature store (not the index's lazily built views, whose
    # first access per key would be charged to whichever variant touches it first).
    items = ItemContext(
        popular=list(lazy.popular),
        popular_by_category={c: list(v) for c, v in lazy.popular_by_category.items()},
        cooccurring={i: list(v) for i, v in lazy.cooccurring.items()},
        item_category=dict(lazy.item_category),
        item_title=dict(lazy.item_title),
        unavailable=lazy.unavailable,
    )
    return loaded.model, loaded.vocab, sample_users(events, items.item_category, users, 0), items


def _fresh(items: ItemContext) -> ItemContext:
    """A new context with the same data, as the worker builds per batch: new mappings, the same (cached) lists."""
    return ItemContext(
        popular=list(items.popular),
        popular_by_category=dict(items.popular_by_category),
        cooccurring=dict(items.cooccurring),
        item_category=dict(items.item_category),
        item_title=dict(items.item_title),
        unavailable=items.unavailable,
    )


def _args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=None, help="Trained model directory (with --data).")
    parser.add_argument("--data", type=Path, default=None, help="Imported data directory (with --model).")
    parser.add_argument("--items", type=int, default=50_000, help="Catalog size of the synthetic model.")
    parser.add_argument("--batch", type=int, default=32, help="Users per micro-batch.")
    parser.add_argument("--k", type=int, default=10, help="Items recommended (and explained) per user.")
    parser.add_argument("--rounds", type=int, default=5, help="Timed batches per variant.")
    parser.add_argument("--threads", type=int, default=1, help="torch threads.")
    parser.add_argument("--method", default=None, help="Attribution method (default: the backend's default).")
    parser.add_argument("--max-evidence", type=int, default=5, help="Evidence events per explained item.")
    parser.add_argument("--clock", choices=("cpu", "wall"), default="cpu", help="Clock of the RESULT overhead.")
    return parser.parse_args()


_CLOCKS: dict[str, Callable[[], float]] = {"wall": time.perf_counter, "cpu": time.thread_time}
_Times = dict[str, dict[str, list[float]]]  # variant -> clock -> ms per round


def _timed_rounds(
    args: argparse.Namespace, scorer: TorchScorer, explainer: Explainer, users: list[UserState], items: ItemContext
) -> _Times:
    """ms per batch of each variant (`plain`, `explained`, `explain_only`) and clock, round 0 (warm-up) left out."""
    n_batches = max(1, len(users) // args.batch)  # batches repeat when there are fewer users than rounds
    gc.collect()
    gc.freeze()
    times: _Times = {v: {c: [] for c in _CLOCKS} for v in ("plain", "explained", "explain_only")}
    for r in range(args.rounds + 1):  # round 0 warms up
        first = (r % n_batches) * args.batch
        batch = users[first : first + args.batch]
        plain_items, explained_items = _fresh(items), _fresh(items)
        # Out of the collector's view like the rest of the set-up: these hold the whole catalog (~50 k lists), a
        # worker's per-batch context only the batch's items, so the collector walking them would be bench-only.
        gc.freeze()
        with gc_paused():  # as the worker runs a micro-batch (module docstring)
            start = {c: f() for c, f in _CLOCKS.items()}
            scorer.score(batch, plain_items, args.k)
            middle = {c: f() for c, f in _CLOCKS.items()}
            scored = scorer.score(batch, explained_items, args.k)
            scored_at = {c: f() for c, f in _CLOCKS.items()}
            explainer.explain(batch, explained_items, scored)
            end = {c: f() for c, f in _CLOCKS.items()}
        if r:
            for c in _CLOCKS:
                times["plain"][c].append(1000 * (middle[c] - start[c]))
                times["explained"][c].append(1000 * (end[c] - middle[c]))
                times["explain_only"][c].append(1000 * (end[c] - scored_at[c]))
    return times


def main() -> None:
    """Measure and print."""
    args = _args()
    torch.set_num_threads(args.threads)
    if args.model is not None and args.data is not None:
        model, vocab, users, items = _trained(args.model, args.data, args.batch * (args.rounds + 1))
    else:
        model, vocab, users = _synthetic(args.items, args.batch * (args.rounds + 1), model_len := 50)
        items = ItemContext()
        del model_len
    backend = EagerTorchBackend(model, "cpu")
    scorer = TorchScorer(backend, vocab, model.config, "bench")
    method = args.method or default_method(backend.name)
    explainer = Explainer.for_scorer(scorer, model, method=method, max_evidence=args.max_evidence)
    times = _timed_rounds(args, scorer, explainer, users, items)
    plain, explained = times["plain"], times["explained"]
    ratio = {}
    print(f"catalog rows {model.config.n_items}, batch {args.batch}, k {args.k}, method {method}, {args.rounds} rounds")
    for c in _CLOCKS:
        base, full = statistics.median(plain[c]), statistics.median(explained[c])
        ratio[c] = (full - base) / base
        print(f"[{c:4s}] scoring only:           {base:8.1f} ms/batch (median)")
        print(f"[{c:4s}] scoring + explanations: {full:8.1f} ms/batch (median)")
        print(f"[{c:4s}] explanation cost:       {(full - base) / (args.batch * args.k):8.3f} ms per explained item")
        print(f"[{c:4s}] explain step alone:     {statistics.median(times['explain_only'][c]):8.1f} ms/batch (median)")
        print(f"[{c:4s}] overhead:               {ratio[c]:8.3f}")
    base, full = statistics.median(plain[args.clock]), statistics.median(explained[args.clock])
    overhead = ratio[args.clock]
    print(
        f"RESULT overhead={overhead:.3f} clock={args.clock} wall_overhead={ratio['wall']:.3f} method={method} "
        f"scoring_ms={base:.1f} explained_ms={full:.1f} batch={args.batch} k={args.k} "
        f"max_evidence={args.max_evidence} target=0.5"
    )


if __name__ == "__main__":
    main()
