"""Serving backends: selection logic, `torch.export` with a dynamic batch vs eager, TensorRT on GPU only."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import torch

import model.backends as backends
from contracts import EventType, ModelError
from model.artifacts import load_model, save_model
from model.backends import EagerTorchBackend, ExportedTorchBackend, choose_backend, tensorrt_available
from model.backends.tensorrt import engine_path, write_atomically
from model.scoring import ItemContext, PastEvent, UserState
from model.sequences import batch_from_states
from model.torch_scorer import TorchScorer
from model.transformer import ModelConfig, SeqRecModel
from model.vocab import ItemVocab

torch.set_num_threads(1)
CPU = torch.device("cpu")
CUDA = torch.device("cuda")


def _model() -> tuple[SeqRecModel, ItemVocab]:
    torch.manual_seed(0)
    config = ModelConfig(n_items=40, max_len=8, d_model=16, n_heads=2, n_layers=1)
    return SeqRecModel(config).eval(), ItemVocab([f"i{n}" for n in range(36)], capacity=40)


def _users(n: int) -> list[UserState]:
    t = datetime(2024, 1, 1, tzinfo=UTC)
    return [
        UserState(
            f"u{u}",
            tuple(
                PastEvent(f"e{u}-{j}", f"i{(u * 7 + j * 3) % 36}", EventType.VIEW, t + timedelta(seconds=40 * j))
                for j in range(1 + u % 11)  # 1..11 events: some are truncated to max_len, most are padded
            ),
        )
        for u in range(n)
    ]


@pytest.mark.parametrize(
    ("requested", "device", "trt", "expected"),
    [
        ("auto", CPU, (False, "no CUDA device"), "torch"),
        ("auto", CUDA, (False, "torch_tensorrt not installed"), "torch"),
        ("auto", CUDA, (True, "ok"), "tensorrt"),
        ("auto", CPU, (True, "ok"), "torch"),
        ("torch", CUDA, (True, "ok"), "torch"),
        ("exported", CPU, (False, "no CUDA device"), "exported"),
        ("tensorrt", CUDA, (True, "ok"), "tensorrt"),
    ],
)
def test_backend_selection(
    monkeypatch: pytest.MonkeyPatch, requested: str, device: torch.device, trt: tuple[bool, str], expected: str
) -> None:
    monkeypatch.setattr(backends, "tensorrt_available", lambda: trt)
    assert choose_backend(requested, device) == expected


def test_tensorrt_requested_where_unavailable_is_an_error_with_the_reason(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(backends, "tensorrt_available", lambda: (False, "torch_tensorrt not installed"))
    with pytest.raises(ModelError, match="torch_tensorrt not installed"):
        choose_backend("tensorrt", CUDA)
    with pytest.raises(ModelError, match="unknown backend"):
        choose_backend("onnx", CPU)


def test_exported_program_matches_eager_for_several_batch_sizes() -> None:
    model, vocab = _model()
    eager = EagerTorchBackend(model, "cpu")
    exported = ExportedTorchBackend(model, "cpu")
    for size in (1, 7, 32):
        batch, _ = batch_from_states(_users(size), vocab, model.config)
        for got, want in zip(exported.encode(batch), eager.encode(batch), strict=True):
            assert torch.allclose(got, want, atol=1e-5), size
        ranked_eager = TorchScorer(eager, vocab, model.config, "v").score(_users(size), ItemContext(), 10)
        ranked_export = TorchScorer(exported, vocab, model.config, "v").score(_users(size), ItemContext(), 10)
        assert [[s.item_id for s in r] for r in ranked_export] == [[s.item_id for s in r] for r in ranked_eager]


@pytest.mark.gpu
def test_tensorrt_backend_matches_eager_top_k(tmp_path: Path) -> None:
    usable, reason = tensorrt_available()
    if not usable:
        pytest.skip(reason)
    model, vocab = _model()
    save_model(tmp_path, model, vocab)
    loaded = load_model(tmp_path)
    trt = backends.make_backend(loaded.model, "tensorrt", CUDA, tmp_path, loaded.manifest.sha256)
    eager = EagerTorchBackend(load_model(tmp_path).model, "cpu")
    users = _users(32)
    top_trt = TorchScorer(trt, vocab, model.config, "v").score(users, ItemContext(), 10)
    top_eager = TorchScorer(eager, vocab, model.config, "v").score(users, ItemContext(), 10)
    overlap = [
        len({s.item_id for s in a} & {s.item_id for s in b}) / 10 for a, b in zip(top_trt, top_eager, strict=True)
    ]
    assert sum(overlap) / len(overlap) >= 0.9  # fp16 may swap near-ties
    assert any(tmp_path.glob("trt-*.ep"))  # engine cached next to the model, keyed by checksum


def test_engine_cache_name_covers_version_and_build_settings(tmp_path: Path) -> None:
    base = engine_path(tmp_path / "transformer-abc", "f" * 64, "NVIDIA L4", 1024, 64, "fp16", "2.9.0")
    assert base.parent == tmp_path / "transformer-abc" and base.name.startswith("trt-transformer-abc_ffff")
    others = [
        engine_path(tmp_path / "transformer-abd", "f" * 64, "NVIDIA L4", 1024, 64, "fp16", "2.9.0"),
        engine_path(tmp_path / "transformer-abc", "e" * 64, "NVIDIA L4", 1024, 64, "fp16", "2.9.0"),
        engine_path(tmp_path / "transformer-abc", "f" * 64, "NVIDIA A100", 1024, 64, "fp16", "2.9.0"),
        engine_path(tmp_path / "transformer-abc", "f" * 64, "NVIDIA L4", 512, 64, "fp16", "2.9.0"),
        engine_path(tmp_path / "transformer-abc", "f" * 64, "NVIDIA L4", 1024, 32, "fp16", "2.9.0"),
        engine_path(tmp_path / "transformer-abc", "f" * 64, "NVIDIA L4", 1024, 64, "fp32", "2.9.0"),
        engine_path(tmp_path / "transformer-abc", "f" * 64, "NVIDIA L4", 1024, 64, "fp16", "2.10.0"),
    ]
    assert len({base.name, *(p.name for p in others)}) == 8


def test_engine_cache_is_written_atomically_and_a_failed_write_leaves_nothing(tmp_path: Path) -> None:
    target = tmp_path / "trt-x.ep"
    seen: list[Path] = []

    def write(tmp: Path) -> None:
        seen.append(tmp)
        tmp.write_bytes(b"engine")
        assert not target.exists()  # readers never see a partial engine under the real name

    assert write_atomically(target, write) and target.read_bytes() == b"engine"
    assert seen[0].parent == tmp_path and seen[0].suffix == ".ep" and seen[0].name.startswith(".")

    def half_then_full_disk(tmp: Path) -> None:
        tmp.write_bytes(b"half")
        raise OSError(28, "No space left on device")

    other = tmp_path / "trt-y.ep"
    assert not write_atomically(other, half_then_full_disk)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["trt-x.ep"]  # no partial file, no temp left
    unwritable = tmp_path / "trt-x.ep" / "trt-z.ep"  # parent is a file: like a read-only volume, OSError
    assert not write_atomically(unwritable, lambda tmp: tmp.write_bytes(b"engine"))  # the worker goes on serving
