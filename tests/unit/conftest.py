"""Fixtures shared by unit test modules: tiny two-stage models trained once per test session."""

from __future__ import annotations

from pathlib import Path

import pytest

from model.ranker import RankerConfig
from model.synthetic import synthetic_catalog, synthetic_events
from model.text_tower import MiniLMEncoder
from model.train import TrainConfig
from model.train_two_stage import TwoStageConfig, train_two_stage
from model.transformer import ModelConfig
from model.two_stage_store import save_two_stage


def _tiny_two_stage(out: Path, text_tower: bool) -> Path:
    events, catalog = synthetic_events(n_users=80, length=12), synthetic_catalog()
    tiny = ModelConfig(max_len=8, d_model=16, n_heads=2, n_layers=1, text_tower=text_tower)
    train = TrainConfig(model=tiny, epochs=2, batch_size=32, max_valid_points=50, refit=True)
    config = TwoStageConfig(train=train, ranker=RankerConfig(epochs=3), ranker_points=200)
    result = train_two_stage(events, catalog, config, text_encoder=MiniLMEncoder() if text_tower else None)
    manifest = save_two_stage(out, result)
    assert manifest.version.startswith("two-stage-") and set(manifest.extra_files) == {
        "parts.safetensors",
        "ranker.safetensors",
    }
    return out


@pytest.fixture(scope="session")
def two_stage_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny two-stage model (no text tower) on the synthetic stream."""
    return _tiny_two_stage(tmp_path_factory.mktemp("two-stage") / "m", text_tower=False)


@pytest.fixture(scope="session")
def text_two_stage_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The same with the text tower (item titles embedded by the packaged MiniLM, offline)."""
    return _tiny_two_stage(tmp_path_factory.mktemp("two-stage-text") / "m", text_tower=True)
