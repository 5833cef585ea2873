"""Eager PyTorch backend (CPU or CUDA): the reference every other backend is checked against."""

from __future__ import annotations

import torch
from torch import Tensor

from model.transformer import SeqBatch, SeqRecModel

__all__ = ["EagerTorchBackend"]


class EagerTorchBackend:
    """Runs `SeqRecModel.encode_users` in inference mode; the item table is computed once (see `refresh`)."""

    def __init__(self, model: SeqRecModel, device: torch.device | str = "cpu") -> None:
        """Args: the model (moved to `device` and put in eval mode), target device."""
        self._device = torch.device(device)
        self.model = model.to(self._device).eval()
        self._table = self._compute_table()

    @property
    def name(self) -> str:
        """Backend label."""
        return "torch"

    @property
    def device(self) -> torch.device:
        """Device of the model and its outputs."""
        return self._device

    def _compute_table(self) -> Tensor:
        with torch.inference_mode():
            return self.model.item_table().detach()

    def refresh(self) -> None:
        """Recompute the item table after the model's weights or text rows changed."""
        self._table = self._compute_table()

    def encode(self, batch: SeqBatch) -> tuple[Tensor, Tensor]:
        """User vectors (B, C) and repeat bonus (B, T)."""
        with torch.inference_mode():
            return self.model.encode(batch.to(self._device))

    def item_table(self) -> Tensor:
        """Item rows (V, C)."""
        return self._table
