"""The model-update publisher (`ModelUpdate` records on `<prefix>.model-updates`)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING

from aiokafka import AIOKafkaProducer

from contracts import ModelUpdate, Settings
from streams.kafka_clients import client_kwargs

if TYPE_CHECKING:
    from model.artifacts import Manifest  # only a type here: importing this module stays free of torch

__all__ = ["MODEL_UPDATE_KEY", "model_update", "publish_update"]

MODEL_UPDATE_KEY = b"model"  # one key: every update lands on one partition, in order


def model_update(manifest: Manifest, uri: str, metrics: dict[str, float] | None = None) -> ModelUpdate:
    """The `ModelUpdate` announcing `manifest`'s version at `uri`."""
    return ModelUpdate(
        version=manifest.version,
        uri=uri,
        sha256=manifest.sha256,
        metrics=dict(manifest.metrics if metrics is None else metrics),
        parent_version=manifest.parent_version,
        created_at=datetime.now(UTC),
    )


async def publish_update(settings: Settings, update: ModelUpdate, producer: AIOKafkaProducer | None = None) -> None:
    """Send `update` to `<prefix>.model-updates` and wait for acks=all (own producer unless one is given)."""
    own = producer is None
    if producer is None:
        producer = AIOKafkaProducer(acks="all", **client_kwargs(settings))
        await producer.start()
    try:
        await producer.send_and_wait(
            settings.topics.model_updates, update.model_dump_json().encode(), key=MODEL_UPDATE_KEY
        )
    finally:
        if own:
            await producer.stop()
