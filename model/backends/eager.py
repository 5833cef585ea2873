"""Eager PyTorch backend (CPU or CUDA): the reference every other backend is checked against."""

from __future__ import annotations

from model.backends.base import TorchBackend

__all__ = ["EagerTorchBackend"]


class EagerTorchBackend(TorchBackend):
    """Runs `SeqRecModel.encode_users` in inference mode; the item table is computed once (see `refresh`)."""

    label = "torch"
