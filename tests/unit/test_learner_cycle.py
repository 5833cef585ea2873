"""One learner cycle without Kafka: promote, discard, follow and keep a manual rollback, roll back automatically."""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import torch

from contracts import Event, EventType, Explanation, Recommendation, RecommendedItem, Settings
from model.artifacts import save_model
from model.continual import ContinualConfig, FineTuneResult, fine_tune
from model.drifting_stream import drifting_stream
from model.gate import GateConfig
from model.store import ModelStore
from model.stream_buffer import StreamBuffer
from model.transformer import ModelConfig, SeqRecModel
from model.vocab import ItemVocab
from streams.learner.service import LOG_FILE, Learner
from streams.learner.settings import LearnerSettings

torch.set_num_threads(1)


def _learner(tmp_path: Path, gate: GateConfig | None = None, **continual: object) -> tuple[Learner, ModelStore, str]:
    events, catalog, _ = drifting_stream(n_users=60, length=12, seed=2)
    torch.manual_seed(0)
    config = ModelConfig(n_items=64, max_len=8, d_model=16, n_heads=2, n_layers=1, dropout=0.0)
    known = sorted({e.item_id for e in events if e.item_id and not e.item_id.startswith("n")})
    save_model(tmp_path / "base", SeqRecModel(config), ItemVocab(known, capacity=config.n_items))
    store = ModelStore(tmp_path / "store")
    base = store.promote(tmp_path / "base").version
    cfg = ContinualConfig(steps=40, lr=1e-2, **continual)  # type: ignore[arg-type]
    options = LearnerSettings(text_init=False, continual=cfg, gate=gate or GateConfig(min_points=10))
    learner = Learner(Settings(model_dir=store.root), options, store)
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
    assert record["new_items"] > 0 and record["gate"]["gate_diff_high"] >= 0.0
    assert store.anchor() == base and record["anchor_version"] == base  # promoted from a full train: the anchor
    assert record["anchor_ndcg"] == record["serving_ndcg"] and record["candidate_ndcg"] >= record["anchor_ndcg"] - 0.02
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
    lenient = GateConfig(alpha=1e-6, anchor_margin=1.0, min_points=10)
    learner.options = dataclasses.replace(learner.options, continual=ContinualConfig(steps=5), gate=lenient)
    other = tmp_path / "other"
    torch.manual_seed(9)
    loaded = store.load()
    save_model(other, SeqRecModel(loaded.model.config), loaded.vocab)
    rolled = store.promote(other).version  # someone promotes / rolls back while the learner runs
    record = learner._cycle(learner._buffer.cut(0.3), {})  # noqa: SLF001
    assert record["base"] == rolled


def test_a_manual_rollback_during_a_cycle_stays(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    learner, store, base = _learner(tmp_path, gate=GateConfig(alpha=1e-6, anchor_margin=1.0, min_points=10))
    assert learner._buffer is not None  # noqa: SLF001
    other = tmp_path / "other"
    save_model(other, SeqRecModel(store.load().model.config), store.load().vocab)
    manual = store.add(other).version

    def operator_rolls_back_meanwhile(*args: Any, **kwargs: Any) -> FineTuneResult:
        store.rollback(manual)  # the operator's `streamrec model rollback` while the learner is fine-tuning
        return fine_tune(*args, **kwargs)

    monkeypatch.setattr("model.continual.fine_tune", operator_rolls_back_meanwhile)
    record = learner._cycle(learner._buffer.cut(0.3), {})  # noqa: SLF001
    assert record["base"] == base and not record["promoted"], record
    assert "passed the gate but not promoted" in record["reason"] and manual in record["reason"]
    assert store.current() == manual  # the rollback stands
    assert (store.path(record["version"]) / "manifest.json").is_file()  # the candidate is kept, unpromoted
    assert [h["action"] for h in store.history()] == ["promote", "rollback"]
    monkeypatch.setattr("model.continual.fine_tune", fine_tune)
    assert learner._cycle(learner._buffer.cut(0.3), {})["base"] == manual  # noqa: SLF001 (the next cycle follows)


def _shown(learner: Learner, version: str, users: int, clicked: int) -> None:
    """`users` recommendations of 2 items by `version`; the first `clicked` users click their first item."""
    t = datetime(2024, 1, 1, tzinfo=UTC)
    for u in range(users):
        items = [
            RecommendedItem(item_id=f"i{j}", score=1.0, rank=j + 1, explanation=Explanation(text="t")) for j in (0, 1)
        ]
        rec = Recommendation(user_id=f"{version}-u{u}", trigger_event_id=f"e{u}", model_version=version, generated_at=t,
                             latency_ms=1.0, items=items)  # fmt: skip
        learner.effects.recommended(rec, now=0.0)
        if u < clicked:
            click = Event(
                event_id=f"c{version}{u}", user_id=f"{version}-u{u}", item_id="i0", type=EventType.CLICK, ts=t
            )
            learner.effects.event(click, now=1.0)


def test_a_version_whose_online_ctr_collapses_is_rolled_back(tmp_path: Path) -> None:
    learner, store, base = _learner(tmp_path)
    assert learner._buffer is not None  # noqa: SLF001
    child = learner._cycle(learner._buffer.cut(0.3), {})["version"]  # noqa: SLF001
    assert store.current() == child and store.manifest(child).parent_version == base
    _shown(learner, base, users=300, clicked=60)  # parent: 600 impressions, CTR 10 %
    _shown(learner, child, users=150, clicked=60)  # child so far: CTR 20 %: no rollback
    assert learner.check_rollback(learner.effects.snapshot()["versions"]) is None and store.current() == child
    _shown(learner, child, users=150, clicked=0)  # then it collapses: 60 clicks / 600 impressions = 10 % ...
    assert learner.check_rollback(learner.effects.snapshot()["versions"]) is None  # ... not significant yet
    _shown(learner, child, users=600, clicked=0)  # 60 / 1800 = 3.3 %
    update = learner.check_rollback(learner.effects.snapshot()["versions"])
    assert update is not None and update.version == base and store.current() == base
    assert update.metrics["rollback_p_value"] < 1e-4 and update.metrics["rollback_parent_rate"] == 0.1
    last = store.history()[-1]
    assert (last["action"], last["version"], last["previous"]) == ("auto-rollback", base, child)
    assert last["reason"].startswith("ctr ")
    logged = [json.loads(line) for line in (store.root / LOG_FILE).read_text().splitlines()]
    assert logged[-1]["kind"] == "rollback" and logged[-1]["metric"] == "ctr" and logged[-1]["rolled_back"]
    assert learner.check_rollback(learner.effects.snapshot()["versions"]) is None  # base has no parent: nothing to do
