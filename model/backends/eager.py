"""Eager PyTorch backend (CPU or CUDA): the reference every other backend is checked against.

With `cache_mb > 0` (the worker's `STREAMREC_ENCODER_CACHE_MB`) and on CPU, user states are reused across
micro-batches (`model.incremental`): a user's new event costs one position instead of a full re-encode; the
results are the same.
"""

from __future__ import annotations

import torch
from torch import Tensor

from model.backends.base import TorchBackend
from model.incremental import IncrementalEncoder
from model.transformer import SeqBatch, SeqRecModel

__all__ = ["EagerTorchBackend"]


class EagerTorchBackend(TorchBackend):
    """Runs `SeqRecModel.encode` in inference mode; the item table is computed once (see `refresh`)."""

    label = "torch"

    def __init__(self, model: SeqRecModel, device: torch.device | str = "cpu", cache_mb: int = 0) -> None:
        """Args: the model, target device, MiB of user states kept for incremental encoding (0: none)."""
        super().__init__(model, device)
        self.cache_mb = cache_mb
        # CPU only: the cache lives in host memory (on a GPU the forward is cheap and TensorRT is the engine)
        reuse = cache_mb > 0 and self._device.type == "cpu"
        self.incremental = IncrementalEncoder(self.model, cache_mb << 20) if reuse else None

    def _encode(self, batch: SeqBatch) -> tuple[Tensor, Tensor]:
        if self.incremental is None:
            return self.model.encode(batch.to(self._device))
        return self.incremental.encode(batch.to(self._device))
