"""Model artifacts: round trip, checksum, shape and vocabulary checks, no pickle; `load_scorer`."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
import torch

from contracts import ChecksumMismatch, EventType, ModelError
from model.artifacts import MANIFEST_FILE, WEIGHTS_FILE, file_sha256, load_model, load_scorer, save_model
from model.scoring import ItemContext, PastEvent, UserState
from model.transformer import ModelConfig, SeqRecModel
from model.vocab import ItemVocab

torch.set_num_threads(1)
ITEMS = ["a", "b", "c", "d", "e"]


def _save(directory: Path, seed: int = 0, **overrides: object) -> Path:
    torch.manual_seed(seed)
    config = ModelConfig(**{"n_items": 8, "max_len": 5, "d_model": 16, "n_heads": 2, "n_layers": 1, **overrides})
    save_model(directory, SeqRecModel(config), ItemVocab(ITEMS, capacity=8), metrics={"ndcg@10": 0.5})
    return directory


def _users() -> list[UserState]:
    t = datetime(2024, 1, 1, tzinfo=UTC)
    return [UserState("u", (PastEvent("e0", "a", EventType.VIEW, t), PastEvent("e1", "c", EventType.ADD_TO_CART, t)))]


def _edit_manifest(directory: Path, **changes: object) -> None:
    path = directory / MANIFEST_FILE
    manifest = json.loads(path.read_text())
    for key, value in changes.items():
        if key.startswith("config."):
            manifest["config"][key.removeprefix("config.")] = value
        else:
            manifest[key] = value
    path.write_text(json.dumps(manifest))


def test_round_trip_gives_identical_scores(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = SeqRecModel(ModelConfig(n_items=8, max_len=5, d_model=16, n_heads=2, n_layers=1)).eval()
    manifest = save_model(tmp_path, model, ItemVocab(ITEMS, capacity=8), metrics={"ndcg@10": 0.5})
    loaded = load_model(tmp_path)
    assert manifest.sha256 == file_sha256(tmp_path / WEIGHTS_FILE)
    assert manifest.version == f"transformer-{manifest.sha256[:12]}"
    assert loaded.vocab.ids == ITEMS and loaded.manifest.metrics == {"ndcg@10": 0.5}
    for name, tensor in model.state_dict().items():
        assert torch.equal(tensor, loaded.model.state_dict()[name]), name
    scorer = load_scorer(tmp_path, backend="torch", device="cpu")
    assert scorer.version == manifest.version
    ranked = scorer.score(_users(), ItemContext(), 5)[0]
    assert sorted(s.item_id for s in ranked) == sorted(ITEMS)


def test_flipped_byte_is_a_checksum_mismatch(tmp_path: Path) -> None:
    _save(tmp_path)
    weights = tmp_path / WEIGHTS_FILE
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(ChecksumMismatch, match="sha256"):
        load_model(tmp_path)


def test_config_that_does_not_match_the_weights_is_refused(tmp_path: Path) -> None:
    _save(tmp_path)
    _edit_manifest(tmp_path, **{"config.n_layers": 2})
    with pytest.raises(ModelError, match="missing backbone.h.1"):
        load_model(tmp_path)


def test_vocabulary_larger_than_the_item_table_is_refused(tmp_path: Path) -> None:
    _save(tmp_path)
    _edit_manifest(tmp_path, items=[f"i{n}" for n in range(20)])
    with pytest.raises(ModelError, match="capacity"):
        load_model(tmp_path)


@pytest.mark.parametrize("name", ["model.bin", "model.pt", "model.pkl"])
def test_pickle_formats_are_never_opened(tmp_path: Path, name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    _save(tmp_path)
    (tmp_path / name).write_bytes(b"not even a pickle")
    _edit_manifest(tmp_path, weights_file=name)

    def no_torch_load(*args: object, **kwargs: object) -> None:
        raise AssertionError("torch.load must never be called")

    monkeypatch.setattr(torch, "load", no_torch_load)
    with pytest.raises(ModelError, match="only .safetensors"):
        load_model(tmp_path)


def test_missing_manifest_is_a_model_error(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="manifest.json not found"):
        load_model(tmp_path)


def test_tampered_manifest_fields_are_rejected(tmp_path: Path) -> None:
    _save(tmp_path)
    _edit_manifest(tmp_path, sha256="not-a-hash")
    with pytest.raises(ModelError, match="invalid manifest"):
        load_model(tmp_path)
