"""`model.cycle.run_cycle`: one learner cycle as a pure function (no Kafka, no store): promote, refuse, discard."""

from __future__ import annotations

import torch

from model.continual import ContinualConfig, ReplayReservoir
from model.cycle import run_cycle
from model.drifting_stream import drifting_stream
from model.gate import GateConfig
from model.served_ranking import ServedModel
from model.stream_buffer import CycleData, StreamBuffer
from model.transformer import ModelConfig, SeqRecModel
from model.vocab import ItemVocab

torch.set_num_threads(1)
GATE = GateConfig(min_points=10)


def _setup() -> tuple[ServedModel, CycleData, list[str], dict]:  # type: ignore[type-arg]
    events, catalog, _ = drifting_stream(n_users=60, length=12, seed=2)
    torch.manual_seed(0)
    config = ModelConfig(n_items=64, max_len=8, d_model=16, n_heads=2, n_layers=1, dropout=0.0)
    known = sorted({e.item_id for e in events if e.item_id and not e.item_id.startswith("n")})
    base = ServedModel(SeqRecModel(config).eval(), ItemVocab(known, capacity=config.n_items))
    buffer = StreamBuffer(9, {})
    for e in events:
        buffer.add(e)
    data = buffer.cut(0.3)
    return base, data, [i for i in data.items if i not in base.vocab], dict(catalog)


def test_a_fine_tuned_candidate_that_beats_serving_is_promoted_with_its_new_items() -> None:
    base, data, new, catalog = _setup()
    out = run_cycle(base, data, new, catalog, None, ReplayReservoir(100), ContinualConfig(steps=40, lr=1e-2), GATE)
    assert out.promote and out.candidate is not None and out.result is not None
    assert out.record["candidate_ndcg"] > out.record["serving_ndcg"] and out.result.diff_low > 0.0
    assert out.added and set(out.added) <= set(new) and all(i in out.candidate.vocab for i in out.added)
    assert out.steps == 40 and out.record["reason"].startswith("not worse")
    assert base.vocab is not out.candidate.vocab and all(i not in base.vocab for i in out.added)  # base untouched


def test_an_unchanged_model_ties_and_is_promoted_but_a_better_anchor_refuses_it() -> None:
    base, data, new, catalog = _setup()
    frozen = ContinualConfig(steps=5, lr=0.0)  # the candidate is the base (plus new rows nobody can rank yet)
    tie = run_cycle(base, data, new, catalog, None, ReplayReservoir(100), frozen, GATE)
    assert tie.result is not None and tie.result.diff_mean == 0.0 and tie.promote  # not worse: the gate's rule
    trained = run_cycle(base, data, new, catalog, None, ReplayReservoir(100), ContinualConfig(steps=40, lr=1e-2), GATE)
    assert trained.candidate is not None
    better = trained.candidate
    strict = GateConfig(min_points=10, anchor_margin=0.0)
    refused = run_cycle(
        base, data, new, catalog, None, ReplayReservoir(100), frozen, strict, lambda _, items: better.ranker(items)
    )
    assert not refused.promote and refused.record["reason"].startswith("worse than the anchor")
    assert refused.record["anchor_ndcg"] > refused.record["candidate_ndcg"]


def test_an_update_with_exploding_gradients_is_discarded_before_the_gate() -> None:
    base, data, new, catalog = _setup()
    out = run_cycle(base, data, new, catalog, None, ReplayReservoir(100), ContinualConfig(max_grad_norm=1e-9), GATE)
    assert out.candidate is None and out.result is None and not out.promote
    assert out.record["reason"].startswith("update discarded") and "gradient norm" in out.record["reason"]
