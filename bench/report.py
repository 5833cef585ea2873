"""The last line every bench prints, `RESULT key=value ...`: the figures a run is compared by (README, Benchmarks).

A helper, not a benchmark: `make bench` skips it.
"""

from __future__ import annotations

from collections.abc import Mapping

__all__ = ["print_result"]


def print_result(figures: Mapping[str, float]) -> None:
    """Print `RESULT` and each figure as `key=value`, one decimal, in the mapping's order."""
    print("RESULT " + " ".join(f"{key}={value:.1f}" for key, value in figures.items()))
