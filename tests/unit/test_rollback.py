"""The automatic rollback rule (two-proportion z-test per watched rate) and its watch window."""

from __future__ import annotations

import dataclasses
from datetime import timedelta
from pathlib import Path

import torch

from model.artifacts import save_model
from model.store import ModelStore
from model.transformer import ModelConfig, SeqRecModel
from model.vocab import ItemVocab
from streams.learner.rollback import RollbackConfig, check_and_roll_back, judge

torch.set_num_threads(1)


def _tally(impressions: float, clicks: float, purchases: float = 0.0) -> dict[str, float]:
    return {"impressions": impressions, "clicks": clicks, "purchases": purchases}


def test_judge_needs_impressions_and_a_significant_drop() -> None:
    cfg = RollbackConfig(min_impressions=100)
    assert not judge(_tally(50, 0), _tally(1000, 200), cfg).roll_back  # too few child impressions
    assert not judge(None, _tally(1000, 200), cfg).roll_back
    same = judge(_tally(1000, 195), _tally(1000, 200), cfg)
    assert not same.roll_back and same.reason.startswith("no significant drop") and same.metric == "ctr"
    drop = judge(_tally(1000, 150), _tally(1000, 200), cfg)
    assert drop.roll_back and drop.metric == "ctr" and drop.z < -2.33 and drop.parent_rate == 0.2
    better = judge(_tally(1000, 300), _tally(1000, 200), cfg)
    assert not better.roll_back and better.z >= 0  # the closest test is reported (here conversion, 0 vs 0)


def test_judge_watches_conversion_too() -> None:
    cfg = RollbackConfig(min_impressions=100)
    buys = judge(_tally(2000, 400, purchases=2), _tally(2000, 400, purchases=40), cfg)
    assert buys.roll_back and buys.metric == "conversion"
    assert not judge(_tally(2000, 400, 2), _tally(2000, 400, 40), dataclasses.replace(cfg, metrics=("ctr",))).roll_back


def test_only_versions_inside_the_watch_window_are_rolled_back(tmp_path: Path) -> None:
    config = ModelConfig(n_items=8, max_len=5, d_model=16, n_heads=2, n_layers=1)
    store = ModelStore(tmp_path / "s")
    torch.manual_seed(1)
    parent = store.promote(save_model_dir(tmp_path / "p", SeqRecModel(config), None)).version
    child = store.promote(save_model_dir(tmp_path / "c", SeqRecModel(config), parent))
    versions = {parent: _tally(1000, 200), child.version: _tally(1000, 50)}
    late = child.created_at + timedelta(seconds=RollbackConfig().window_seconds + 1)
    assert check_and_roll_back(store, versions, RollbackConfig(), late) is None and store.current() == child.version
    outcome = check_and_roll_back(store, versions, RollbackConfig(), child.created_at + timedelta(seconds=5))
    assert outcome is not None and outcome.rolled_back and store.current() == parent
    assert store.anchor() == parent  # the child has a parent: promoting it did not move the anchor


def save_model_dir(path: Path, model: SeqRecModel, parent: str | None) -> Path:
    save_model(path, model, ItemVocab(["a", "b"], capacity=8), parent_version=parent)
    return path
