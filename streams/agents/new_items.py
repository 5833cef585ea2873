"""New catalog items become recommendable in every worker within seconds, without a model promotion.

The `catalog` agent writes items into the feature store, but only for its own partitions of the items topic;
the serving model needs every item. So each worker also reads the whole compacted items topic without a group
(from its start: items published while it was down count too) and, for titled items its model has no row for,
grows the model off the event loop (`model.new_items.with_new_items`: the text gives the row, the item joins the
counting parts without events, so the text-neighbour source can name it) and swaps the grown pair in between
micro-batches, as a hot swap does; the version stays the same (no weights were trained). After a model swap the
items the new version lacks are added to it again. The per-event path pays nothing for this.
"""

from __future__ import annotations

import asyncio
import logging

import faust
from prometheus_client import Counter
from pydantic import ValidationError

from contracts import Item, Settings
from model.continual import CachedEncoder
from model.new_items import with_new_items
from model.text_tower import MiniLMEncoder, TextEncoder, item_text
from model.torch_scorer import TorchScorer
from model.two_stage import TwoStageScorer
from streams.kafka_clients import follow_partitions
from streams.runtime import Runtime
from streams.serving import ServingModel, serving_pair

__all__ = ["NewItemRows", "attach_new_items"]

log = logging.getLogger(__name__)


class NewItemRows:
    """Collects catalog items and grows the serving model with those it lacks (usable without Faust)."""

    def __init__(self, runtime: Runtime, encoder: TextEncoder | None = None) -> None:
        """Args: the worker runtime (its `serving` is read and swapped), the text model (default: MiniLM)."""
        self.runtime = runtime
        self.catalog: dict[str, Item] = {}
        self._encoder = CachedEncoder(encoder or MiniLMEncoder())
        self._wakeup = asyncio.Event()
        self._grown: ServingModel | None = None  # the pair this follower swapped in last
        self.added = Counter(
            "streamrec_new_item_rows",
            "Rows given to catalog items by this worker (again after a model swap that lacked them)",
            registry=runtime.metrics.registry,
        )

    def offer(self, value: bytes | None) -> None:
        """One record of the items topic (invalid ones are the catalog agent's dead letters, skipped here)."""
        try:
            item = Item.model_validate_json(value or b"")
        except ValidationError:
            return
        old = self.catalog.get(item.item_id)
        self.catalog[item.item_id] = item
        if item_text(item) and (old is None or item_text(old) != item_text(item)):
            self._wakeup.set()

    async def grow(self) -> int:
        """Give the serving model rows for the titled items it lacks; the number of items added."""
        serving = self.runtime.serving
        items = list(self.catalog.values())
        loop = asyncio.get_running_loop()
        scorer, added = await loop.run_in_executor(
            None, with_new_items, serving.scorer, items, self.catalog, self._encoder
        )
        if not added or not isinstance(scorer, TorchScorer | TwoStageScorer):
            self._grown = serving  # nothing this model lacks: no re-check until another model serves
            return 0
        if self.runtime.serving is not serving:  # a model swap happened meanwhile: grow that one instead
            self._wakeup.set()
            return 0
        self._grown = serving_pair(scorer, serving.metrics)
        self.runtime.swap(self._grown)
        self.added.inc(len(added))
        log.info("new items scorable without retraining: %d (%s ...)", len(added), ", ".join(added[:3]))
        return len(added)

    async def run(self, check_seconds: float = 2.0) -> None:
        """Grow when items arrive, or when another model started serving (it may lack the items added)."""
        while True:
            try:
                await asyncio.wait_for(self._wakeup.wait(), check_seconds)
            except TimeoutError:
                if self._grown is None or self.runtime.serving is self._grown:
                    continue
            self._wakeup.clear()
            try:
                await self.grow()
            except Exception:  # the old pair keeps serving; the next arrival or swap tries again
                log.exception("new item rows failed")


def attach_new_items(app: faust.App, runtime: Runtime, settings: Settings) -> NewItemRows:
    """Follow the whole items topic and grow the serving model, as tasks of the worker app."""
    rows = NewItemRows(runtime)

    @app.task  # type: ignore[untyped-decorator]  # faust.App.task is untyped
    async def follow_new_items() -> None:
        grower = asyncio.create_task(rows.run())
        try:
            await follow_partitions(settings, settings.topics.items, rows.offer, from_start=True)
        finally:
            grower.cancel()
            await asyncio.gather(grower, return_exceptions=True)

    return rows
