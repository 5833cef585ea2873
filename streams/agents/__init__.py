"""Faust agents, one module per concern."""

from __future__ import annotations

from typing import Any, cast

import faust

__all__ = ["as_stream"]


def as_stream(stream: faust.StreamT[Any]) -> faust.Stream[Any]:
    """The stream an agent is given, typed as what it is: `take_events` is on `Stream`, not the `StreamT` protocol."""
    return cast("faust.Stream[Any]", stream)
