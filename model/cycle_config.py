"""The knobs of one continual-learning cycle, free of torch: fine-tuning (`ContinualConfig`) and gate (`GateConfig`).

Kept apart from `model.continual` and `model.gate` (which re-export them) so that `streamrec learner` can build
its options from these defaults without importing torch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

__all__ = ["ContinualConfig", "GateConfig"]


@dataclass(frozen=True)
class ContinualConfig:
    """Knobs of one update cycle (CPU-cheap defaults)."""

    steps: int = 30  # fine-tuning steps per cycle
    batch_size: int = 64  # sequences per step
    lr: float = 1e-3  # AdamW learning rate
    weight_decay: float = 0.0  # no decay: a few steps should not shrink the whole table
    grad_clip: float = 1.0  # gradients are clipped to this norm ...
    max_grad_norm: float = 1e4  # ... but a pre-clip norm above this (or non-finite) discards the update
    max_loss: float = 1e3  # a loss above this (or non-finite) discards the update
    replay_fraction: float = 0.5  # share of each batch drawn from the replay reservoir (when it has data)
    reservoir_size: int = 5000  # sequences kept for replay
    holdout_fraction: float = 0.3  # newest share of a cycle's events held back for the gate
    growth: float = 0.25  # when spare rows run out, add this fraction of the capacity (at least 64 rows)
    # "auto": sampled above `model.train.SAMPLED_ABOVE` rows, full softmax below (the offline trainer's rule). A
    # full softmax step holds (P, V) logits and their gradient: ~280 MB each for 64 sequences x 50 positions x
    # 22 k rows, and most of the learner's CPU, which the workers on the same cores then lack.
    loss: Literal["softmax", "sampled", "auto"] = "auto"
    n_negatives: int = 1024  # distinct uniform negative rows per step (sampled loss)
    seed: int = 0


@dataclass(frozen=True)
class GateConfig:
    """Knobs of the gate."""

    alpha: float = 0.05  # one-sided level: refuse when the (1 - alpha) upper bound of cand - serving is < 0
    anchor_margin: float = 0.02  # refuse when mean cand NDCG@10 < mean anchor NDCG@10 - this (absolute)
    min_points: int = 20  # fewer next-new targets: no decision yet (data carried to the next cycle)
    max_points: int = 1000  # targets scored at most (newest kept)
    bootstrap_samples: int = 1000  # paired bootstrap resamples
    seed: int = 0  # bootstrap seed (same values + seed = same decision)
