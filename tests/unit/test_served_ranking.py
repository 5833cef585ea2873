"""The learner's gate judges a version as workers serve it: a two-stage version inside its two-stage model."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import torch

from contracts import Settings
from model.artifacts import load_model, load_scorer
from model.continual import ContinualConfig, Ranker, ndcg_at_10
from model.evaluate import split_context
from model.gate import GateConfig
from model.scoring import ItemContext, UserState
from model.served_ranking import ServedModel, TwoStageRanker, window_context
from model.splits import split_at, time_split
from model.store import ModelStore
from model.stream_buffer import StreamBuffer
from model.synthetic import synthetic_catalog, synthetic_events
from model.targets import next_new_points
from model.transformer import SeqRecModel
from model.two_stage import TwoStageScorer
from streams.learner.service import Learner
from streams.learner.settings import LearnerSettings

torch.set_num_threads(1)


def _users() -> tuple[list[UserState], ItemContext]:
    events, catalog = synthetic_events(n_users=80, length=12), synthetic_catalog()
    fit, held_out = split_at(events, events[-1].ts - timedelta(days=2))
    split = time_split(fit, held_out, catalog, max_points=40, targets="every")
    return [p.state for p in split.points], split_context(split)


def test_a_two_stage_version_is_ranked_as_the_worker_serves_it(two_stage_dir: Path) -> None:
    served = ServedModel.of(load_model(two_stage_dir))
    worker = load_scorer(two_stage_dir, backend="torch", device="cpu")
    assert isinstance(worker, TwoStageScorer) and served.two_stage is not None
    users, items = _users()
    gate_lists = served.ranker(items).top(users, 10)
    assert gate_lists == [[s.item_id for s in row] for row in worker.score(users, items, 10)]
    assert gate_lists != Ranker(served.model, served.vocab).top(users, 10)  # the transformer alone is not served


def test_a_fine_tuned_transformer_is_judged_inside_the_parents_two_stage_model(two_stage_dir: Path) -> None:
    loaded = load_model(two_stage_dir)
    served = ServedModel.of(loaded)
    torch.manual_seed(5)
    other = served.with_transformer(SeqRecModel(loaded.model.config).eval(), loaded.vocab)
    assert other.two_stage is not None and served.two_stage is not None
    assert other.two_stage.ranker is served.two_stage.ranker
    assert other.two_stage.builder.parts is served.two_stage.builder.parts
    assert other.two_stage.transformer.vocab is loaded.vocab
    users, items = _users()
    assert other.ranker(items).top(users, 10) != served.ranker(items).top(users, 10)  # its own transformer ranks
    plain = ServedModel(loaded.model, loaded.vocab)
    assert (
        isinstance(plain.ranker(items), Ranker) and plain.with_transformer(loaded.model, loaded.vocab).two_stage is None
    )


def test_the_learner_gates_a_two_stage_base_on_its_two_stage_ranking(two_stage_dir: Path, tmp_path: Path) -> None:
    store = ModelStore(tmp_path / "store")
    store.promote(two_stage_dir)
    gate = GateConfig(min_points=5, alpha=1e-6, anchor_margin=1.0)
    options = LearnerSettings(text_init=False, continual=ContinualConfig(steps=3), gate=gate)
    learner = Learner(Settings(model_dir=store.root), options, store)
    learner._reload()  # noqa: SLF001 (what `run` does once the store has a version)
    events, catalog = synthetic_events(n_users=80, length=12, seed=3), synthetic_catalog()
    buffer = StreamBuffer(store.load().model.config.max_len + 1, {})
    for event in events:
        buffer.add(event)
    learner._buffer, learner._catalog = buffer, dict(catalog)  # noqa: SLF001
    data = buffer.cut(0.3)
    record = learner._cycle(data, {})  # noqa: SLF001
    base = ServedModel.of(store.load(record["base"]))
    items = window_context(data.train, data.users, catalog)
    targets = next_new_points(data.points)[-gate.max_points :]
    assert isinstance(base.ranker(items), TwoStageRanker) and len(targets) >= gate.min_points
    assert record["serving_ndcg"] == ndcg_at_10(base.ranker(items), targets)
    assert record["serving_ndcg"] != ndcg_at_10(Ranker(base.model, base.vocab), targets)  # not the transformer alone
    assert record["promoted"], record  # the lenient gate passes it: the promoted version is served two-stage too
    assert store.manifest(record["version"]).two_stage is not None
