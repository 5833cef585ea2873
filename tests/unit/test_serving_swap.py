"""Worker-side model wiring: initial model from the store, (scorer, explainer) swapped as one, bad models refused,
bursts of updates skipped to the newest."""

from __future__ import annotations

import asyncio
import threading
from datetime import UTC, datetime
from pathlib import Path

import pytest
import torch

from contracts import ModelUpdate, Settings
from model.artifacts import WEIGHTS_FILE, save_model
from model.store import ModelStore
from model.transformer import ModelConfig, SeqRecModel
from model.vocab import ItemVocab
from streams.agents.model_updates import ModelFollower
from streams.runtime import Runtime
from streams.serving import SCORER_MAX_BATCH, ServingModel, initial_serving, load_serving

torch.set_num_threads(1)


def _version(root: Path, name: str, seed: int) -> str:
    torch.manual_seed(seed)
    model = SeqRecModel(ModelConfig(n_items=8, max_len=5, d_model=16, n_heads=2, n_layers=1))
    save_model(root / name, model, ItemVocab(["a", "b", "c"], capacity=8))
    return ModelStore(root / "store").promote(root / name).version


def _settings(store: Path) -> Settings:
    return Settings(model_dir=store, backend="torch", device="cpu")


def test_empty_store_serves_the_baseline_blend(tmp_path: Path) -> None:
    serving = initial_serving(_settings(tmp_path / "nothing"))
    assert serving.explainer.vocab is None  # the baseline explainer (scorer evidence)
    assert not serving.version.startswith("transformer-")


def test_current_version_is_served_with_its_own_explainer(tmp_path: Path) -> None:
    version = _version(tmp_path, "m1", 1)
    serving = initial_serving(_settings(tmp_path / "store"))
    assert serving.version == version
    assert serving.explainer.vocab is not None and serving.explainer.vocab.ids == ["a", "b", "c"]


def test_corrupted_current_falls_back_to_the_baseline(tmp_path: Path) -> None:
    version = _version(tmp_path, "m1", 1)
    (tmp_path / "store" / version / WEIGHTS_FILE).write_bytes(b"junk")
    assert not initial_serving(_settings(tmp_path / "store")).version.startswith("transformer-")


async def test_follower_swaps_the_pair_and_refuses_bad_updates(tmp_path: Path) -> None:
    first = _version(tmp_path, "m1", 1)
    settings = _settings(tmp_path / "store")
    runtime = Runtime(settings, serving=initial_serving(settings))
    follower = ModelFollower(runtime, settings)
    second = _version(tmp_path, "m2", 2)
    store = ModelStore(tmp_path / "store")
    old_pair = runtime.serving

    def update(version: str, sha: str | None = None) -> bytes:
        manifest = store.manifest(version)
        return (
            ModelUpdate(
                version=version, uri=store.uri(version), sha256=sha or manifest.sha256, created_at=datetime.now(UTC)
            )
            .model_dump_json()
            .encode()
        )

    await follower.handle(update(second))
    assert runtime.serving.version == second and runtime.serving.scorer.version == second
    assert runtime.serving.explainer is not old_pair.explainer  # explainer swapped with its scorer
    assert runtime.serving.explainer.vocab is not None
    metrics = {m.name: m for m in runtime.metrics.registry.collect()}
    assert [s.labels["version"] for s in metrics["streamrec_model_info"].samples] == [second]

    await follower.handle(update(first, sha="0" * 64))  # announcement does not match the files
    assert runtime.serving.version == second
    (store.path(first) / WEIGHTS_FILE).write_bytes(b"corrupted")
    await follower.handle(update(first))  # corrupted file
    await follower.handle(b"not json")
    assert runtime.serving.version == second
    metrics = {m.name: m for m in runtime.metrics.registry.collect()}
    refused = [s for s in metrics["streamrec_model_swaps"].samples if s.name.endswith("_total")]
    counts = {s.labels["outcome"]: s.value for s in refused}
    assert counts == {"applied": 1.0, "refused": 2.0, "invalid": 1.0}


async def test_sync_with_store_follows_a_rollback(tmp_path: Path) -> None:
    first = _version(tmp_path, "m1", 1)
    _version(tmp_path, "m2", 2)
    settings = _settings(tmp_path / "store")
    runtime = Runtime(settings, serving=initial_serving(settings))
    ModelStore(tmp_path / "store").rollback(first)
    await ModelFollower(runtime, settings).sync_with_store()
    assert runtime.serving.version == first


