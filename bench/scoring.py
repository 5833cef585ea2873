"""Transformer scoring throughput: eager vs `torch.export` (and TensorRT where available), side by side.

Random-initialised model of the default shape (weights do not change the cost), synthetic users with full
histories, full-catalog chunked top-k. Prints users/s and ms per micro-batch for each backend and batch size,
the ratio to eager, and a last line `RESULT key=value ...`.

    nice -n 10 .venv/bin/python bench/scoring.py --items 50000 --batches 64 256
"""

from __future__ import annotations

import argparse
import time
from datetime import UTC, datetime, timedelta

import torch

from contracts import EventType
from model.backends import EagerTorchBackend, ExportedTorchBackend, tensorrt_available
from model.backends.base import ScoringBackend
from model.scoring import ItemContext, PastEvent, UserState
from model.torch_scorer import TorchScorer
from model.transformer import ModelConfig, SeqRecModel
from model.vocab import ItemVocab


def synthetic_users(n: int, n_items: int, length: int) -> list[UserState]:
    """`n` users with `length` views each, spread over the catalog deterministically (30 s apart)."""
    t = datetime(2024, 1, 1, tzinfo=UTC)
    return [
        UserState(
            f"u{u}",
            tuple(
                PastEvent(
                    f"e{u}-{j}", f"i{(u * 131 + j * 17) % n_items}", EventType.VIEW, t + timedelta(seconds=30 * j)
                )
                for j in range(length)
            ),
        )
        for u in range(n)
    ]


def _time(scorer: TorchScorer, users: list[UserState], repeats: int) -> float:
    scorer.score(users, ItemContext(), 10)  # warm-up
    start = time.perf_counter()
    for _ in range(repeats):
        scorer.score(users, ItemContext(), 10)
    return (time.perf_counter() - start) / repeats


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=50_000)
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 64, 256])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    config = ModelConfig(n_items=args.items + 1)
    model = SeqRecModel(config).eval()
    vocab = ItemVocab([f"i{n}" for n in range(args.items)], capacity=config.n_items)
    backends: dict[str, ScoringBackend] = {
        "torch": EagerTorchBackend(model, "cpu"),
        "exported": ExportedTorchBackend(model, "cpu"),
    }
    usable, reason = tensorrt_available()
    print(f"items={args.items} max_len={config.max_len} d_model={config.d_model} threads={args.threads}")
    print(f"tensorrt: {'available' if usable else 'skipped (' + reason + ')'}")
    results: dict[str, float] = {}
    for batch in args.batches:
        users = synthetic_users(batch, args.items, config.max_len)
        base = None
        for name, backend in backends.items():
            seconds = _time(TorchScorer(backend, vocab, config, name, max_batch=batch), users, args.repeats)
            base = base or seconds
            results[f"{name}_b{batch}_users_per_s"] = batch / seconds
            print(
                f"batch={batch:4d} {name:9s} {1000 * seconds:8.2f} ms/batch {batch / seconds:9.1f} users/s "
                f"x{base / seconds:.2f} vs eager"
            )
    print("RESULT " + " ".join(f"{key}={value:.1f}" for key, value in results.items()))


if __name__ == "__main__":
    main()
