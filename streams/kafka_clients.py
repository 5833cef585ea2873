"""The one Kafka client factory: TLS context and SASL credentials from `Settings`, for aiokafka and for Faust.

`KafkaSecurity.from_settings(settings)` is built once per client; `aiokafka_kwargs()` feeds every producer,
consumer and admin client (worker's model follower, learner, `replay`, `tail`, `model promote --publish`, the
stack's own admin client), `faust_credentials()` the worker's `faust.App`. Light enough for CLI tools to import
(Faust is imported only by `faust_credentials`).
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from contracts import Settings

if TYPE_CHECKING:
    from faust.types.auth import CredentialsT

__all__ = ["KafkaSecurity", "client_kwargs"]


@dataclass(frozen=True)
class KafkaSecurity:
    """How a client authenticates to the brokers (`STREAMREC_KAFKA_SECURITY_PROTOCOL` and friends)."""

    protocol: str = "PLAINTEXT"  # PLAINTEXT, SSL, SASL_PLAINTEXT, SASL_SSL
    cafile: Path | None = None  # CA bundle that signed the brokers' certificates (None: the system's)
    certfile: Path | None = None  # client certificate, for mutual TLS
    keyfile: Path | None = None  # its private key (None: inside `certfile`)
    mechanism: str | None = None  # PLAIN, SCRAM-SHA-256, SCRAM-SHA-512
    username: str | None = None
    password: str = field(default="", repr=False)  # never in a repr, so never in a log line

    @classmethod
    def from_settings(cls, settings: Settings) -> KafkaSecurity:
        """The security part of `settings`."""
        password = settings.kafka_sasl_password.get_secret_value() if settings.kafka_sasl_password else ""
        return cls(
            protocol=settings.kafka_security_protocol,
            cafile=settings.kafka_ssl_cafile,
            certfile=settings.kafka_ssl_certfile,
            keyfile=settings.kafka_ssl_keyfile,
            mechanism=settings.kafka_sasl_mechanism,
            username=settings.kafka_sasl_username,
            password=password,
        )

    @property
    def uses_tls(self) -> bool:
        """Whether connections are TLS (`SSL`, `SASL_SSL`)."""
        return self.protocol in ("SSL", "SASL_SSL")

    @property
    def uses_sasl(self) -> bool:
        """Whether connections authenticate with SASL."""
        return self.protocol.startswith("SASL")

    def ssl_context(self) -> ssl.SSLContext | None:
        """A verifying TLS context trusting only `cafile` (when set), with the client certificate; None without TLS."""
        if not self.uses_tls:
            return None
        context = ssl.create_default_context(cafile=str(self.cafile) if self.cafile else None)
        if self.certfile:
            context.load_cert_chain(str(self.certfile), str(self.keyfile) if self.keyfile else None)
        return context

    def aiokafka_kwargs(self) -> dict[str, Any]:
        """Security keyword arguments of aiokafka's producers, consumers and admin clients."""
        out: dict[str, Any] = {"security_protocol": self.protocol}
        if self.uses_tls:
            out["ssl_context"] = self.ssl_context()
        if self.uses_sasl:
            out |= {
                "sasl_mechanism": self.mechanism or "PLAIN",
                "sasl_plain_username": self.username,
                "sasl_plain_password": self.password,
            }
        return out

    def faust_credentials(self) -> CredentialsT | None:
        """The same for `faust.App(broker_credentials=...)`; None for PLAINTEXT."""
        import faust

        if self.protocol == "PLAINTEXT":
            return None
        context = self.ssl_context()
        if not self.uses_sasl:
            return faust.SSLCredentials(context)
        return faust.SASLCredentials(
            username=self.username, password=self.password, ssl_context=context, mechanism=self.mechanism or "PLAIN"
        )


def client_kwargs(settings: Settings) -> dict[str, Any]:
    """Keyword arguments shared by aiokafka producers and consumers: brokers, TLS context, SASL credentials."""
    return {
        "bootstrap_servers": settings.kafka_bootstrap.split(","),
        **KafkaSecurity.from_settings(settings).aiokafka_kwargs(),
    }
