"""The live dashboard served by the worker's web server: static page (`static/`) + the state it polls."""

from __future__ import annotations

from pathlib import Path

__all__ = ["STATIC_DIR"]

STATIC_DIR = Path(__file__).resolve().parent / "static"
