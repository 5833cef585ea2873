"""Hot model swap in every worker: follow `<prefix>.model-updates` and switch between micro-batches.

Every worker must see every update, so this is not a group consumer (a group would split the partitions among
the workers): each worker reads all partitions from their end. After seeking, it compares the store's
`CURRENT` with what it serves, so an update published while the worker was starting is not missed. Loading,
verification (checksum against the announcement, shapes), the backend build and a smoke score run in an
executor, off the event loop; only then is `Runtime.swap` called. A model that fails is refused and logged; the
old one keeps serving.

Skip to newest: reading the topic and loading are decoupled. Every update read replaces the one pending (the
replaced one is counted as `superseded` and never loaded); one applier loads whatever is pending when it is
free. So a burst of updates, or updates arriving during a slow load (a TensorRT compile takes minutes), costs
one load of the newest, not one per update.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import faust
from prometheus_client import Counter
from pydantic import ValidationError

from contracts import ModelError, ModelUpdate, Settings
from model.store import ModelStore, store_root
from streams.kafka_clients import follow_partitions
from streams.runtime import Runtime
from streams.serving import load_serving

__all__ = ["ModelFollower", "attach_model_updates"]

log = logging.getLogger(__name__)


class ModelFollower:
    """Applies `ModelUpdate`s to a `Runtime` (usable without Faust, e.g. in tests)."""

    def __init__(self, runtime: Runtime, settings: Settings) -> None:
        """Args: the worker runtime to swap, settings (Kafka, topics, model store, backend)."""
        self.runtime = runtime
        self.settings = settings
        self.swaps = Counter(
            "streamrec_model_swaps", "Model updates applied or refused", ["outcome"], registry=runtime.metrics.registry
        )
        self._lock = asyncio.Lock()
        self._pending: ModelUpdate | None = None  # the newest update read and not yet loaded
        self._wakeup = asyncio.Event()

    async def apply(self, directory: Path, version: str, sha256: str | None) -> bool:
        """Load `directory` off the loop and swap to it; False (old model kept) if it cannot serve."""
        async with self._lock:
            if self.runtime.serving.version == version:
                return True
            loop = asyncio.get_running_loop()
            try:
                serving = await loop.run_in_executor(None, load_serving, directory, self.settings, sha256)
            except ModelError:
                self.swaps.labels(outcome="refused").inc()
                log.exception("model update %s refused; still serving %s", version, self.runtime.serving.version)
                return False
            old = self.runtime.serving.version
            self.runtime.swap(serving)
            self.swaps.labels(outcome="applied").inc()
            log.info("model swapped: %s -> %s", old, serving.version)
            return True

    async def sync_with_store(self) -> None:
        """Serve the store's `CURRENT` version if it differs from the serving one."""
        store = ModelStore(self.settings.model_dir)
        version = store.current()
        if version is not None and version != self.runtime.serving.version:
            await self.apply(store.path(version), version, None)

    def offer(self, value: bytes | None) -> ModelUpdate | None:
        """Decode one record of the model-updates topic and make it the pending update (superseding any other)."""
        try:
            update = ModelUpdate.model_validate_json(value or b"")
        except ValidationError:
            self.swaps.labels(outcome="invalid").inc()
            log.exception("undecodable model update ignored")
            return None
        if self._pending is not None:
            self.swaps.labels(outcome="superseded").inc()
            log.info("model update %s superseded by %s before loading", self._pending.version, update.version)
        self._pending = update
        self._wakeup.set()
        return update

    async def drain(self) -> None:
        """Load the pending update, then whatever became pending meanwhile, until none is left."""
        while self._pending is not None:
            update, self._pending = self._pending, None
            try:
                directory = store_root(update.uri)
            except ModelError:
                self.swaps.labels(outcome="refused").inc()
                log.exception("model update %s has an unsupported URI", update.version)
                continue
            if not directory.resolve().is_relative_to(Path(self.settings.model_dir).resolve()):
                # Only the model store is trusted: an update naming another directory is someone else's files.
                self.swaps.labels(outcome="outside_store").inc()
                log.error("model update %s refused: %s is outside the model store", update.version, directory)
                continue
            await self.apply(directory, update.version, update.sha256)

    async def handle(self, value: bytes | None) -> None:
        """One record of the model-updates topic: offer it and load the newest pending one."""
        self.offer(value)
        await self.drain()

    async def _applier(self) -> None:
        while True:
            await self._wakeup.wait()
            self._wakeup.clear()
            try:
                await self.drain()
            except Exception:  # an unexpected failure must not stop the follower: the old model keeps serving
                log.exception("applying a model update failed; still serving %s", self.runtime.serving.version)

    async def run(self) -> None:
        """Follow the topic until cancelled (every partition, from its end, after checking the store)."""
        applier = asyncio.create_task(self._applier())
        try:
            await follow_partitions(
                self.settings, self.settings.topics.model_updates, self.offer, from_start=False,
                on_ready=self.sync_with_store,
            )  # fmt: skip
        finally:
            applier.cancel()
            await asyncio.gather(applier, return_exceptions=True)


def attach_model_updates(app: faust.App, runtime: Runtime, settings: Settings) -> ModelFollower:
    """Run a `ModelFollower` as a task of the worker app."""
    follower = ModelFollower(runtime, settings)

    @app.task  # type: ignore[untyped-decorator]  # faust.App.task is untyped
    async def follow_model_updates() -> None:
        await follower.run()

    return follower
