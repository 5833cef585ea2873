"""Cost of explanations: per-batch scoring time on CPU at batch 32, with and without the default explainer.

Both variants run in the same process, interleaved batch by batch (so machine load hits both alike). "Without"
= `TorchScorer.score` (its own cheap evidence included); "with" = the same plus `Explainer.explain` using the
default method for the eager backend (`explain.explainer.DEFAULT_METHOD`). With `--model DIR --data DIR` a
trained model and real users are used; otherwise a random-initialised model of the default shape and synthetic
users with full histories (weights do not change the cost). Last line: `RESULT overhead=<fraction> ...`.

    nice -n 10 .venv/bin/python bench/explain_cost.py --items 50000 --rounds 9
    nice -n 10 .venv/bin/python bench/explain_cost.py --model MODEL_DIR --data DATA_DIR --method occlusion
"""

from __future__ import annotations

import argparse
import statistics
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import torch

from contracts import EventType
from explain.explainer import Explainer, default_method
from model.backends import EagerTorchBackend
from model.scoring import ItemContext, PastEvent, UserState
from model.torch_scorer import TorchScorer
from model.transformer import ModelConfig, SeqRecModel
from model.vocab import ItemVocab


def _synthetic(n_items: int, users: int, length: int) -> tuple[SeqRecModel, ItemVocab, list[UserState]]:
    torch.manual_seed(0)
    model = SeqRecModel(ModelConfig(n_items=n_items + 1, max_len=length)).eval()
    vocab = ItemVocab([f"i{n}" for n in range(n_items)], capacity=n_items + 1)
    t = datetime(2024, 1, 1, tzinfo=UTC)
    states = [
        UserState(
            f"u{u}",
            tuple(
                PastEvent(
                    f"e{u}-{j}", f"i{(u * 131 + j * 17) % n_items}", EventType.VIEW, t + timedelta(seconds=30 * j)
                )
                for j in range(length)
            ),
        )
        for u in range(users)
    ]
    return model, vocab, states


def _trained(model_dir: Path, data: Path, users: int) -> tuple[SeqRecModel, ItemVocab, list[UserState], ItemContext]:
    from explain.evaluate import sample_users
    from model.artifacts import load_model
    from model.interactions import InteractionIndex
    from model.splits import load_catalog, load_events

    loaded = load_model(model_dir)
    events, catalog = load_events(data), load_catalog(data)
    items = InteractionIndex.build(events, catalog).item_context()
    return loaded.model, loaded.vocab, sample_users(events, items.item_category, users, 0), items


def main() -> None:
    """Measure and print."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=None, help="Trained model directory (with --data).")
    parser.add_argument("--data", type=Path, default=None, help="Imported data directory (with --model).")
    parser.add_argument("--items", type=int, default=50_000, help="Catalog size of the synthetic model.")
    parser.add_argument("--batch", type=int, default=32, help="Users per micro-batch.")
    parser.add_argument("--k", type=int, default=10, help="Items recommended (and explained) per user.")
    parser.add_argument("--rounds", type=int, default=5, help="Timed batches per variant.")
    parser.add_argument("--threads", type=int, default=1, help="torch threads.")
    parser.add_argument("--method", default=None, help="Attribution method (default: the backend's default).")
    args = parser.parse_args()
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
    explainer = Explainer(
        encoder=backend, model=model, vocab=vocab, config=model.config, backend=backend.name, method=method
    )
    plain, explained = [], []
    for r in range(args.rounds + 1):  # round 0 warms up
        batch = users[r * args.batch : (r + 1) * args.batch]
        start = time.perf_counter()
        scorer.score(batch, items, args.k)
        middle = time.perf_counter()
        scored = scorer.score(batch, items, args.k)
        explainer.explain(batch, items, scored)
        end = time.perf_counter()
        if r:
            plain.append(1000 * (middle - start))
            explained.append(1000 * (end - middle))
    base, full = statistics.median(plain), statistics.median(explained)
    overhead = (full - base) / base
    print(f"catalog rows {model.config.n_items}, batch {args.batch}, k {args.k}, method {method}, {args.rounds} rounds")
    print(f"scoring only:              {base:8.1f} ms/batch (median)")
    print(f"scoring + explanations:    {full:8.1f} ms/batch (median)")
    print(f"explanation cost:          {(full - base) / (args.batch * args.k):8.2f} ms per explained item")
    print(f"RESULT overhead={overhead:.3f} method={method} scoring_ms={base:.1f} explained_ms={full:.1f} target=0.5")


if __name__ == "__main__":
    main()
