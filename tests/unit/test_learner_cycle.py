"""One learner cycle without Kafka: promote a better candidate, discard a bad update, follow a rollback."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import torch

from contracts import Settings
from model.artifacts import save_model
from model.continual import ContinualConfig
from model.drift import drifting_stream
from model.store import ModelStore
from model.stream_buffer import StreamBuffer
from model.transformer import ModelConfig, SeqRecModel
from model.vocab import ItemVocab
from streams.learner.service import Learner, LearnerOptions

torch.set_num_threads(1)


def _learner(tmp_path: Path, **continual: object) -> tuple[Learner, ModelStore, str]:
    events, catalog, _ = drifting_stream(n_users=60, length=12, seed=2)
    torch.manual_seed(0)
    config = ModelConfig(n_items=64, max_len=8, d_model=16, n_heads=2, n_layers=1, dropout=0.0)
    known = sorted({e.item_id for e in events if e.item_id and not e.item_id.startswith("n")})
    save_model(tmp_path / "base", SeqRecModel(config), ItemVocab(known, capacity=config.n_items))
    store = ModelStore(tmp_path / "store")
    base = store.promote(tmp_path / "base").version
    cfg = ContinualConfig(steps=40, lr=1e-2, min_gate_points=10, **continual)  # type: ignore[arg-type]
    learner = Learner(Settings(model_dir=store.root), LearnerOptions(text_init=False, continual=cfg), store)
    learner._reload()  # noqa: SLF001 (what `run` does once the store has a version)
    buffer = StreamBuffer(9, {})
    for e in events:
        buffer.add(e)
    learner._buffer = buffer  # noqa: SLF001
    learner._catalog = dict(catalog)  # noqa: SLF001
    return learner, store, base


def test_a_better_candidate_is_promoted_with_its_lineage(tmp_path: Path) -> None:
    learner, store, base = _learner(tmp_path)
    assert learner._buffer is not None  # noqa: SLF001
    record = learner._cycle(learner._buffer.cut(0.3), {"0": [0, 720]})  # noqa: SLF001
    assert record["promoted"], record
    assert record["candidate_ndcg"] >= record["serving_ndcg"] - 0.01 and record["new_items"] > 0
    manifest = store.manifest(record["version"])
    assert store.current() == record["version"] and manifest.parent_version == base
    assert manifest.data["offsets"] == {"0": [0, 720]} and manifest.metrics["ndcg@10"] == record["candidate_ndcg"]
    assert any(i.startswith("n") for i in manifest.items)  # grown vocabulary saved with the version
    assert manifest.config["n_items"] > 64  # 3 spare rows were not enough: the table was resized


def test_a_bad_update_is_discarded_and_a_rollback_is_followed(tmp_path: Path) -> None:
    learner, store, base = _learner(tmp_path, max_grad_norm=1e-9)
    assert learner._buffer is not None  # noqa: SLF001
    record = learner._cycle(learner._buffer.cut(0.3), {})  # noqa: SLF001
    assert not record["promoted"] and "gradient norm" in record["reason"] and store.current() == base
    learner.options = dataclasses.replace(learner.options, continual=ContinualConfig(steps=5, tolerance=1.0))
    other = tmp_path / "other"
    torch.manual_seed(9)
    loaded = store.load()
    save_model(other, SeqRecModel(loaded.model.config), loaded.vocab)
    rolled = store.promote(other).version  # someone promotes / rolls back while the learner runs
    record = learner._cycle(learner._buffer.cut(0.3), {})  # noqa: SLF001
    assert record["base"] == rolled