@pytest.mark.parametrize("uri", ["s3://bucket/x"])
async def test_unsupported_uri_is_refused(tmp_path: Path, uri: str) -> None:
    settings = _settings(tmp_path / "store")
    runtime = Runtime(settings)
    before = runtime.serving.version
    msg = ModelUpdate(version="v", uri=uri, sha256="0" * 64, created_at=datetime.now(UTC)).model_dump_json()
    await ModelFollower(runtime, settings).handle(msg.encode())
    assert runtime.serving.version == before


@pytest.mark.parametrize(("max_batch", "forward"), [(1024, SCORER_MAX_BATCH), (64, 64)])
def test_transformer_forwards_stay_at_most_scorer_max_batch(tmp_path: Path, max_batch: int, forward: int) -> None:
    _version(tmp_path, "m1", 1)
    settings = _settings(tmp_path / "store").model_copy(update={"max_batch": max_batch})
    scorer = initial_serving(settings).scorer
    assert scorer._max_batch == forward  # type: ignore[attr-defined]


def _announce(store: ModelStore, version: str) -> bytes:
    manifest = store.manifest(version)
    update = ModelUpdate(version=version, uri=store.uri(version), sha256=manifest.sha256, created_at=datetime.now(UTC))
    return update.model_dump_json().encode()


async def test_a_burst_of_five_updates_loads_only_the_newest(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    versions = [_version(tmp_path, f"m{k}", k) for k in range(6)]
    settings = _settings(tmp_path / "store")
    store = ModelStore(tmp_path / "store")
    store.rollback(versions[0])
    runtime = Runtime(settings, serving=initial_serving(settings))
    loaded: list[str] = []
    release = threading.Event()

    def slow_load(directory: Path, settings: Settings, sha256: str | None) -> ServingModel:
        loaded.append(directory.name)
        release.wait(timeout=30)  # a TensorRT compile: the updates below arrive while this one loads
        return load_serving(directory, settings, sha256)

    monkeypatch.setattr("streams.agents.model_updates.load_serving", slow_load)
    follower = ModelFollower(runtime, settings)
    for version in versions[1:]:  # five updates read in one poll, before the applier gets the loop
        follower.offer(_announce(store, version))
    first = asyncio.create_task(follower.drain())
    await asyncio.sleep(0.2)
    for version in reversed(versions[:3]):  # ... and three more while the newest of those is loading
        follower.offer(_announce(store, version))
    release.set()
    await first
    assert loaded == [versions[5], versions[0]]  # only the newest of each burst was loaded
    assert runtime.serving.version == versions[0]
    metrics = {m.name: m for m in runtime.metrics.registry.collect()}
    counts = {
        s.labels["outcome"]: s.value for s in metrics["streamrec_model_swaps"].samples if s.name.endswith("_total")
    }
    assert counts == {"superseded": 6.0, "applied": 2.0}


def test_the_serving_pair_carries_the_versions_gate_metrics(tmp_path: Path) -> None:
    torch.manual_seed(3)
    model = SeqRecModel(ModelConfig(n_items=8, max_len=5, d_model=16, n_heads=2, n_layers=1))
    metrics = {"ndcg@10": 0.3, "serving_ndcg@10": 0.28, "anchor_ndcg@10": 0.27, "gate_points": 120.0}
    save_model(tmp_path / "m", model, ItemVocab(["a", "b", "c"], capacity=8), metrics=metrics)
    assert dict(load_serving(tmp_path / "m", _settings(tmp_path / "store")).metrics) == metrics


async def test_an_update_pointing_outside_the_model_store_is_refused_and_counted(tmp_path: Path) -> None:
    elsewhere = ModelStore(tmp_path / "elsewhere" / "store")
    version = _version(tmp_path / "elsewhere", "m9", 9)  # a valid, checksummed model, just not in our store
    settings = _settings(tmp_path / "store")
    runtime = Runtime(settings)
    before = runtime.serving.version
    follower = ModelFollower(runtime, settings)
    await follower.handle(_announce(elsewhere, version))
    assert runtime.serving.version == before
    assert runtime.metrics.registry.get_sample_value("streamrec_model_swaps_total", {"outcome": "outside_store"}) == 1
