"""Model directory of the two-stage model: the transformer's files plus the counting parts and the ranker.

Layout (one verified `model.artifacts` directory; every file's sha256 is in `manifest.json`)::

    model.safetensors    transformer weights (as for a transformer alone)
    parts.safetensors    training sequences of the counting parts (`CountParts.to_tensors`)
    ranker.safetensors   ranker weights, feature standardisation, config (`model.ranker.save_ranker`)
    manifest.json        `two_stage`: depth, feature names; `extra_files`: the two files above with sha256

`load_two_stage` rebuilds the `TwoStageScorer` around an already loaded `TorchScorer` (`model.artifacts.
load_scorer` calls it when the manifest has `two_stage`), so the worker and `streamrec evaluate --model` load
both kinds through one function.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from safetensors import safe_open
from safetensors.torch import save_file

from contracts import ModelError
from model.artifacts import Manifest, file_sha256, save_model
from model.count_parts import CountParts
from model.rank_features import FEATURES
from model.ranker import RANKER_FILE, load_ranker, save_ranker
from model.torch_scorer import TorchScorer
from model.train_two_stage import TwoStageResult
from model.two_stage import CandidateBuilder, TwoStageScorer

__all__ = ["PARTS_FILE", "load_two_stage", "save_two_stage"]

PARTS_FILE = "parts.safetensors"


def save_two_stage(
    out_dir: Path, result: TwoStageResult, *, data: dict[str, Any] | None = None, parent_version: str | None = None
) -> Manifest:
    """Write every file of `result` into `out_dir` and the manifest last (atomic renames, as `save_model`)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tensors, meta = result.parts.to_tensors()
    save_file(tensors, str(out / PARTS_FILE), metadata=meta)
    save_ranker(out / RANKER_FILE, result.ranker, FEATURES)
    settings = {"depth": result.depth, "features": list(FEATURES)}
    return save_model(
        out,
        result.transformer.model,
        result.transformer.vocab,
        data=data,
        metrics=result.metrics,
        training=result.training,
        parent_version=parent_version,
        extra_files=(PARTS_FILE, RANKER_FILE),
        two_stage=settings,
    )


def load_two_stage(directory: Path, manifest: Manifest, transformer: TorchScorer) -> TwoStageScorer:
    """The two-stage scorer of a verified directory around its loaded transformer.

    Raises:
        ModelError: the manifest lacks the two-stage files or they do not fit this code (`ChecksumMismatch`
            for a file whose sha256 differs).
    """
    settings = manifest.two_stage or {}
    if PARTS_FILE not in manifest.extra_files or RANKER_FILE not in manifest.extra_files:
        msg = f"{directory}: a two-stage manifest must list {PARTS_FILE} and {RANKER_FILE}"
        raise ModelError(msg)
    parts_path = Path(directory) / PARTS_FILE
    if file_sha256(parts_path) != manifest.extra_files[PARTS_FILE]:  # checked again: the file may have changed
        msg = f"{parts_path}: sha256 differs from the manifest"
        raise ModelError(msg)
    with safe_open(str(parts_path), framework="pt") as handle:
        tensors = {name: handle.get_tensor(name) for name in handle.keys()}  # noqa: SIM118 (safe_open API)
        meta = handle.metadata() or {}
    parts = CountParts.from_tensors(tensors, meta)
    ranker = load_ranker(Path(directory) / RANKER_FILE, manifest.extra_files[RANKER_FILE], FEATURES)
    builder = CandidateBuilder(transformer, parts, int(settings.get("depth", 50)))
    return TwoStageScorer(builder, ranker, manifest.version)
