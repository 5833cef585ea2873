"""The promotion gate: next-new targets, paired bootstrap against serving, margin against the anchor."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import torch

from contracts import EventType
from model.continual import ContinualConfig, Ranker, ReplayReservoir, fine_tune
from model.drifting_stream import drifting_stream
from model.gate import GateConfig, decide, gate
from model.scoring import PastEvent, UserState
from model.splits import TestPoint
from model.stream_buffer import CycleData, StreamBuffer
from model.targets import next_new_points
from model.transformer import ModelConfig, SeqRecModel
from model.vocab import ItemVocab

torch.set_num_threads(1)
T0 = datetime(2024, 1, 1, tzinfo=UTC)
CFG = GateConfig(min_points=10, bootstrap_samples=500)


def _point(user: str, items: list[str | None], target: str) -> TestPoint:
    events = tuple(
        PastEvent(f"{user}{k}", item, EventType.VIEW if item else EventType.SEARCH, T0 + timedelta(seconds=k))
        for k, item in enumerate(items)
    )
    return TestPoint(UserState(user_id=user, events=events), target, EventType.VIEW)


def test_next_new_keeps_targets_that_differ_from_the_previous_item() -> None:
    points = [
        _point("a", ["x"], "y"),
        _point("b", ["x", "y"], "y"),
        _point("c", ["y", None], "y"),
        _point("d", [], "z"),
    ]
    # A repeat of the last item is out, and so is a user without events (no state to score: model.splits).
    assert [p.state.user_id for p in next_new_points(points)] == ["a", "c"]


def test_decide_refuses_a_small_consistent_drop_that_only_pairing_reveals() -> None:
    rng = np.random.default_rng(1)
    serving = rng.uniform(0.0, 1.0, 400)  # noisy per target ...
    candidate = serving - 0.01  # ... but the candidate is 0.01 worse on every one of them
    result = decide(candidate, serving, None, CFG, 400)
    assert not result.promote and result.reason.startswith("significantly worse than serving")
    assert result.diff_high < 0 and abs(result.diff_mean + 0.01) < 1e-9 and np.isnan(result.anchor_ndcg)
    # Unpaired, the two means' 95 % intervals overlap: a per-model comparison could not tell.
    assert abs(candidate.mean() - serving.mean()) < 2 * serving.std() / np.sqrt(400)


def test_decide_promotes_noise_but_stops_a_ratchet_below_the_anchor() -> None:
    rng = np.random.default_rng(2)
    anchor = rng.uniform(0.0, 1.0, 300)
    serving = anchor - 0.03  # earlier cycles already slid below the anchor
    candidate = serving + rng.normal(0.0, 0.05, 300)  # no real change vs serving
    assert decide(candidate, serving, None, CFG, 300).promote  # vs serving alone: not significantly worse
    ratchet = decide(candidate, serving, anchor, CFG, 300)
    assert not ratchet.promote and ratchet.reason.startswith("worse than the anchor")
    assert ratchet.anchor_ndcg - ratchet.candidate_ndcg > CFG.anchor_margin
    better = decide(anchor + 0.05, serving, anchor, CFG, 300)
    assert better.promote and better.diff_low > 0 and set(better.metrics()) >= {"ndcg@10", "anchor_ndcg@10"}


def test_decide_waits_for_enough_targets_and_refuses_non_finite() -> None:
    few = decide(np.ones(5), np.ones(5), None, CFG, 9)
    assert not few.promote and few.points == 0 and few.held_back == 9 and "next-new" in few.reason
    assert few.metrics() == {"gate_points": 0.0, "gate_held_back": 9.0}
    broken = decide(np.full(20, np.nan), np.ones(20), None, CFG, 20)
    assert not broken.promote and "not finite" in broken.reason


def _trained() -> tuple[Ranker, CycleData]:
    """A model fine-tuned on the stationary half of a drifting stream, and that half's held-back targets."""
    events, catalog, switch = drifting_stream(n_users=80, length=10, seed=3)
    buffer = StreamBuffer(7, {})
    for event in events:
        if event.ts < switch:
            buffer.add(event)
    data = buffer.cut(0.5)
    torch.manual_seed(0)
    vocab = ItemVocab(sorted(catalog), capacity=80)
    config = ModelConfig(n_items=80, max_len=6, d_model=16, n_heads=2, n_layers=1, dropout=0.0)
    tuned = fine_tune(SeqRecModel(config), vocab, data.train, ReplayReservoir(10), ContinualConfig(steps=60, lr=1e-2))
    assert tuned.model is not None
    return Ranker(tuned.model, vocab), data


def test_a_candidate_with_shuffled_item_rows_is_refused() -> None:
    good, data = _trained()
    corrupt = Ranker(SeqRecModel(good.model.config), good.vocab)
    corrupt.model.load_state_dict(good.model.state_dict())
    with torch.no_grad():
        rows = torch.arange(1, len(good.vocab) + 1)
        generator = torch.Generator().manual_seed(5)
        corrupt.model.item_emb.weight[rows] = good.model.item_emb.weight[
            rows[torch.randperm(len(rows), generator=generator)]
        ]
    refused = gate(corrupt, good, good, data.points, CFG)
    assert not refused.promote and refused.reason.startswith("significantly worse than serving"), refused
    assert refused.points == len(next_new_points(data.points)) and refused.serving_ndcg > 0.3
    assert refused.anchor_ndcg == refused.serving_ndcg  # anchor is serving: scored once, same numbers
    same = gate(good, good, None, data.points, CFG)
    assert same.promote and same.diff_mean == 0.0 and same.candidate_ndcg == same.serving_ndcg
