"""Exception hierarchy shared by every package.

StreamrecError (retriable=False)
├── ConfigError            bad settings; fail at start-up
├── InvalidEvent           bad input; goes to the dead-letter topic with `reason`
├── ServiceUnavailable     Kafka/Redis briefly gone (retriable=True): back off, do not commit
└── ModelError             a model file that cannot serve
    └── ChecksumMismatch   bytes differ from the manifest; never loaded
"""

from __future__ import annotations

__all__ = [
    "ChecksumMismatch",
    "ConfigError",
    "InvalidEvent",
    "ModelError",
    "ServiceUnavailable",
    "StreamrecError",
]


class StreamrecError(Exception):
    """Root of every error streamrec raises on purpose."""

    retriable: bool = False


class ConfigError(StreamrecError):
    """Settings are missing or inconsistent."""


class InvalidEvent(StreamrecError):
    """An input record that cannot be processed; `reason` is its dead-letter reason code."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


class ServiceUnavailable(StreamrecError):
    """A backing service (Kafka, Redis) did not answer; the caller should retry with backoff."""

    retriable = True


class ModelError(StreamrecError):
    """A model artifact cannot be loaded or served."""


class ChecksumMismatch(ModelError):
    """A model file's sha256 differs from its manifest."""
