"""Model artifacts: `model.safetensors` + `manifest.json`, saved atomically and verified on load.

Manifest: format and version, model version (`transformer-<sha12>`), config, item vocabulary (row order),
data fingerprint, metrics, training settings, sha256 of the weights file. Loading checks, in order: the
weights file is safetensors (pickle formats `.bin/.pt/.pth/.pkl/.ckpt` are refused, never opened), its sha256
(`ChecksumMismatch`), the config, the vocabulary against the config, and every tensor's name and shape against
a freshly built model (`ModelError`). Nothing is unpickled.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import torch
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError
from safetensors.torch import load_file, save_file

from contracts import ChecksumMismatch, ModelError
from model.backends import make_backend, resolve_device
from model.sequences import QueryCache
from model.text_tower import MiniLMEncoder, TextEncoder
from model.torch_scorer import TorchScorer
from model.transformer import ModelConfig, SeqRecModel
from model.vocab import ItemVocab

if TYPE_CHECKING:
    from model.two_stage import TwoStageScorer

__all__ = [
    "MANIFEST_FILE",
    "WEIGHTS_FILE",
    "LoadedModel",
    "Manifest",
    "file_sha256",
    "load_model",
    "load_scorer",
    "save_model",
]

WEIGHTS_FILE = "model.safetensors"
MANIFEST_FILE = "manifest.json"
FORMAT = "streamrec-transformer"
_PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt")


class Manifest(BaseModel):
    """`manifest.json` of a model directory."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    format: Literal["streamrec-transformer"] = "streamrec-transformer"
    format_version: Literal[1] = 1
    version: str = Field(min_length=1, max_length=128, description="transformer-<first 12 hex of sha256>")
    created_at: AwareDatetime = Field(description="Wall-clock time the files were written.")
    parent_version: str | None = Field(default=None, description="Version it was fine-tuned from.")
    config: dict[str, Any] = Field(description="`ModelConfig` fields.")
    items: list[str] = Field(description="Item ids in vocabulary row order (row 1 first).")
    weights_file: str = Field(default=WEIGHTS_FILE, description="Weights file name (safetensors only).")
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$", description="sha256 of the weights file.")
    data: dict[str, Any] = Field(default_factory=dict, description="Fingerprint of the training data.")
    metrics: dict[str, float] = Field(default_factory=dict, description="Validation metrics, e.g. ndcg@10.")
    training: dict[str, Any] = Field(default_factory=dict, description="Training settings (loss, epochs, seed).")
    extra_files: dict[str, str] = Field(
        default_factory=dict, description="Further files of the model (name -> sha256), e.g. the two-stage parts."
    )
    two_stage: dict[str, Any] | None = Field(
        default=None, description="Two-stage settings (`model.two_stage_store`); None for a transformer alone."
    )


@dataclass(frozen=True, slots=True)
class LoadedModel:
    """A verified model directory."""

    model: SeqRecModel
    vocab: ItemVocab
    manifest: Manifest
    path: Path


