"""aiokafka connection arguments from `Settings` (security included), light enough for CLI tools to import."""

from __future__ import annotations

import ssl
from typing import Any

from contracts import Settings

__all__ = ["client_kwargs"]


def client_kwargs(settings: Settings) -> dict[str, Any]:
    """Keyword arguments shared by aiokafka producers and consumers: brokers, TLS context, SASL credentials."""
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
