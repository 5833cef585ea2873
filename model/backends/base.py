"""The `ScoringBackend` interface and `TorchBackend`, the part every torch backend shares.

`ScoringBackend` turns a padded batch into user vectors and holds the item table; `TorchBackend` keeps the
model on one device in eval mode with its item table, and runs `_encode` in inference mode.
"""

from __future__ import annotations

from typing import ClassVar, Protocol

import torch
from torch import Tensor

from model.transformer import SeqBatch, SeqRecModel

__all__ = ["ScoringBackend", "TorchBackend"]


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


class TorchBackend:
    """A `ScoringBackend` over a `SeqRecModel` on one device; subclasses change `_encode` and `_compute_table`."""

    label: ClassVar[str] = "torch"

    def __init__(self, model: SeqRecModel, device: torch.device | str = "cpu") -> None:
        """Args: the model (moved to `device` and put in eval mode), target device."""
        self._device = torch.device(device)
        self.model = model.to(self._device).eval()
        self._table = self._compute_table()

    @property
    def name(self) -> str:
        """Backend label."""
        return self.label

    @property
    def device(self) -> torch.device:
        """Device of the model and its outputs."""
        return self._device

    def _compute_table(self) -> Tensor:
        with torch.inference_mode():
            return self.model.item_table().detach()

    def refresh(self) -> None:
        """Recompute the item table after the model's weights or text rows changed.

        Only the table: an exported or compiled encoder keeps the weights it was built with.
        """
        self._table = self._compute_table()

    def _encode(self, batch: SeqBatch) -> tuple[Tensor, Tensor]:
        return self.model.encode(batch.to(self._device))

    def encode(self, batch: SeqBatch) -> tuple[Tensor, Tensor]:
        """User vectors (B, C) and repeat bonus (B, T), float32."""
        with torch.inference_mode():
            return self._encode(batch)

    def item_table(self) -> Tensor:
        """Item rows (V, C)."""
        return self._table
