"""The `ScoringBackend` interface: turns a padded batch into user vectors and holds the item table."""

from __future__ import annotations

from typing import Protocol

import torch
from torch import Tensor

from model.transformer import SeqBatch

__all__ = ["ScoringBackend"]


class ScoringBackend(Protocol):
    """Runs the transformer's user encoder on one device; the scorer ranks with `item_table()`."""

    @property
    def name(self) -> str:
        """Backend label (`torch`, `exported`, `tensorrt`), for logs and metrics."""
        ...

    @property
    def device(self) -> torch.device:
        """Where `encode` returns its vectors and the item table lives."""
        ...

    def encode(self, batch: SeqBatch) -> tuple[Tensor, Tensor]:
        """User vectors (B, C) and the repeat bonus of each input event's item (B, T), float32 on `device`."""
        ...

    def item_table(self) -> Tensor:
        """Item rows in model space, shape (V, C), on `device`."""
        ...
