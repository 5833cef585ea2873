"""One frozen settings object per process, read from `STREAMREC_*` environment variables.

Built once in an entry point and passed down; library code never reads `os.environ`.
Secrets are `SecretStr`, so they never print in logs or reprs.
"""

from __future__ import annotations

import ipaddress
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit, urlunsplit

from pydantic import AwareDatetime, Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from contracts.topics import TopicNames

__all__ = ["Settings"]


def _loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


class Settings(BaseSettings):
    """streamrec configuration. Every field is set by `STREAMREC_<FIELD>` (upper case)."""

    model_config = SettingsConfigDict(env_prefix="STREAMREC_", frozen=True, extra="forbid")

    # Kafka
    kafka_bootstrap: str = Field("127.0.0.1:19092", description="Comma-separated host:port list.")
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    kafka_sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = None
    kafka_sasl_username: str | None = None
    kafka_sasl_password: SecretStr | None = None
    kafka_ssl_cafile: Path | None = None
    kafka_ssl_certfile: Path | None = None
    kafka_ssl_keyfile: Path | None = None
    topic_prefix: str = Field("streamrec", pattern=r"^[A-Za-z0-9._-]{1,200}$")
    events_partitions: int = Field(8, ge=1)
    recommendations_partitions: int = Field(8, ge=1)

    # Redis (ACL user and password in the URL, TLS with rediss://, its CA file with ?ssl_ca_certs=/path/ca.pem)
    redis_url: SecretStr = SecretStr("redis://127.0.0.1:16379/0")
    redis_cluster: bool = Field(
        False, description="`redis_url` names a node of a Redis Cluster: use redis-py's `RedisCluster` (DB 0 only)."
    )

    # Model and serving
    model_dir: Path = Path("models")
    device: Literal["auto", "cpu", "cuda"] = "auto"
    backend: Literal["auto", "torch", "exported", "tensorrt"] = "auto"
    top_k: int = Field(10, ge=1, le=1000)
    # One torch thread: the worker's event loop (Kafka, Redis, JSON) needs the other core, and on a busy 2-core box
    # a 256-user transformer forward took 0.24 s with one thread and 0.86 s with two (threads spin for each other).
    scorer_threads: int = Field(1, ge=0, description="torch threads of the worker's scorer (0 = torch's default).")
    # Reused user states (`model.incremental`): an event then costs one encoder position, not a full re-encode.
    # 64 KB per user at the default model size, so 512 MiB keeps ~8,000 users; the results are the same.
    encoder_cache_mb: int = Field(512, ge=0, description="MiB of user encoder states kept per worker (0 = off).")
    # The user is on the trigger event's item: showing it again is never useful. Other seen items stay eligible.
    exclude_current_item: bool = Field(True, description="Never recommend the item of the triggering event.")

    # Streaming
    # 1024, not 256: under load a larger batch spreads the per-batch round trips and numpy passes (~12 % less
    # worker CPU per event in bench/pipeline.py); below saturation batches stay far smaller than either.
    max_batch: int = Field(1024, ge=1, description="Events per micro-batch at most.")
    max_wait_ms: int = Field(20, ge=1, description="Longest wait to fill a micro-batch, milliseconds.")
    recent_events: int = Field(50, ge=1, description="Events kept per user.")
    user_ttl_days: int = Field(
        30, ge=0, description="A user's features expire this long after their newest event (0 = never; else >= 7)."
    )
    max_event_bytes: int = Field(16384, ge=256, description="Larger payloads are dead-lettered.")
    max_future_skew_seconds: int = Field(300, ge=0, description="Event times further ahead are dead-lettered.")
    min_event_time: AwareDatetime = Field(
        datetime(1970, 1, 1, tzinfo=UTC), description="Earlier event times are dead-lettered (`past_timestamp`)."
    )
    web_port: int = Field(6066, ge=1, le=65535)
    web_host: str = Field("127.0.0.1", description="Address the web server binds to.")
    web_token: SecretStr | None = Field(
        None, description="Bearer token every web request but /healthz must carry; required off loopback."
    )

    @model_validator(mode="after")
    def _sasl_is_complete(self) -> Settings:
        if self.kafka_security_protocol.startswith("SASL") and not (
            self.kafka_sasl_mechanism and self.kafka_sasl_username and self.kafka_sasl_password
        ):
            msg = "SASL needs kafka_sasl_mechanism, kafka_sasl_username and kafka_sasl_password"
            raise ValueError(msg)
        return self

    @model_validator(mode="after")
    def _web_off_loopback_has_a_token(self) -> Settings:
        if not _loopback(self.web_host) and not (self.web_token and self.web_token.get_secret_value()):
            msg = f"web_host {self.web_host!r} is not a loopback address: set STREAMREC_WEB_TOKEN (bearer token)"
            raise ValueError(msg)
        return self

    @property
    def topics(self) -> TopicNames:
        """Topic names under `topic_prefix`."""
        return TopicNames(self.topic_prefix)

    def redis_url_redacted(self) -> str:
        """The Redis URL with any password replaced by `***`, safe to log."""
        parts = urlsplit(self.redis_url.get_secret_value())
        if parts.password is None:
            return parts.geturl()
        user = parts.username or ""
        netloc = f"{user}:***@{parts.hostname}" + (f":{parts.port}" if parts.port else "")
        return urlunsplit(parts._replace(netloc=netloc))
