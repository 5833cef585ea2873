"""Model store: promote, list, CURRENT pointer, rollback, URI form, corrupted versions refused."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from contracts import ChecksumMismatch, ModelError
from model.artifacts import WEIGHTS_FILE, save_model
from model.store import CurrentChanged, ModelStore, store_root
from model.transformer import ModelConfig, SeqRecModel
from model.vocab import ItemVocab

torch.set_num_threads(1)


def _model_dir(path: Path, seed: int) -> Path:
    torch.manual_seed(seed)
    model = SeqRecModel(ModelConfig(n_items=8, max_len=5, d_model=16, n_heads=2, n_layers=1))
    save_model(path, model, ItemVocab(["a", "b", "c"], capacity=8), metrics={"ndcg@10": 0.1 * seed})
    return path


def test_promote_list_and_rollback(tmp_path: Path) -> None:
    store = ModelStore(tmp_path / "store")
    assert store.current() is None and store.versions() == []
    first = store.promote(_model_dir(tmp_path / "m1", 1))
    second = store.promote(_model_dir(tmp_path / "m2", 2))
    assert first.version != second.version
    assert store.current() == second.version
    listed = store.versions()
    assert [v.manifest.version for v in listed] == [first.version, second.version]
    assert [v.current for v in listed] == [False, True]
    assert store.load().manifest.version == second.version
    assert store.rollback().version == first.version  # no parent recorded: the previously current one
    assert store.current() == first.version
    store.rollback(second.version)
    assert store.current() == second.version
    assert [h["action"] for h in store.history()] == ["promote", "promote", "rollback", "rollback"]
    assert not [p for p in (tmp_path / "store").iterdir() if p.name.startswith(".")]  # no temp leftovers


def test_file_uri_and_bad_uris(tmp_path: Path) -> None:
    store = ModelStore((tmp_path / "s").as_uri())
    assert store.root == tmp_path / "s"
    manifest = store.promote(_model_dir(tmp_path / "m", 3))
    assert store.uri(manifest.version) == (tmp_path / "s" / manifest.version).as_uri()
    assert store_root(store.uri(manifest.version)) == tmp_path / "s" / manifest.version
    with pytest.raises(ModelError, match="unsupported"):
        store_root("s3://bucket/models")
    with pytest.raises(ModelError, match="invalid model version"):
        store.path("../etc")


def test_corrupted_version_is_refused_and_current_unchanged(tmp_path: Path) -> None:
    store = ModelStore(tmp_path / "store")
    good = store.promote(_model_dir(tmp_path / "m1", 1))
    bad = store.add(_model_dir(tmp_path / "m2", 2))
    weights = store.path(bad.version) / WEIGHTS_FILE
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(ChecksumMismatch):
        store.rollback(bad.version)
    assert store.current() == good.version
    broken = _model_dir(tmp_path / "m3", 3)
    (broken / WEIGHTS_FILE).write_bytes(b"garbage")
    with pytest.raises(ChecksumMismatch):
        store.promote(broken)
    assert store.current() == good.version


def test_cli_promote_list_rollback(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import typer

    from streamrec.commands.model import register

    app = typer.Typer()
    register(app)
    monkeypatch.setenv("STREAMREC_MODEL_DIR", str(tmp_path / "store"))
    runner = CliRunner()
    one = runner.invoke(app, ["model", "promote", str(_model_dir(tmp_path / "m1", 1))])
    two = runner.invoke(app, ["model", "promote", str(_model_dir(tmp_path / "m2", 2))])
    assert one.exit_code == 0 and two.exit_code == 0, one.output + two.output
    listing = runner.invoke(app, ["model", "list"])
    store = ModelStore(tmp_path / "store")
    first, second = (v.manifest.version for v in store.versions())
    assert f"* {second}" in listing.output and f"  {first}" in listing.output
    line_of = {v: next(line for line in listing.output.splitlines() if v in line) for v in (first, second)}
    assert "  anchor" in line_of[second] and "  anchor" not in line_of[first]  # the last full-train promotion
    back = runner.invoke(app, ["model", "rollback", first, "--no-publish"])
    assert back.exit_code == 0, back.output
    assert store.current() == first
    missing = runner.invoke(app, ["model", "rollback", "transformer-000000000000", "--no-publish"])
    assert missing.exit_code == 1 and store.current() == first


def test_side_files_are_replaced_atomically(tmp_path: Path) -> None:
    store = ModelStore(tmp_path / "s")
    assert store.read_json("online.json") == {}
    store.write_json("online.json", {"versions": {"v": {"ctr": 0.5}}})
    store.write_json("online.json", {"versions": {"v": {"ctr": 0.25}}})
    assert store.read_json("online.json") == {"versions": {"v": {"ctr": 0.25}}}
    assert [p.name for p in (tmp_path / "s").iterdir()] == ["online.json"]


def test_compare_and_set_on_current_and_the_anchor(tmp_path: Path) -> None:
    store = ModelStore(tmp_path / "store")
    first = store.promote(_model_dir(tmp_path / "m1", 1)).version
    assert store.anchor() == first  # no parent: a full training run
    second = store.add(_model_dir(tmp_path / "m2", 2)).version
    with pytest.raises(CurrentChanged, match=f"CURRENT is {first}"):
        store.set_current(second, expected="transformer-000000000000")
    assert store.current() == first and len(store.history()) == 1  # nothing changed, nothing logged
    store.set_current(second, action="learner", expected=first)
    assert store.current() == second and store.history()[-1]["previous"] == first
    store.set_anchor(second)
    assert store.anchor() == second
    with pytest.raises(ModelError):
        store.set_anchor("transformer-000000000000")
    assert store.anchor() == second
    assert sorted(p.name for p in (tmp_path / "store").iterdir() if not p.is_dir()) == [
        "ANCHOR", "CURRENT", "HISTORY", "LOCK"]  # fmt: skip
