"""`torch.export` backend: the user encoder as an ExportedProgram with a dynamic batch dimension.

The sequence length is fixed at `ModelConfig.max_len` (batches are always padded to it); the batch size is
dynamic (`torch.export.Dim`), so one program serves micro-batches of any size up to `max_batch`. The same
program is what the TensorRT backend compiles.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from model.backends.base import TorchBackend
from model.transformer import SeqBatch, SeqRecModel

__all__ = ["ExportedTorchBackend", "UserEncoder", "export_encoder"]


class UserEncoder(nn.Module):
    """`SeqRecModel.encode` with plain tensor arguments (what `torch.export` traces)."""

    def __init__(self, model: SeqRecModel) -> None:
        """Wrap `model` (shares its weights)."""
        super().__init__()
        self.model = model

    def forward(
        self, items: Tensor, types: Tensor, gaps: Tensor, mask: Tensor, query_text: Tensor
    ) -> tuple[Tensor, Tensor]:
        """(B, T) x4 + (B, T, D) -> user vectors (B, C), repeat bonus (B, T)."""
        text = query_text if self.model.config.text_tower else None
        return self.model.encode(SeqBatch(items, types, gaps, mask, text))


def example_inputs(model: SeqRecModel, batch: int, device: torch.device) -> tuple[Tensor, ...]:
    """Padded dummy inputs of `batch` users (one real event each)."""
    config = model.config
    t = config.max_len
    ints = torch.zeros((batch, t), dtype=torch.int64, device=device)
    mask = ints.clone()
    mask[:, -1] = 1
    text = torch.zeros((batch, t, config.text_dim if config.text_tower else 1), device=device)
    return ints, ints.clone(), ints.clone(), mask, text


def export_encoder(model: SeqRecModel, device: torch.device, max_batch: int = 4096) -> torch.export.ExportedProgram:
    """Export the user encoder (eval mode) with a dynamic batch dimension in [1, max_batch]."""
    encoder = UserEncoder(model.to(device).eval())
    batch = torch.export.Dim("batch", min=1, max=max_batch)
    shapes = {name: {0: batch} for name in ("items", "types", "gaps", "mask", "query_text")}
    # Trace with a batch of 2: a size-1 example would be specialised to 1.
    with torch.no_grad():
        return torch.export.export(encoder, example_inputs(model, 2, device), dynamic_shapes=shapes)


def batch_args(batch: SeqBatch, model: SeqRecModel, device: torch.device) -> tuple[Tensor, ...]:
    """The positional arguments of `UserEncoder` for `batch`."""
    b = batch.to(device)
    text = b.query_text
    if text is None:
        text = torch.zeros((*b.items.shape, 1), device=device)
    return b.items, b.types, b.gaps, b.mask, text


class ExportedTorchBackend(TorchBackend):
    """Runs the exported user encoder; the item table comes from the eager model once."""

    label = "exported"

    def __init__(self, model: SeqRecModel, device: torch.device | str = "cpu", max_batch: int = 4096) -> None:
        """Export `model` for `device` (takes a second or two on CPU)."""
        super().__init__(model, device)
        self.program = export_encoder(self.model, self._device, max_batch)
        self._module = self.program.module()

    def _encode(self, batch: SeqBatch) -> tuple[Tensor, Tensor]:
        users, copy = self._module(*batch_args(batch, self.model, self._device))
        return users, copy
