"""Serving backends for the transformer: eager PyTorch, `torch.export`, Torch-TensorRT; and how one is chosen.

`auto` picks TensorRT only when a CUDA device is present and `torch_tensorrt` imports; otherwise eager
PyTorch (on CUDA if present, else CPU). Asking for `tensorrt` where it cannot run is an error, never a silent
fallback.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import torch

from contracts import ModelError
from model.backends.base import ScoringBackend
from model.backends.eager import EagerTorchBackend
from model.backends.exported import ExportedTorchBackend
from model.backends.tensorrt import TensorRTBackend, tensorrt_available
from model.transformer import SeqRecModel

__all__ = [
    "BackendName",
    "EagerTorchBackend",
    "ExportedTorchBackend",
    "ScoringBackend",
    "TensorRTBackend",
    "choose_backend",
    "make_backend",
    "resolve_device",
    "tensorrt_available",
]

BackendName = Literal["auto", "torch", "exported", "tensorrt"]


def resolve_device(device: str) -> torch.device:
    """`auto` -> cuda if available else cpu; `cuda` without a device is an error."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    resolved = torch.device(device)
    if resolved.type == "cuda" and not torch.cuda.is_available():
        msg = "device 'cuda' requested but no CUDA device is available"
        raise ModelError(msg)
    return resolved


def choose_backend(backend: str, device: torch.device) -> str:
    """The concrete backend for a request: `torch`, `exported` or `tensorrt`.

    Raises:
        ModelError: unknown name, or `tensorrt` requested where it cannot run.
    """
    if backend not in ("auto", "torch", "exported", "tensorrt"):
        msg = f"unknown backend {backend!r} (auto, torch, exported, tensorrt)"
        raise ModelError(msg)
    usable, reason = tensorrt_available()
    if backend == "auto":
        return "tensorrt" if usable and device.type == "cuda" else "torch"
    if backend == "tensorrt" and not (usable and device.type == "cuda"):
        msg = f"backend 'tensorrt' requested but unavailable: {reason if not usable else 'device is not CUDA'}"
        raise ModelError(msg)
    return backend


def make_backend(
    model: SeqRecModel, backend: str, device: torch.device, model_dir: Path, sha256: str, cache_mb: int = 0
) -> ScoringBackend:
    """Build the backend `choose_backend(backend, device)` names, for a loaded model; `cache_mb`: the eager
    backend's incremental-encoding budget (`model.incremental`; compiled engines encode every row)."""
    name = choose_backend(backend, device)
    if name == "tensorrt":
        return TensorRTBackend(model, model_dir, sha256, device)
    if name == "exported":
        return ExportedTorchBackend(model, device)
    return EagerTorchBackend(model, device, cache_mb)
