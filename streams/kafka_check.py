"""Fail fast on refused Kafka credentials or an untrusted broker certificate, before a process starts its clients.

aiokafka logs why a bootstrap connection failed and then retries or raises a generic "Unable to bootstrap";
a wrong SCRAM password or an unknown CA never heals by waiting. `check_kafka_access` opens one connection
per bootstrap address with the process's own TLS and SASL settings (`KafkaSecurity`) and raises `ConfigError`
with one line naming what failed (user, mechanism, address, CA file), never a secret. A broker that is down or
slow passes: clients wait for it as usual.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl

from aiokafka.conn import create_conn
from aiokafka.errors import (
    AuthenticationFailedError,
    IllegalSaslStateError,
    KafkaError,
    SaslAuthenticationFailed,
    UnsupportedSaslMechanismError,
)

from contracts import ConfigError, Settings
from streams.kafka_clients import KafkaSecurity

__all__ = ["check_kafka_access", "kafka_refusal"]

_AUTH_ERRORS = (SaslAuthenticationFailed, AuthenticationFailedError, IllegalSaslStateError)


def kafka_refusal(exc: BaseException, address: str, security: KafkaSecurity) -> str | None:
    """The one-line reason when `exc` means the broker at `address` refused `security` (None: anything else)."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        detail = exc.verify_message or exc.reason
        ca = f"CA file {security.cafile}" if security.cafile else "the system's CA bundle"
        return (
            f"Kafka TLS certificate of {address} is not trusted ({detail}; trusted: {ca}); "
            "check STREAMREC_KAFKA_SSL_CAFILE"
        )
    if isinstance(exc, ssl.SSLError):
        return (
            f"Kafka TLS handshake with {address} failed ({exc.reason or exc}); check STREAMREC_KAFKA_SECURITY_PROTOCOL"
        )
    if isinstance(exc, _AUTH_ERRORS):
        return (
            f"Kafka authentication failed for user {security.username} ({security.mechanism}) at {address}; "
            "check STREAMREC_KAFKA_SASL_USERNAME / STREAMREC_KAFKA_SASL_PASSWORD"
        )
    if isinstance(exc, UnsupportedSaslMechanismError):
        mechanism = security.mechanism
        return f"Kafka at {address} does not accept SASL mechanism {mechanism}; check STREAMREC_KAFKA_SASL_MECHANISM"
    return None


async def check_kafka_access(settings: Settings, timeout_seconds: float = 15.0) -> None:
    """Connect (TLS handshake, SASL authentication) to each bootstrap address until one accepts.

    Raises:
        ConfigError: A broker refused the credentials or its certificate is not trusted.
    """
    security = KafkaSecurity.from_settings(settings)
    kwargs = security.aiokafka_kwargs()
    for address in settings.kafka_bootstrap.split(","):
        host, _, port = address.strip().rpartition(":")
        try:
            conn = await asyncio.wait_for(
                create_conn(host.strip("[]"), int(port), request_timeout_ms=int(timeout_seconds * 1000), **kwargs),
                timeout_seconds,
            )
        except (OSError, KafkaError, TimeoutError) as exc:
            reason = kafka_refusal(exc, address.strip(), security)
            if reason is not None:
                raise ConfigError(reason) from None
            continue  # down or slow: clients wait for it as usual
        with contextlib.suppress(Exception):
            conn.close()
        return
