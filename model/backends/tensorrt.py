"""Torch-TensorRT backend (CUDA only): the exported user encoder compiled to an fp16 TensorRT engine.

Path: `torch.export` (dynamic batch) -> `torch_tensorrt.dynamo.compile(..., enabled_precisions={torch.float16})`.
The compiled program is cached next to the model as `trt-<sha256[:16]>-<gpu>.ep`, keyed by the checksum of
`model.safetensors`, so a new model never reuses an old engine. The item table stays a torch fp16 tensor on the
GPU. Not exercised on this project's CPU-only CI; `tests/unit/test_backends.py` has a `gpu` test for it.
"""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from contracts import ModelError
from model.backends.exported import batch_args, export_encoder
from model.transformer import SeqBatch, SeqRecModel

__all__ = ["TensorRTBackend", "tensorrt_available"]


def tensorrt_available() -> tuple[bool, str]:
    """(usable, reason): needs a CUDA device and an importable `torch_tensorrt`."""
    if not torch.cuda.is_available():
        return False, "no CUDA device"
    if importlib.util.find_spec("torch_tensorrt") is None:
        return False, "torch_tensorrt not installed"
    return True, "ok"


def engine_path(model_dir: Path, sha256: str, device: torch.device) -> Path:
    """Cache file of the compiled engine for this model checksum and GPU model."""
    gpu = re.sub(r"[^A-Za-z0-9]+", "-", torch.cuda.get_device_name(device)).strip("-").lower()
    return Path(model_dir) / f"trt-{sha256[:16]}-{gpu}.ep"


class TensorRTBackend:
    """Runs the user encoder as a TensorRT engine (fp16) with a dynamic batch in [1, max_batch]."""

    def __init__(
        self,
        model: SeqRecModel,
        model_dir: Path,
        sha256: str,
        device: torch.device | str = "cuda",
        max_batch: int = 1024,
        opt_batch: int = 64,
    ) -> None:
        """Load the cached engine for `sha256`, or build and cache it (minutes on first use)."""
        usable, reason = tensorrt_available()
        if not usable:
            msg = f"TensorRT backend unavailable: {reason}"
            raise ModelError(msg)
        import torch_tensorrt

        self._device = torch.device(device)
        self._model = model.to(self._device).eval()
        path = engine_path(model_dir, sha256, self._device)
        if path.is_file():
            self._module: Any = torch_tensorrt.load(str(path)).module()
        else:
            self._module = self._compile(torch_tensorrt, path, max_batch, opt_batch)
        with torch.inference_mode():
            self._table = self._model.item_table().detach().half()

    def _compile(self, trt: Any, path: Path, max_batch: int, opt_batch: int) -> Any:
        program = export_encoder(self._model, self._device, max_batch)
        t = self._model.config.max_len
        text_dim = self._model.config.text_dim if self._model.config.text_tower else 1
        shapes = [(t,)] * 4 + [(t, text_dim)]
        dtypes = [torch.int64] * 4 + [torch.float32]
        inputs = [
            trt.Input(min_shape=(1, *s), opt_shape=(opt_batch, *s), max_shape=(max_batch, *s), dtype=d)
            for s, d in zip(shapes, dtypes, strict=True)
        ]
        compiled = trt.dynamo.compile(program, arg_inputs=inputs, enabled_precisions={torch.float16})
        example = [torch.zeros((2, *s), dtype=d, device=self._device) for s, d in zip(shapes, dtypes, strict=True)]
        example[3][:, -1] = 1
        trt.save(compiled, str(path), arg_inputs=example)
        return compiled

    @property
    def name(self) -> str:
        """Backend label."""
        return "tensorrt"

    @property
    def device(self) -> torch.device:
        """The CUDA device."""
        return self._device

    def encode(self, batch: SeqBatch) -> tuple[Tensor, Tensor]:
        """User vectors (B, C) and repeat bonus (B, T), fp16 -> float32."""
        with torch.inference_mode():
            users, copy = self._module(*batch_args(batch, self._model, self._device))
            return users.float(), copy.float()

    def item_table(self) -> Tensor:
        """Item rows (V, C) in fp16 (the scorer casts user vectors to match)."""
        return self._table
