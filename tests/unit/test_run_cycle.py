"""`model.continual.run_cycle`, the learner's gate-and-promote decision, on hand-made rankings (no Kafka, no store)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

import pytest
import torch

from contracts import EventType
from model.continual import ContinualConfig, CycleInputs, ListsTop, Servable, run_cycle
from model.gate import GateConfig
from model.scoring import ItemContext, PastEvent, UserState
from model.splits import TestPoint
from model.stream_buffer import CycleData
from model.transformer import ModelConfig, SeqRecModel
from model.vocab import ItemVocab

torch.set_num_threads(1)
T0 = datetime(2024, 1, 1, tzinfo=UTC)
ITEMS = [f"i{j}" for j in range(10)]
USERS = [f"u{n}" for n in range(12)]
TARGET = {u: ITEMS[(n + 1) % 10] for n, u in enumerate(USERS)}  # each user's held-back next item
HIT = {u: [TARGET[u], *(i for i in ITEMS if i != TARGET[u])] for u in USERS}  # target first: NDCG@10 = 1
MISS = {u: [i for i in ITEMS if i != TARGET[u]] for u in USERS}  # target never listed: NDCG@10 = 0
GATE = GateConfig(min_points=6, bootstrap_samples=300, anchor_margin=0.02)
TUNE = ContinualConfig(steps=2, batch_size=4)


@dataclass(frozen=True)
class Lists:
    """A ranker with fixed lists per user."""

    lists: Mapping[str, list[str]]

    def top(self, states: Sequence[UserState], k: int = 10) -> list[list[str]]:
        return [list(self.lists[s.user_id][:k]) for s in states]


@dataclass(frozen=True)
class Fake:
    """A served version whose rankings are given; its fine-tuned copy ranks with `tuned`."""

    model: SeqRecModel
    vocab: ItemVocab
    lists: Mapping[str, list[str]]
    tuned: Mapping[str, list[str]]

    def with_transformer(self, model: SeqRecModel, vocab: ItemVocab) -> Servable:
        return Fake(model, vocab, self.tuned, self.tuned)

    def ranker(self, items: ItemContext) -> ListsTop:
        return Lists(self.lists)


def _base(serving: Mapping[str, list[str]], candidate: Mapping[str, list[str]]) -> Fake:
    torch.manual_seed(0)
    config = ModelConfig(n_items=16, max_len=4, d_model=8, n_heads=2, n_layers=1, dropout=0.0)
    return Fake(SeqRecModel(config), ItemVocab(ITEMS, capacity=16), serving, candidate)


def _event(n: int, item: str) -> PastEvent:
    return PastEvent(event_id=f"e{n}-{item}", item_id=item, type=EventType.VIEW, ts=T0 + timedelta(minutes=n))


def _window(users: Sequence[str] = USERS) -> CycleData:
    """Per user: a 3-event training sequence, then one held-back next-new target."""
    train = [tuple(_event(k, ITEMS[(n + k + 7) % 10]) for k in range(3)) for n, _ in enumerate(users)]
    points = [
        TestPoint(UserState(u, events=(_event(3, ITEMS[n % 10]),)), TARGET[u], EventType.VIEW)
        for n, u in enumerate(users)
    ]
    return CycleData(train, list(users), points, 4 * len(users), list(ITEMS), T0, T0 + timedelta(minutes=3))


def test_a_better_candidate_is_promoted() -> None:
    decision = run_cycle(_base(MISS, HIT), _window(), CycleInputs("v1"), TUNE, GATE)
    assert decision.promote and decision.reason.startswith("not worse"), decision.reason
    assert decision.gate is not None and decision.gate.points == len(USERS)
    assert decision.metrics["ndcg@10"] == 1.0 and decision.metrics["serving_ndcg@10"] == 0.0
    assert decision.record["candidate_ndcg"] == 1.0 and decision.record["steps"] == TUNE.steps
    assert isinstance(decision.candidate, Fake) and decision.candidate.lists is HIT
    assert not decision.carry


def test_a_significantly_worse_candidate_is_refused() -> None:
    decision = run_cycle(_base(HIT, MISS), _window(), CycleInputs("v1"), TUNE, GATE)
    assert not decision.promote and decision.reason.startswith("significantly worse than serving")
    assert decision.gate is not None and decision.gate.diff_high < 0.0
    assert decision.record["reason"] == decision.reason and not decision.carry


def test_a_tie_is_promoted_as_not_worse() -> None:
    decision = run_cycle(_base(HIT, HIT), _window(), CycleInputs("v1"), TUNE, GATE)
    assert decision.promote and decision.reason.startswith("not worse")
    assert decision.gate is not None and decision.gate.diff_mean == 0.0 == decision.gate.diff_low


def test_a_tie_with_serving_below_the_anchor_is_refused() -> None:
    anchor = _base(HIT, HIT)  # the last full train ranked better than serving and candidate
    inputs = CycleInputs("v2", anchor_version="v1", reference={"v1": anchor}.__getitem__)
    decision = run_cycle(_base(MISS, MISS), _window(), inputs, TUNE, GATE)
    assert not decision.promote and decision.reason.startswith("worse than the anchor by more than 0.02")
    assert decision.record["anchor_version"] == "v1" and decision.record["anchor_ndcg"] == 1.0


def test_the_anchor_and_frozen_reference_reuse_the_base_when_they_are_it() -> None:
    def never(version: str) -> Servable:
        raise AssertionError(version)

    inputs = CycleInputs("v1", anchor_version="v1", frozen_version="v1", reference=never)
    decision = run_cycle(_base(MISS, HIT), _window(), inputs, TUNE, GATE)
    assert decision.promote
    assert decision.record["anchor_ndcg"] == decision.record["serving_ndcg"] == decision.record["frozen_ndcg"] == 0.0


def test_a_frozen_reference_is_scored_on_the_gate_targets() -> None:
    inputs = CycleInputs("v2", frozen_version="v0", reference={"v0": _base(HIT, HIT)}.__getitem__)
    decision = run_cycle(_base(MISS, MISS), _window(), inputs, TUNE, GATE)
    assert decision.record["frozen_version"] == "v0" and decision.record["frozen_ndcg"] == 1.0


def test_too_few_targets_is_no_decision_and_carries_the_users() -> None:
    decision = run_cycle(_base(MISS, HIT), _window(USERS[:3]), CycleInputs("v1"), TUNE, GATE)
    assert not decision.promote and decision.carry
    assert decision.reason == "only 3 next-new held-back targets (< 6)" and "frozen_ndcg" not in decision.record


def test_an_exploding_update_is_discarded_before_the_gate() -> None:
    tune = replace(TUNE, max_grad_norm=1e-12)
    decision = run_cycle(_base(MISS, HIT), _window(), CycleInputs("v1"), tune, GATE)
    assert not decision.promote and decision.reason.startswith("update discarded: ")
    assert decision.candidate is None and decision.gate is None and decision.metrics == {}
    assert "gradient norm" in decision.record["reason"] and not decision.carry


def test_new_catalog_items_get_rows_in_the_candidate_only() -> None:
    base = _base(MISS, HIT)
    decision = run_cycle(base, _window(), CycleInputs("v1", new_items=["n1", "i0"]), TUNE, GATE)
    assert decision.record["new_items"] == 1
    assert isinstance(decision.candidate, Fake) and "n1" in decision.candidate.vocab and "n1" not in base.vocab


def test_a_missing_reference_loader_is_an_error() -> None:
    with pytest.raises(ValueError, match="no `reference` loader"):
        run_cycle(_base(MISS, HIT), _window(), CycleInputs("v2", anchor_version="v1"), TUNE, GATE)