def file_sha256(path: Path) -> str:
    """Hex sha256 of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _write_atomically(path: Path, write: Any) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    write(tmp)
    os.chmod(tmp, 0o644)  # servers and learners may run as other users
    os.replace(tmp, path)


def save_model(
    out_dir: Path,
    model: SeqRecModel,
    vocab: ItemVocab,
    *,
    data: dict[str, Any] | None = None,
    metrics: dict[str, float] | None = None,
    training: dict[str, Any] | None = None,
    parent_version: str | None = None,
    extra_files: Sequence[str] = (),
    two_stage: dict[str, Any] | None = None,
) -> Manifest:
    """Write `model.safetensors` then `manifest.json` into `out_dir` (each via an atomic rename).

    `extra_files` (already in `out_dir`) are checksummed into the manifest; the version then hashes them too
    (`two-stage-<sha12>` with `two_stage` settings), so a new ranker over the same weights is a new version.
    """
    if vocab.capacity != model.config.n_items:
        msg = f"vocabulary capacity {vocab.capacity} != model rows {model.config.n_items}"
        raise ModelError(msg)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    weights = out / WEIGHTS_FILE
    state = {name: t.detach().cpu().contiguous() for name, t in model.state_dict().items()}
    _write_atomically(weights, lambda p: save_file(state, str(p), metadata={"format": FORMAT}))
    sha = file_sha256(weights)
    extras = {name: file_sha256(out / name) for name in extra_files}
    version = f"transformer-{sha[:12]}"
    if extras or two_stage is not None:
        combined = hashlib.sha256("".join([sha, *(extras[n] for n in sorted(extras))]).encode()).hexdigest()
        version = f"two-stage-{combined[:12]}"
    manifest = Manifest(
        version=version,
        created_at=datetime.now(UTC),
        parent_version=parent_version,
        config=dataclasses.asdict(model.config),
        items=vocab.ids,
        sha256=sha,
        data=data or {},
        metrics=metrics or {},
        training=training or {},
        extra_files=extras,
        two_stage=two_stage,
    )
    _write_atomically(out / MANIFEST_FILE, lambda p: p.write_text(manifest.model_dump_json(indent=2)))
    return manifest


def _read_manifest(directory: Path) -> Manifest:
    path = directory / MANIFEST_FILE
    if not path.is_file():
        msg = f"{directory} is not a model directory: {MANIFEST_FILE} not found"
        raise ModelError(msg)
    try:
        return Manifest.model_validate_json(path.read_bytes())
    except ValidationError as exc:
        msg = f"{path}: invalid manifest: {exc.errors()[0]['loc']}: {exc.errors()[0]['msg']}"
        raise ModelError(msg) from exc


def _check_shapes(tensors: dict[str, torch.Tensor], model: SeqRecModel, where: Path) -> None:
    expected = {name: tuple(t.shape) for name, t in model.state_dict().items()}
    found = {name: tuple(t.shape) for name, t in tensors.items()}
    problems = [f"missing {n}" for n in sorted(expected.keys() - found.keys())]
    problems += [f"unexpected {n}" for n in sorted(found.keys() - expected.keys())]
    problems += [
        f"{n}: {found[n]} != {expected[n]}" for n in sorted(expected.keys() & found.keys()) if found[n] != expected[n]
    ]
    if problems:
        msg = f"{where}: weights do not match the manifest's config: " + "; ".join(problems[:5])
        raise ModelError(msg)


def _check_extra_files(directory: Path, manifest: Manifest) -> None:
    for name, sha in manifest.extra_files.items():
        path = directory / name
        if path.suffix != ".safetensors" or path.parent.resolve() != directory.resolve() or not path.is_file():
            msg = f"{directory}: extra file {name!r} is missing or not a safetensors file in the directory"
            raise ModelError(msg)
        actual = file_sha256(path)
        if actual != sha:
            msg = f"{path}: sha256 {actual} != manifest {sha}"
            raise ChecksumMismatch(msg)


def load_model(model_dir: Path) -> LoadedModel:
    """Load and verify a model directory (see the module docstring for the checks).

    Raises:
        ChecksumMismatch: the weights file's sha256 differs from the manifest.
        ModelError: anything else that makes the directory unservable.
    """
    directory = Path(model_dir)
    manifest = _read_manifest(directory)
    weights = directory / manifest.weights_file
    if weights.suffix != ".safetensors" or weights.name.endswith(_PICKLE_SUFFIXES):
        msg = f"refusing to load {weights.name}: only .safetensors weights are accepted (never pickle)"
        raise ModelError(msg)
    if weights.parent.resolve() != directory.resolve() or not weights.is_file():
        msg = f"weights file {manifest.weights_file!r} not found in {directory}"
        raise ModelError(msg)
    actual = file_sha256(weights)
    if actual != manifest.sha256:
        msg = f"{weights}: sha256 {actual} != manifest {manifest.sha256}"
        raise ChecksumMismatch(msg)
    _check_extra_files(directory, manifest)
    try:
        config = ModelConfig(**manifest.config)
    except (TypeError, ValueError) as exc:
        msg = f"{directory}: invalid model config: {exc}"
        raise ModelError(msg) from exc
    vocab = ItemVocab(manifest.items, capacity=config.n_items)
    model = SeqRecModel(config)
    tensors = load_file(str(weights))
    _check_shapes(tensors, model, weights)
    model.load_state_dict(tensors, strict=True)
    return LoadedModel(model.eval(), vocab, manifest, directory)


def load_scorer(
    model_dir: Path,
    *,
    backend: str = "auto",
    device: str = "auto",
    text_encoder: TextEncoder | None = None,
    max_batch: int = 256,
    encoder_cache_mb: int = 0,
) -> TorchScorer | TwoStageScorer:
    """A ready `Scorer` for a model directory (used by `streamrec evaluate --model` and the worker).

    A two-stage directory (manifest `two_stage`) gives a `model.two_stage.TwoStageScorer` around the transformer.

    Args:
        model_dir: Directory with `manifest.json` + `model.safetensors`.
        backend: `auto` (TensorRT on CUDA when importable, else torch), `torch`, `exported`, `tensorrt`.
        device: `auto`, `cpu` or `cuda`.
        text_encoder: Search-query embedder for text-tower models (default: all-MiniLM-L6-v2, loaded lazily
            at the first search event).
        max_batch: Users per encoder forward.
        encoder_cache_mb: MiB of user states the eager backend reuses (`model.incremental`; 0: none).
    """
    loaded = load_model(model_dir)
    resolved = resolve_device(device)
    engine = make_backend(loaded.model, backend, resolved, loaded.path, loaded.manifest.sha256, encoder_cache_mb)
    queries = None
    if loaded.model.config.text_tower:
        queries = QueryCache(text_encoder or MiniLMEncoder())
    scorer = TorchScorer(engine, loaded.vocab, loaded.model.config, loaded.manifest.version, queries, max_batch)
    if loaded.manifest.two_stage is None:
        return scorer
    from model.two_stage_store import load_two_stage  # local: the store module imports this one

    return load_two_stage(loaded.path, loaded.manifest, scorer)
