"""The one Kafka client factory: TLS context and SASL credentials from `Settings`, for aiokafka and for Faust.

`KafkaSecurity.from_settings(settings)` is built once per client; `aiokafka_kwargs()` feeds every producer,
consumer and admin client (worker's model follower, learner, `replay`, `tail`, `model promote --publish`, the
stack's own admin client), `faust_credentials()` the worker's `faust.App`. Light enough for CLI tools to import
(Faust is imported only by `faust_credentials`, aiokafka only by `follow_partitions`).

`follow_partitions` is the one all-partitions follower (no consumer group: every process sees every record):
the worker's model-update and catalog followers and the learner's catalog and recommendation followers use it.
It reads partitions from aiokafka's public API only: the admin client's metadata for the partition ids,
`assign`/`seek_to_beginning`/`seek_to_end`/`position`/`seek` on the consumer.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from contracts import Settings

if TYPE_CHECKING:
    from aiokafka import AIOKafkaConsumer
    from aiokafka.admin import AIOKafkaAdminClient
    from faust.types.auth import CredentialsT

__all__ = ["KafkaSecurity", "client_kwargs", "follow_partitions", "topic_partitions"]

log = logging.getLogger(__name__)
_CHECK_TIMEOUT_SECONDS = 10.0  # a partition check waits this long for the brokers, then the follower reads on


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


async def topic_partitions(admin: AIOKafkaAdminClient, topic: str) -> set[int]:
    """The partition ids of `topic` in a fresh metadata response (empty while it does not exist)."""
    # All topics' metadata, not a request naming `topic`: a named request lets a broker with
    # `auto.create.topics.enable` create the topic with its default partition count before the stack creates it.
    described = await admin.describe_topics()
    return {p["partition"] for t in described if t["topic"] == topic and not t["error_code"] for p in t["partitions"]}


async def _partitions_now(admin: AIOKafkaAdminClient, topic: str) -> set[int] | None:
    """`topic_partitions`, or None when the brokers do not answer now (a broker restart must not end a follower)."""
    from aiokafka.errors import KafkaError

    try:
        return await asyncio.wait_for(topic_partitions(admin, topic), _CHECK_TIMEOUT_SECONDS)
    except (KafkaError, OSError, TimeoutError) as exc:
        log.warning("topic %s: partitions not read (%r); following the known ones", topic, exc)
        return None


async def _wait_for_partitions(admin: AIOKafkaAdminClient, topic: str, warn_after_seconds: float) -> set[int]:
    waited = 0.0
    while not (partitions := await _partitions_now(admin, topic)):
        if waited < warn_after_seconds <= waited + 1.0:
            log.warning("topic %s not found; it is not followed until it exists", topic)
        await asyncio.sleep(1.0)
        waited += 1.0
    return partitions


async def _add_partitions(consumer: AIOKafkaConsumer, topic: str, partitions: set[int] | None) -> None:
    """Assign `partitions` besides the current ones: those keep their positions, new ones start at their start."""
    from aiokafka import TopicPartition

    if not partitions:
        return  # not read now (`_partitions_now`): the next check tries again

    positions = {tp: await consumer.position(tp) for tp in sorted(consumer.assignment())}
    new = [TopicPartition(topic, p) for p in sorted(partitions) if TopicPartition(topic, p) not in positions]
    if not new:
        return
    consumer.assign([*positions, *new])  # replaces the assignment (and forgets positions): put them back
    for tp, offset in positions.items():
        consumer.seek(tp, offset)
    await consumer.seek_to_beginning(*new)  # every record of a partition that appeared later is new to us
    log.info("topic %s: following %d more partitions", topic, len(new))


async def follow_partitions(
    settings: Settings,
    topic: str,
    handle: Callable[[bytes | None], object],
    *,
    from_start: bool,
    on_ready: Callable[[], Awaitable[None]] | None = None,
    check_seconds: float = 30.0,
    warn_after_seconds: float = 10.0,
) -> None:
    """Read every partition of `topic` without a group and call `handle(value)` per record, until cancelled.

    Args:
        settings: Kafka brokers and security.
        topic: the topic to follow; waited for if it does not exist yet (a warning after `warn_after_seconds`).
        handle: called with each record's value, in offset order per partition (what it returns is ignored).
        from_start: start at each partition's first offset (True) or at its end (False).
        on_ready: awaited once the start positions are resolved, before the first record is handled.
        check_seconds: how often the topic's partition count is re-read; partitions added later are read from
            their first offset.
        warn_after_seconds: seconds without the topic before a warning is logged.
    """
    from aiokafka import AIOKafkaConsumer, TopicPartition
    from aiokafka.admin import AIOKafkaAdminClient

    kwargs = client_kwargs(settings)
    consumer = AIOKafkaConsumer(group_id=None, enable_auto_commit=False, **kwargs)
    admin = AIOKafkaAdminClient(**kwargs)
    await consumer.start()
    try:
        await admin.start()
        partitions = await _wait_for_partitions(admin, topic, warn_after_seconds)
        consumer.assign([TopicPartition(topic, p) for p in sorted(partitions)])
        await (consumer.seek_to_beginning() if from_start else consumer.seek_to_end())
        for tp in consumer.assignment():
            await consumer.position(tp)  # resolve the start offsets now, before `on_ready`
        if on_ready is not None:
            await on_ready()
        loop = asyncio.get_running_loop()
        checked = loop.time()
        while True:
            for messages in (await consumer.getmany(timeout_ms=1000)).values():
                for m in messages:
                    handle(m.value)
            if loop.time() - checked >= check_seconds:
                await _add_partitions(consumer, topic, await _partitions_now(admin, topic))
                checked = loop.time()
    finally:
        await admin.close()
        await consumer.stop()
