"""One continual-learning cycle as a function: grow, fine-tune, judge as served. No Kafka, no store, no clock.

`run_cycle` takes the serving model (as workers serve it, `model.served_ranking.ServedModel`), one window of
the stream (`model.stream_buffer.CycleData`) and the replay reservoir, and returns what the learner needs to
act: the candidate as served, the gate's result and the fields of the cycle's log line. The learner
(`streams.learner.service`) reads the window from Kafka, calls this, and promotes, saves and publishes. The
only state it touches is the reservoir's sampling generator (`fine_tune` draws replay sequences from it);
adding the window to the reservoir is left to the caller, after the cycle.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from contracts import Item
from model.continual import ContinualConfig, ListsTop, ReplayReservoir, fine_tune, grow_vocabulary, resolve_loss
from model.gate import GateConfig, GateResult, gate
from model.scoring import ItemContext
from model.served_ranking import ServedModel, window_context
from model.stream_buffer import CycleData
from model.text_tower import TextEncoder

__all__ = ["CycleOutcome", "run_cycle"]

# Given the serving model's ranking and the window's item-side features: the anchor's ranking, or None.
AnchorFor = Callable[[ListsTop, ItemContext], ListsTop | None]


@dataclass(frozen=True, slots=True)
class CycleOutcome:
    """What one cycle found; `record` holds the fields of its log line (`learner.jsonl`)."""

    record: dict[str, Any]
    candidate: ServedModel | None = None  # the fine-tuned transformer as served; None: the update was discarded
    result: GateResult | None = None  # the gate's decision on the window's targets
    items: ItemContext | None = None  # the window's item-side features the gate ranked with
    steps: int = 0  # fine-tuning steps taken
    added: list[str] = field(default_factory=list)  # items given rows this cycle

    @property
    def promote(self) -> bool:
        """Whether the gate would promote the candidate."""
        return self.result is not None and self.result.promote


def run_cycle(
    base: ServedModel,
    data: CycleData,
    new_items: Sequence[str],
    catalog: Mapping[str, Item],
    encoder: TextEncoder | None,
    reservoir: ReplayReservoir,
    config: ContinualConfig,
    gate_config: GateConfig,
    anchor: AnchorFor | None = None,
) -> CycleOutcome:
    """Grow the vocabulary by `new_items`, fine-tune on `data.train` (with replay), then gate the candidate
    against `base` (and the anchor) on `data.points`, every model ranked as it is served.

    `encoder` initialises new rows from their text (None: from nothing but the model's own rows).
    """
    model, vocab, added = grow_vocabulary(base.model, base.vocab, new_items, catalog, encoder, config.growth)
    record: dict[str, Any] = {"new_items": len(added), "loss": resolve_loss(config, vocab)}
    phase = time.perf_counter()
    tuned = fine_tune(model, vocab, data.train, reservoir, config)
    record["fine_tune_seconds"], phase = round(time.perf_counter() - phase, 3), time.perf_counter()
    record |= {"steps": tuned.steps, "loss_first": tuned.loss_first, "loss_last": tuned.loss_last}
    record["max_grad_norm"] = tuned.max_grad_norm
    if tuned.model is None:
        record["reason"] = f"update discarded: {tuned.reason}"
        return CycleOutcome(record, steps=tuned.steps, added=added)
    # Every model is judged as workers serve it (inside its two-stage model), on the same item-side features.
    items = window_context(data.train, data.users, catalog)
    candidate = base.with_transformer(tuned.model, vocab)
    serving = base.ranker(items)
    result = gate(
        candidate.ranker(items), serving, anchor(serving, items) if anchor else None, data.points, gate_config
    )
    record |= {"candidate_ndcg": result.candidate_ndcg, "serving_ndcg": result.serving_ndcg,
               "anchor_ndcg": result.anchor_ndcg, "gate": result.metrics(), "reason": result.reason}  # fmt: skip
    record["gate_seconds"] = round(time.perf_counter() - phase, 3)
    return CycleOutcome(record, candidate, result, items, tuned.steps, added)
