"""Torch-TensorRT backend (CUDA only): the exported user encoder compiled to an fp16 TensorRT engine.

Path: `torch.export` (dynamic batch) -> `torch_tensorrt.dynamo.compile(..., enabled_precisions={torch.float16})`.
The compiled program is cached next to the model, named by everything that shapes it (`engine_path`: version,
weights checksum, GPU, batch profile, precision, torch_tensorrt release), so a new model or other settings never
reuse an old engine. The cache is written to a temporary file and renamed into place (`write_atomically`), so
another worker never loads half an engine; a worker that cannot write it (read-only or full volume) logs a
warning and serves the engine it compiled, and an unreadable cached engine is compiled again. The item table
stays a torch fp16 tensor on the GPU. Not exercised on this project's CPU-only CI; `tests/unit/test_backends.py`
has a `gpu` test for it and CPU tests for the cache naming and writing.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import importlib.util
import logging
import os
import re
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from contracts import ModelError
from model.backends.base import TorchBackend
from model.backends.exported import batch_args, export_encoder
from model.transformer import SeqBatch, SeqRecModel

__all__ = ["TensorRTBackend", "engine_path", "tensorrt_available", "write_atomically"]

log = logging.getLogger(__name__)


def tensorrt_available() -> tuple[bool, str]:
    """(usable, reason): needs a CUDA device and an importable `torch_tensorrt`."""
    if not torch.cuda.is_available():
        return False, "no CUDA device"
    if importlib.util.find_spec("torch_tensorrt") is None:
        return False, "torch_tensorrt not installed"
    return True, "ok"


def engine_path(
    model_dir: Path, sha256: str, gpu: str, max_batch: int, opt_batch: int, precision: str = "fp16", trt: str = ""
) -> Path:
    """Cache file of the compiled engine: one per version, weights, GPU model and build settings."""
    parts = [Path(model_dir).name, sha256[:16], gpu, f"b{opt_batch}-{max_batch}", precision, f"trt{trt or 'na'}"]
    safe = [re.sub(r"[^A-Za-z0-9.]+", "-", p).strip("-").lower() for p in parts]
    return Path(model_dir) / f"trt-{'_'.join(safe)}.ep"


def write_atomically(path: Path, write: Callable[[Path], None]) -> bool:
    """`write(tmp)` into a temporary file next to `path`, then rename it into place; False (logged) if it fails.

    Readers see either no file or a complete one; a failed write leaves nothing behind.
    """
    tmp = path.with_name(f".{path.stem}.tmp-{uuid.uuid4().hex}{path.suffix}")
    try:
        write(tmp)
        os.replace(tmp, path)
    except (OSError, RuntimeError) as exc:  # RuntimeError: torch's zip writer on a full disk
        log.warning("could not cache %s (%s); serving without the cache", path, exc)
        return False
    finally:
        with contextlib.suppress(OSError):  # nothing to remove, or a directory we cannot even list
            tmp.unlink(missing_ok=True)
    return True


class TensorRTBackend(TorchBackend):
    """Runs the user encoder as a TensorRT engine (fp16) with a dynamic batch in [1, max_batch]."""

    label = "tensorrt"

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

        super().__init__(model, device)
        gpu = torch.cuda.get_device_name(self._device)
        release = importlib.metadata.version("torch_tensorrt")
        path = engine_path(model_dir, sha256, gpu, max_batch, opt_batch, "fp16", release)
        self._module: Any = None
        if path.is_file():
            try:
                self._module = torch_tensorrt.load(str(path)).module()
            except Exception:  # noqa: BLE001 (any unreadable cache: compile again, the model itself was verified)
                log.warning("cached engine %s unreadable; compiling again", path, exc_info=True)
        if self._module is None:
            self._module = self._compile(torch_tensorrt, path, max_batch, opt_batch)

    def _compute_table(self) -> Tensor:
        with torch.inference_mode():
            return self.model.item_table().detach().half()

    def _compile(self, trt: Any, path: Path, max_batch: int, opt_batch: int) -> Any:
        program = export_encoder(self.model, self._device, max_batch)
        t = self.model.config.max_len
        text_dim = self.model.config.text_dim if self.model.config.text_tower else 1
        shapes = [(t,)] * 4 + [(t, text_dim)]
        dtypes = [torch.int64] * 4 + [torch.float32]
        inputs = [
            trt.Input(min_shape=(1, *s), opt_shape=(opt_batch, *s), max_shape=(max_batch, *s), dtype=d)
            for s, d in zip(shapes, dtypes, strict=True)
        ]
        compiled = trt.dynamo.compile(program, arg_inputs=inputs, enabled_precisions={torch.float16})
        example = [torch.zeros((2, *s), dtype=d, device=self._device) for s, d in zip(shapes, dtypes, strict=True)]
        example[3][:, -1] = 1
        write_atomically(path, lambda tmp: trt.save(compiled, str(tmp), arg_inputs=example))
        return compiled

    def _encode(self, batch: SeqBatch) -> tuple[Tensor, Tensor]:
        users, copy = self._module(*batch_args(batch, self.model, self._device))
        return users.float(), copy.float()  # fp16 -> float32

    def item_table(self) -> Tensor:
        """Item rows (V, C) in fp16 (the scorer casts user vectors to match)."""
        return self._table
