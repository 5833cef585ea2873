"""The one Kafka client factory: TLS context and SASL credentials from `Settings`, for aiokafka and for Faust.

`KafkaSecurity.from_settings(settings)` is built once per client; `aiokafka_kwargs()` feeds every producer,
consumer and admin client (worker's model follower, learner, `replay`, `tail`, `model promote --publish`, the
stack's own admin client), `faust_credentials()` the worker's `faust.App`. `follow_topic` is the one reader of
every partition of a topic without a group (the worker's model-update and new-item followers, the learner's
catalog and recommendation followers), on aiokafka's public API. Light enough for CLI tools to import (Faust is
imported only by `faust_credentials`).
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from contracts import Settings

if TYPE_CHECKING:
    from faust.types.auth import CredentialsT

__all__ = ["KafkaSecurity", "client_kwargs", "follow_topic", "topic_partitions"]

log = logging.getLogger(__name__)


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


async def topic_partitions(settings: Settings, topic: str, warn_after: int = 10) -> list[int]:
    """The partition ids of `topic`, waiting (1 s steps) until the topic exists; logs once after `warn_after` s."""
    admin = AIOKafkaAdminClient(**client_kwargs(settings))
    await admin.start()
    try:
        waited = 0
        while True:
            described = await admin.describe_topics([topic])
            found = [p["partition"] for t in described if t["error_code"] == 0 for p in t["partitions"]]
            if found:
                return sorted(found)
            waited += 1
            if waited == warn_after:
                log.warning("topic %s not found; waiting for it to be created", topic)
            await asyncio.sleep(1.0)
    finally:
        await admin.close()


async def follow_topic(
    settings: Settings,
    topic: str,
    from_start: bool,
    handle: Callable[[bytes | None], object],
    on_ready: Callable[[], Awaitable[None]] | None = None,
) -> None:
    """Read every partition of `topic` without a group, from its start or its end, until cancelled.

    `handle` gets each record's value (awaited when it returns an awaitable); `on_ready` runs once the
    starting positions are resolved, before the first record (what was published before it is not read when
    following from the end).
    """
    partitions = await topic_partitions(settings, topic)
    consumer = AIOKafkaConsumer(group_id=None, enable_auto_commit=False, **client_kwargs(settings))
    await consumer.start()
    try:
        consumer.assign([TopicPartition(topic, p) for p in partitions])
        await (consumer.seek_to_beginning() if from_start else consumer.seek_to_end())
        for tp in consumer.assignment():
            await consumer.position(tp)  # resolve the starting offsets now
        if on_ready is not None:
            await on_ready()
        while True:
            for messages in (await consumer.getmany(timeout_ms=1000)).values():
                for m in messages:
                    result = handle(m.value)
                    if inspect.isawaitable(result):
                        await result
    finally:
        await consumer.stop()
