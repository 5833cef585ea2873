"""Hot swap: a valid model replaces the old one between batches; a bad one is refused and the old one serves."""

from __future__ import annotations

import shutil
import threading
from datetime import UTC, datetime
from pathlib import Path

import pytest
import torch

from contracts import ChecksumMismatch, EventType, ModelError
from model.artifacts import WEIGHTS_FILE, load_scorer, save_model
from model.hot_swap import SwappableScorer
from model.scoring import ItemContext, PastEvent, UserState
from model.transformer import ModelConfig, SeqRecModel
from model.vocab import ItemVocab

torch.set_num_threads(1)


def _save(directory: Path, seed: int) -> str:
    torch.manual_seed(seed)
    config = ModelConfig(n_items=8, max_len=5, d_model=16, n_heads=2, n_layers=1)
    return save_model(directory, SeqRecModel(config), ItemVocab(list("abcde"), capacity=8)).version


def _cpu_loader(path: Path) -> object:
    return load_scorer(path, backend="torch", device="cpu")


USER = UserState("u", (PastEvent("e0", "a", EventType.VIEW, datetime(2024, 1, 1, tzinfo=UTC)),))


def test_swap_switches_to_a_valid_model(tmp_path: Path) -> None:
    v1, v2 = _save(tmp_path / "m1", 1), _save(tmp_path / "m2", 2)
    swappable = SwappableScorer(_cpu_loader(tmp_path / "m1"), _cpu_loader)  # type: ignore[arg-type]
    assert swappable.version == v1
    assert swappable.swap(tmp_path / "m2") == v2
    assert swappable.version == v2
    assert len(swappable.score([USER], ItemContext(), 3)[0]) == 3


def test_corrupt_model_is_refused_and_old_model_keeps_serving(tmp_path: Path) -> None:
    v1 = _save(tmp_path / "m1", 1)
    _save(tmp_path / "bad", 2)
    weights = tmp_path / "bad" / WEIGHTS_FILE
    weights.write_bytes(weights.read_bytes()[:-8] + b"\x00" * 8)
    swappable = SwappableScorer(_cpu_loader(tmp_path / "m1"), _cpu_loader)  # type: ignore[arg-type]
    before = swappable.score([USER], ItemContext(), 3)
    with pytest.raises(ChecksumMismatch):
        swappable.swap(tmp_path / "bad")
    shutil.rmtree(tmp_path / "bad")
    with pytest.raises(ModelError, match="manifest.json not found"):
        swappable.swap(tmp_path / "bad")
    assert swappable.version == v1
    assert swappable.score([USER], ItemContext(), 3) == before


def test_each_batch_is_scored_by_one_model_while_swapping(tmp_path: Path) -> None:
    dirs = [tmp_path / "m1", tmp_path / "m2"]
    versions = [_save(d, s) for d, s in zip(dirs, (1, 2), strict=True)]
    expected = {v: _cpu_loader(d).score([USER], ItemContext(), 5) for v, d in zip(versions, dirs, strict=True)}  # type: ignore[attr-defined]
    swappable = SwappableScorer(_cpu_loader(dirs[0]), _cpu_loader)  # type: ignore[arg-type]
    stop = threading.Event()
    seen: list[bool] = []

    def serve() -> None:
        while not stop.is_set():
            scorer = swappable.current
            seen.append(scorer.score([USER], ItemContext(), 5) in expected.values())

    worker = threading.Thread(target=serve)
    worker.start()
    for n in range(4):
        swappable.swap(dirs[n % 2])
    stop.set()
    worker.join()
    assert seen and all(seen)
