"""Skip to newest on the real broker: a burst of 5 `ModelUpdate`s makes a following worker load only the newest."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest
import torch
from aiokafka import AIOKafkaProducer

from contracts import ModelUpdate, Settings
from model.artifacts import save_model
from model.store import ModelStore
from model.transformer import ModelConfig, SeqRecModel
from model.vocab import ItemVocab
from streams.agents.model_updates import ModelFollower
from streams.learner.kafka import MODEL_UPDATE_KEY
from streams.runtime import Runtime
from streams.serving import ServingModel, initial_serving, load_serving

pytestmark = pytest.mark.integration


async def test_a_burst_of_five_updates_loads_only_the_newest(
    settings_factory: Callable[..., Settings], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = settings_factory(model_dir=tmp_path / "store", backend="torch", device="cpu")
    store = ModelStore(settings.model_dir)
    versions = []
    for seed in range(6):
        torch.manual_seed(seed)
        model = SeqRecModel(ModelConfig(n_items=8, max_len=5, d_model=16, n_heads=2, n_layers=1))
        save_model(tmp_path / f"m{seed}", model, ItemVocab(["a", "b", "c"], capacity=8))
        versions.append(store.add(tmp_path / f"m{seed}").version)
    store.set_current(versions[0])
    runtime = Runtime(settings, serving=initial_serving(settings))
    loaded: list[str] = []

    def recording_load(directory: Path, settings: Settings, sha256: str | None) -> ServingModel:
        loaded.append(directory.name)
        return load_serving(directory, settings, sha256)

    monkeypatch.setattr("streams.agents.model_updates.load_serving", recording_load)
    follower = ModelFollower(runtime, settings)
    task = asyncio.create_task(follower.run())
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap, acks="all", linger_ms=50)
    await producer.start()
    try:
        await asyncio.sleep(3.0)  # the follower has sought to the end of the topic
        for version in versions[1:]:  # the learner promoting 5 times in a row
            update = ModelUpdate(version=version, uri=store.uri(version), sha256=store.manifest(version).sha256,
                                 created_at=datetime.now(UTC))  # fmt: skip
            await producer.send(settings.topics.model_updates, update.model_dump_json().encode(), key=MODEL_UPDATE_KEY)
        await producer.flush()
        deadline = time.monotonic() + 60
        while runtime.serving.version != versions[5] and time.monotonic() < deadline:
            await asyncio.sleep(0.2)
    finally:
        await producer.stop()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert runtime.serving.version == versions[5]
    assert loaded == [versions[5]], loaded  # the 4 superseded updates were never loaded
