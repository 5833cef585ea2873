"""Model store: a directory of verified model versions plus an atomically replaced `CURRENT` pointer.

Layout (a local path or a `file://` URI, so a shared volume serves every worker and the learner)::

    <root>/<version>/model.safetensors   weights (sha256 in the manifest)
    <root>/<version>/manifest.json       model.artifacts.Manifest (parent version, data window, metrics)
    <root>/CURRENT                       the serving version (one line), replaced with os.replace
    <root>/HISTORY                       one JSON line per promotion / rollback (append-only)
    <root>/ANCHOR                        the last version promoted from a full `streamrec train` (no parent)

A version is copied in under a temporary name and renamed into place, so readers never see half a version.
Every promotion and rollback re-verifies the weights (sha256, shapes) first: a corrupted version is refused
with `ChecksumMismatch` / `ModelError` and `CURRENT` is left unchanged. Every change of `CURRENT` holds an
exclusive `flock` on `<root>/LOCK`; `set_current(..., expected=V)` is a compare-and-set: it raises
`CurrentChanged` (and changes nothing) unless `CURRENT` is still `V`, so a learner that read `CURRENT` at the
start of a cycle never overwrites a manual rollback made meanwhile.

Example:
    >>> store_root("file:///srv/models"), store_root("models")
    (PosixPath('/srv/models'), PosixPath('models'))
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import EllipsisType
from typing import Any
from urllib.parse import unquote, urlsplit

from contracts import ModelError
from model.artifacts import MANIFEST_FILE, LoadedModel, Manifest, load_model, save_model
from model.transformer import SeqRecModel
from model.vocab import ItemVocab

__all__ = [
    "ANCHOR_FILE",
    "CURRENT_FILE",
    "HISTORY_FILE",
    "CurrentChanged",
    "ModelStore",
    "StoredVersion",
    "store_root",
    "version_dir_uri",
]

CURRENT_FILE = "CURRENT"
HISTORY_FILE = "HISTORY"
ANCHOR_FILE = "ANCHOR"
_LOCK_FILE = "LOCK"  # flock target of every pointer change (never a temp file: it stays)
_RESERVED = (CURRENT_FILE, HISTORY_FILE, ANCHOR_FILE, _LOCK_FILE)


class CurrentChanged(ModelError):
    """A compare-and-set on `CURRENT` found another version than expected (someone else moved it)."""

    retriable = True  # re-read CURRENT and decide again


def store_root(location: str | Path) -> Path:
    """The local directory of a store given as a path or a `file://` URI (other schemes are refused)."""
    text = str(location)
    if "://" not in text:
        return Path(text)
    parts = urlsplit(text)
    if parts.scheme != "file" or parts.netloc not in ("", "localhost"):
        msg = f"unsupported model store URI {text!r}: use a path or file:///absolute/path"
        raise ModelError(msg)
    return Path(unquote(parts.path))


def version_dir_uri(directory: Path) -> str:
    """`file://` URI of a version directory (what a `ModelUpdate.uri` carries)."""
    return Path(directory).resolve().as_uri()


@dataclass(frozen=True, slots=True)
class StoredVersion:
    """One version in the store."""

    manifest: Manifest
    path: Path
    current: bool


class ModelStore:
    """Versions under one root; see the module docstring for the layout."""

    def __init__(self, location: str | Path) -> None:
        """Args: root directory or `file://` URI (created on first write)."""
        self.root = store_root(location)

    def path(self, version: str) -> Path:
        """Directory of `version` (it may not exist)."""
        if not version or "/" in version or version.startswith(".") or version in _RESERVED:
            msg = f"invalid model version {version!r}"
            raise ModelError(msg)
        return self.root / version

    def uri(self, version: str) -> str:
        """`file://` URI of `version`'s directory."""
        return version_dir_uri(self.path(version))

    def current(self) -> str | None:
        """The serving version, or None when nothing was promoted yet."""
        return self._pointer(CURRENT_FILE)

    def anchor(self) -> str | None:
        """The last version promoted from a full training run (the gate's anchor), or None."""
        return self._pointer(ANCHOR_FILE)

    def _pointer(self, name: str) -> str | None:
        try:
            text = (self.root / name).read_text().strip()
        except FileNotFoundError:
            return None
        return text or None

    def _replace_pointer(self, name: str, version: str) -> None:
        tmp = self.root / f".{name}.tmp-{uuid.uuid4().hex}"
        tmp.write_text(version + "\n")
        os.replace(tmp, self.root / name)

    @contextmanager
    def _locked(self) -> Iterator[None]:
        """Exclusive lock of the store's pointers (across processes sharing the directory)."""
        self.root.mkdir(parents=True, exist_ok=True)
        with (self.root / _LOCK_FILE).open("a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def current_dir(self) -> Path | None:
        """Directory of the serving version, or None."""
        version = self.current()
        return None if version is None else self.path(version)

    def manifest(self, version: str) -> Manifest:
        """Manifest of a stored version (not verified against the weights; `load` does that)."""
        path = self.path(version) / MANIFEST_FILE
        if not path.is_file():
            msg = f"version {version!r} is not in the store {self.root}"
            raise ModelError(msg)
        return Manifest.model_validate_json(path.read_bytes())

    def versions(self) -> list[StoredVersion]:
        """Every complete version, oldest first (by manifest `created_at`)."""
        if not self.root.is_dir():
            return []
        current = self.current()
        out = []
        for child in self.root.iterdir():
            if child.name.startswith(".") or not (child / MANIFEST_FILE).is_file():
                continue
            try:
                manifest = Manifest.model_validate_json((child / MANIFEST_FILE).read_bytes())
            except ValueError:
                continue  # not ours / unreadable: `list` shows only versions that can be served
            out.append(StoredVersion(manifest, child, child.name == current))
        return sorted(out, key=lambda v: (v.manifest.created_at, v.manifest.version))

    def load(self, version: str | None = None) -> LoadedModel:
        """Load and verify `version` (default: the current one).

        Raises:
            ModelError: empty store or unknown version; `ChecksumMismatch` for corrupted weights.
        """
        version = version or self.current()
        if version is None:
            msg = f"model store {self.root} has no current version"
            raise ModelError(msg)
        return load_model(self.path(version))

    def add(self, source: Path) -> Manifest:
        """Verify a model directory and copy it in as `<root>/<version>` (no-op if present); not made current."""
        loaded = load_model(Path(source))  # raises on a corrupted or incomplete source
        manifest = loaded.manifest
        target = self.path(manifest.version)
        if (target / MANIFEST_FILE).is_file():
            return manifest
        self.root.mkdir(parents=True, exist_ok=True)
        tmp = self.root / f".incoming-{uuid.uuid4().hex}"
        tmp.mkdir()
        try:
            for name in (manifest.weights_file, *manifest.extra_files, MANIFEST_FILE):
                shutil.copy2(Path(source) / name, tmp / name)
            os.replace(tmp, target)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        return manifest

    def save(self, model: SeqRecModel, vocab: ItemVocab, **kwargs: Any) -> Manifest:
        """Write a model straight into the store (`model.artifacts.save_model` kwargs); not made current.

        A fine-tune of a two-stage version (`parent_version`) keeps the parent's counting parts and ranker: the
        new transformer is served inside the same two-stage model.
        """
        self.root.mkdir(parents=True, exist_ok=True)
        tmp = self.root / f".incoming-{uuid.uuid4().hex}"
        try:
            carried = self._carry_two_stage(kwargs.get("parent_version"), tmp)
            manifest = save_model(tmp, model, vocab, **carried, **kwargs)
            target = self.path(manifest.version)
            if not (target / MANIFEST_FILE).is_file():
                os.replace(tmp, target)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        return manifest

    def _carry_two_stage(self, parent: str | None, tmp: Path) -> dict[str, Any]:
        """Copy a two-stage parent's extra files into `tmp`; the `save_model` kwargs that list them."""
        if parent is None:
            return {}
        manifest = self.manifest(parent)
        if manifest.two_stage is None:
            return {}
        tmp.mkdir(parents=True, exist_ok=True)
        for name in manifest.extra_files:
            shutil.copy2(self.path(parent) / name, tmp / name)
        return {"extra_files": tuple(manifest.extra_files), "two_stage": manifest.two_stage}

    def set_current(
        self,
        version: str,
        *,
        action: str = "promote",
        note: dict[str, Any] | None = None,
        expected: str | None | EllipsisType = ...,
    ) -> Manifest:
        """Verify `version` and point `CURRENT` at it (atomic rename); appends a line to `HISTORY`.

        Args:
            version: the version to serve.
            action: what the `HISTORY` line calls it (promote, rollback, learner, auto-rollback).
            note: extra fields of the `HISTORY` line.
            expected: compare-and-set: only if `CURRENT` is this version (None: empty store); default: always.

        Raises:
            CurrentChanged: `expected` was given and `CURRENT` is something else (nothing changed).
            ModelError / ChecksumMismatch: the version is missing or its files fail verification.
        """
        loaded = load_model(self.path(version))
        with self._locked():
            previous = self.current()
            if expected is not ... and previous != expected:
                msg = f"CURRENT is {previous}, not {expected}: not moved to {version}"
                raise CurrentChanged(msg)
            self._replace_pointer(CURRENT_FILE, version)
            entry = {"at": datetime.now(UTC).isoformat(), "action": action, "version": version, "previous": previous}
            with (self.root / HISTORY_FILE).open("a") as handle:
                handle.write(json.dumps(entry | (note or {})) + "\n")
        return loaded.manifest

    def set_anchor(self, version: str) -> None:
        """Record `version` (which must be stored) as the gate's anchor."""
        self.manifest(version)
        with self._locked():
            self._replace_pointer(ANCHOR_FILE, version)

    def promote(self, source: Path) -> Manifest:
        """`add` a model directory and make it current; a model without a parent (a full `streamrec train`, not a
        learner fine-tune) also becomes the anchor."""
        manifest = self.add(source)
        self.set_current(manifest.version, action="promote")
        if manifest.parent_version is None:
            self.set_anchor(manifest.version)
        return manifest

    def rollback(self, version: str | None = None) -> Manifest:
        """Make `version` current again (default: the current version's parent, else the previous one)."""
        if version is None:
            current = self.current()
            if current is None:
                msg = "nothing to roll back: the store has no current version"
                raise ModelError(msg)
            version = self.manifest(current).parent_version or self._previous(current)
        return self.set_current(version, action="rollback")

    def write_json(self, name: str, document: dict[str, Any]) -> None:
        """Atomically replace `<root>/<name>` (a side file such as the learner's online metrics)."""
        self.root.mkdir(parents=True, exist_ok=True)
        tmp = self.root / f".{name}.tmp-{uuid.uuid4().hex}"
        tmp.write_text(json.dumps(document, indent=1, default=str))
        os.replace(tmp, self.root / name)

    def read_json(self, name: str) -> dict[str, Any]:
        """A side file written by `write_json`; empty if absent."""
        path = self.root / name
        return json.loads(path.read_text()) if path.is_file() else {}

    def history(self) -> list[dict[str, Any]]:
        """Promotions and rollbacks, oldest first."""
        path = self.root / HISTORY_FILE
        if not path.is_file():
            return []
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]

    def _previous(self, current: str) -> str:
        for entry in reversed(self.history()):
            if entry.get("version") == current and entry.get("previous"):
                return str(entry["previous"])
        msg = f"no previous version recorded for {current}"
        raise ModelError(msg)
