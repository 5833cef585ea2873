"""aiokafka client settings from `Settings` (security included) and the model-update publisher."""

from __future__ import annotations

import ssl
from datetime import UTC, datetime
from typing import Any

from aiokafka import AIOKafkaProducer

from contracts import ModelUpdate, Settings
from model.artifacts import Manifest

__all__ = ["MODEL_UPDATE_KEY", "client_kwargs", "model_update", "publish_update"]

MODEL_UPDATE_KEY = b"model"  # one key: every update lands on one partition, in order


def client_kwargs(settings: Settings) -> dict[str, Any]:
    """Connection keyword arguments shared by aiokafka producers and consumers."""
    out: dict[str, Any] = {
        "bootstrap_servers": settings.kafka_bootstrap.split(","),
        "security_protocol": settings.kafka_security_protocol,
    }
    if settings.kafka_security_protocol in ("SSL", "SASL_SSL"):
        cafile = str(settings.kafka_ssl_cafile) if settings.kafka_ssl_cafile else None
        context = ssl.create_default_context(cafile=cafile)
        if settings.kafka_ssl_certfile:
            keyfile = str(settings.kafka_ssl_keyfile) if settings.kafka_ssl_keyfile else None
            context.load_cert_chain(str(settings.kafka_ssl_certfile), keyfile)
        out["ssl_context"] = context
    if settings.kafka_security_protocol.startswith("SASL"):
        password = settings.kafka_sasl_password.get_secret_value() if settings.kafka_sasl_password else ""
        out |= {
            "sasl_mechanism": settings.kafka_sasl_mechanism or "PLAIN",
            "sasl_plain_username": settings.kafka_sasl_username,
            "sasl_plain_password": password,
        }
    return out


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
