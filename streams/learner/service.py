"""`Learner`: consumes events (+ catalog items) in its own consumer group, fine-tunes, gates, promotes, announces.

Process and failure model: the learner is a separate process (`streamrec learner`); workers only read the model
store and the `model-updates` topic, so a learner crash never touches serving. It starts from the store's
`CURRENT` version (waiting until there is one) and re-reads `CURRENT` before every cycle, so a rollback or a
manual promotion is followed. Events are consumed while a cycle trains (one cycle at a time), so the next
window is complete when a cycle ends; a promotion is a compare-and-set on `CURRENT` against the cycle's base, so a
rollback made during a cycle is never overwritten (the candidate stays in the store, unpromoted). Offsets are
committed only after a cycle has used the events (promoted or not), so a restarted learner resumes after the last
finished cycle; it first re-reads up to `restore_events` events per partition before its committed offsets to
rebuild the user histories and the replay reservoir, and says so in its `ready` line (a group without committed
offsets is logged as a fresh start, never silently). Heavy work runs in a thread, off the event loop.

A cycle's model work (vocabulary growth, fine-tune, gate) is `model.continual.run_cycle`, a plain function; this
class feeds it the window and the stored versions to compare with, and acts on its `CycleDecision` (save the
candidate, compare-and-set `CURRENT`, publish the `ModelUpdate`).

Every cycle appends one JSON line to `<store>/learner.jsonl`: window, gate metrics (`model.gate`), decision and
why. Online effects (`streams.learner.effects`: CTR and conversion per model version and reason kind, from the
recommendations topic joined with later events) are kept in `<store>/online.json` and as Prometheus counters;
a version whose effects drop significantly below its parent's is rolled back (`streams.learner.rollback`).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from prometheus_client import CollectorRegistry

from contracts import Event, Item, ModelUpdate, Recommendation, Settings
from model.continual import CachedEncoder, CycleDecision, CycleInputs, ReplayReservoir, run_cycle
from model.served_ranking import ServedModel
from model.store import CurrentChanged, ModelStore
from model.stream_buffer import CycleData, StreamBuffer
from model.text_tower import MiniLMEncoder, TextEncoder
from streams.kafka_clients import client_kwargs, follow_partitions
from streams.learner.effects import OnlineEffects
from streams.learner.kafka import model_update, publish_update
from streams.learner.restore import restore_histories
from streams.learner.rollback import RollbackWatch, check_and_roll_back
from streams.learner.settings import LearnerSettings
from streams.learner.window import Windows
from streams.validation import EventLimits, RawRecord, validate_event

__all__ = ["LOG_FILE", "ONLINE_FILE", "Learner", "LearnerSettings"]

log = logging.getLogger(__name__)
LOG_FILE = "learner.jsonl"
ONLINE_FILE = "online.json"


@dataclass
class _Serving:
    served: ServedModel  # the transformer, its vocabulary and the two-stage model it is served in
    version: str


class Learner:
    """The continual-learning consumer (see the module docstring)."""

    def __init__(
        self,
        settings: Settings,
        options: LearnerSettings | None = None,
        store: ModelStore | None = None,
        encoder: TextEncoder | None = None,
        registry: CollectorRegistry | None = None,
    ) -> None:
        """Args: settings (Kafka, topics, store dir), options, store (default `settings.model_dir`), text model,
        Prometheus registry for the online effect counters."""
        self.settings = settings
        self.options = options or LearnerSettings()
        self.store = store or ModelStore(settings.model_dir)
        self._encoder = CachedEncoder(encoder or MiniLMEncoder()) if self.options.text_init else None
        self._catalog: dict[str, Item] = {}
        self._categories: dict[str, str] = {}
        self._new_catalog: list[str] = []
        self._reservoir = ReplayReservoir(self.options.continual.reservoir_size, self.options.continual.seed)
        self._serving: _Serving | None = None
        self._frozen_version = ""
        self._references: dict[str, ServedModel] = {}
        self._buffer: StreamBuffer | None = None
        self._producer: AIOKafkaProducer | None = None
        self.effects = OnlineEffects(self.options.effects_window_seconds, registry=registry)
        self._rollback_watch = RollbackWatch()  # each version is tested once per look
        self.cycles = 0

    async def run(self, stop: asyncio.Event) -> None:
        """Consume and learn until `stop` is set."""
        if not await self._wait_for_model(stop):
            return
        assert self._serving is not None  # noqa: S101
        self._buffer = StreamBuffer(self._serving.served.model.config.max_len + 1, self._categories)
        topics = self.settings.topics
        kafka = client_kwargs(self.settings)
        events = AIOKafkaConsumer(
            topics.events,
            group_id=f"{self.settings.topic_prefix}-learner",
            enable_auto_commit=False,
            auto_offset_reset="earliest" if self.options.from_beginning else "latest",
            **kafka,
        )
        producer = AIOKafkaProducer(acks="all", **kafka)
        await events.start()
        await producer.start()
        self._producer = producer
        tasks = [asyncio.create_task(self._follow_catalog()), asyncio.create_task(self._follow_effects(stop))]
        try:
            await self._wait_for_assignment(events, stop)
            await self._consume(events, producer, stop)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await events.stop()
            await producer.stop()

    async def _wait_for_assignment(self, consumer: AIOKafkaConsumer, stop: asyncio.Event) -> None:
        """Wait for the group's partitions and their start positions; then log a `ready` line."""
        while not consumer.assignment() and not stop.is_set():
            await asyncio.sleep(0.1)
        assignment = sorted(consumer.assignment())
        committed = {tp: await consumer.committed(tp) for tp in assignment}
        positions = {f"{tp.topic}:{tp.partition}": await consumer.position(tp) for tp in assignment}
        assert self._serving is not None and self._buffer is not None  # noqa: S101
        found = {tp: c for tp, c in committed.items() if c is not None}
        restored = await restore_histories(
            self.settings, self._buffer, self._reservoir, found, self.options.restore_events
        )
        record = {"kind": "ready", "at": datetime.now(UTC).isoformat(), "base": self._serving.version,
                  "positions": positions, "restored": restored}  # fmt: skip
        self._write_log(record)
        log.info(
            "learner ready on %d partitions, base %s, restored %s", len(positions), self._serving.version, restored
        )

    async def _wait_for_model(self, stop: asyncio.Event) -> bool:
        warned = False
        while not stop.is_set():
            if self.store.current() is not None:
                self._reload()
                return True
            if not warned:
                log.warning("model store %s has no CURRENT version yet; waiting (promote one first)", self.store.root)
                warned = True
            await _sleep_or_stop(stop, 2.0)
        return False

    def _reload(self) -> None:
        loaded = self.store.load()
        self._serving = _Serving(ServedModel.of(loaded), loaded.manifest.version)
        if not self._frozen_version and self.options.track_frozen:
            self._frozen_version = self.options.frozen_version or loaded.manifest.version
        log.info("learner serving base: %s (%d items)", loaded.manifest.version, len(loaded.vocab))

    async def _follow_catalog(self) -> None:
        """The compacted items topic from the start: titles and categories for new items."""
        await follow_partitions(self.settings, self.settings.topics.items, self._add_item, from_start=True)

    async def _follow_effects(self, stop: asyncio.Event) -> None:
        """New recommendations (from the end) for the online effect metrics; online.json every few seconds."""
        writer = asyncio.create_task(self._write_effects(stop))
        try:
            topic = self.settings.topics.recommendations
            await follow_partitions(self.settings, topic, self._add_recommendation, from_start=False)
        finally:
            writer.cancel()
            await asyncio.gather(writer, return_exceptions=True)

    def _add_recommendation(self, value: bytes | None) -> None:
        try:
            rec = Recommendation.model_validate_json(value or b"")
        except ValueError:
            return
        self.effects.recommended(rec, time.monotonic())

    async def _write_effects(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            await _sleep_or_stop(stop, self.options.effects_every_seconds)
            snapshot = self._save_effects()
            update = self.check_rollback(snapshot["versions"])
            if update is not None and self._producer is not None:
                await publish_update(self.settings, update, self._producer)

    def check_rollback(self, versions: Mapping[str, Mapping[str, float]]) -> ModelUpdate | None:
        """Apply the automatic rollback rule to the serving version; the `ModelUpdate` to publish if it moved."""
        now = datetime.now(UTC)
        outcome = check_and_roll_back(self.store, versions, self.options.rollback, now, self._rollback_watch)
        if outcome is None or not outcome.decision.roll_back:
            return None
        self._write_log({"kind": "rollback", "at": datetime.now(UTC).isoformat(), **outcome.as_dict()})
        if not outcome.rolled_back:
            return None  # CURRENT moved meanwhile: whoever moved it announced it
        log.warning("automatic rollback %s -> %s: %s", outcome.child, outcome.parent, outcome.decision.reason)
        manifest = self.store.manifest(outcome.parent)
        return model_update(manifest, self.store.uri(outcome.parent), dict(manifest.metrics) | outcome.metrics())

    def _save_effects(self) -> dict[str, Any]:
        snapshot = self.effects.snapshot() | {"updated_at": datetime.now(UTC).isoformat()}
        self.store.write_json(ONLINE_FILE, snapshot)
        return snapshot

    def _add_item(self, value: bytes | None) -> None:
        try:
            item = Item.model_validate_json(value or b"")
        except ValueError:
            return  # the worker dead-letters bad catalog records; the learner only needs the good ones
        old = self._catalog.get(item.item_id)
        if old is not None and old.ts > item.ts:
            return
        self._catalog[item.item_id] = item
        if item.category is not None:
            self._categories[item.item_id] = item.category
        if old is None:
            self._new_catalog.append(item.item_id)

    async def _consume(self, consumer: AIOKafkaConsumer, producer: AIOKafkaProducer, stop: asyncio.Event) -> None:
        assert self._buffer is not None  # noqa: S101
        windows = Windows()
        last_cycle = time.monotonic()
        limits = EventLimits.from_settings(self.settings)
        running: tuple[asyncio.Task[None], dict[TopicPartition, int]] | None = None
        while not stop.is_set():
            batch = await consumer.getmany(timeout_ms=200, max_records=5000)
            now = datetime.now(UTC)
            for tp, messages in batch.items():
                for m in messages:
                    record = RawRecord.of(m)
                    checked = validate_event(record, limits, now=now)
                    if isinstance(checked, Event):
                        self._buffer.add(checked)
                        self.effects.event(checked, time.monotonic())
                    windows.consumed(tp, m.offset, isinstance(checked, Event))
            if running is not None and running[0].done():
                running[0].result()  # a failed cycle fails the learner (offsets stay uncommitted)
                await consumer.commit(running[1])
                running, last_cycle = None, time.monotonic()
            pending = self._buffer.pending
            due = time.monotonic() - last_cycle >= self.options.every_seconds and pending >= self.options.min_events
            if running is None and (pending >= self.options.every_events or due):
                # Cut now; keep consuming while the cycle trains, so the next window is ready when it ends.
                cut = windows.cut(self._buffer, self._reservoir, self.options.max_window_events)
                data = self._buffer.cut(self.options.continual.holdout_fraction)
                running = (asyncio.create_task(self._run_cycle(producer, data, cut.offsets, cut.log)), cut.commit)
        if running is not None:  # stopping: finish the cycle in flight and commit what it used
            await running[0]
            await consumer.commit(running[1])

    async def _run_cycle(
        self, producer: AIOKafkaProducer, data: CycleData, offsets: dict[str, list[int]], trained: dict[str, Any]
    ) -> None:
        loop = asyncio.get_running_loop()
        serving = self._serving.version if self._serving else None
        record = await loop.run_in_executor(None, self._cycle, data, offsets)
        record |= trained
        self.cycles += 1
        # The online signal beside the offline gate: effects of the version that served during this window.
        snapshot = self._save_effects()
        if serving in snapshot["versions"]:
            record["online_serving"] = {"version": serving, **snapshot["versions"][serving]}
        if record.get("promoted"):
            manifest = self.store.manifest(record["version"])
            update = model_update(manifest, self.store.uri(manifest.version), record["metrics"])
            await publish_update(self.settings, update, producer)
            record["published_at"] = datetime.now(UTC).isoformat()
        self._write_log(record)
        log.info("cycle %d: %s", self.cycles, record["reason"])

    def _cycle(self, data: CycleData, offsets: dict[str, list[int]]) -> dict[str, Any]:
        """One update cycle on `data` (runs in a worker thread); `offsets`: per partition [first, end)."""
        started = time.perf_counter()
        if self.store.current() != (self._serving.version if self._serving else None):
            self._reload()  # someone promoted or rolled back: learn on top of what is serving
        assert self._serving is not None  # noqa: S101
        base = self._serving
        record: dict[str, Any] = {
            "kind": "cycle", "at": datetime.now(UTC).isoformat(), "cycle": self.cycles + 1, "base": base.version,
            "events": data.events, "train_sequences": len(data.train), "gate_points": len(data.points),
            "first_ts": _iso(data.first_ts), "last_ts": _iso(data.last_ts), "promoted": False, "offsets": offsets,
        }  # fmt: skip
        inputs = CycleInputs(
            base_version=base.version, catalog=self._catalog, new_items=tuple(self._new_catalog),
            reservoir=self._reservoir, encoder=self._encoder, anchor_version=self.store.anchor(),
            frozen_version=self._frozen_version, reference=self._reference,
        )  # fmt: skip
        self._new_catalog = []
        decision = run_cycle(base.served, data, inputs, self.options.continual, self.options.gate)
        self._reservoir.add(data.train)
        record |= decision.record
        if decision.carry and self._buffer is not None:
            self._buffer.carry(data.users)  # no decision yet: train on these users again next cycle
        if decision.promote and isinstance(decision.candidate, ServedModel):
            phase = time.perf_counter()
            self._promote(record, decision, base, _Serving(decision.candidate, ""), data, offsets)
            record["save_seconds"] = round(time.perf_counter() - phase, 3)
        return _finish(record, started)

    def _reference(self, version: str) -> ServedModel:
        """A stored version as served (the anchor and the frozen reference; the last two are kept loaded)."""
        if version not in self._references:
            loaded = self.store.load(version)
            self._references = dict(list(self._references.items())[-1:])
            self._references[version] = ServedModel.of(loaded)
        return self._references[version]

    def _promote(
        self,
        record: dict[str, Any],
        decision: CycleDecision,
        base: _Serving,
        candidate: _Serving,
        data: CycleData,
        offsets: dict[str, list[int]],
    ) -> None:
        """Save the candidate and compare-and-set `CURRENT` from the cycle's base to it."""
        cfg = self.options.continual
        metrics = decision.metrics
        window = {"events": data.events, "first_ts": _iso(data.first_ts), "last_ts": _iso(data.last_ts),
                  "train_sequences": len(data.train), "new_items": record["new_items"],
                  "topic": self.settings.topics.events, "offsets": offsets}  # fmt: skip
        training = {"steps": record["steps"], "lr": cfg.lr, "batch_size": cfg.batch_size,
                    "replay_fraction": cfg.replay_fraction, "loss_last": record["loss_last"]}  # fmt: skip
        manifest = self.store.save(
            candidate.served.model, candidate.served.vocab, parent_version=base.version, data=window, metrics=metrics,
            training=training,
        )  # fmt: skip
        try:
            self.store.set_current(
                manifest.version, action="learner", note={"gate": decision.reason}, expected=base.version
            )
        except CurrentChanged as exc:
            record |= {"version": manifest.version, "reason": f"passed the gate but not promoted: {exc}"}
            return  # someone rolled back / promoted during the cycle: theirs stays; the next cycle follows it
        self._serving = _Serving(candidate.served, manifest.version)
        record |= {"promoted": True, "version": manifest.version, "metrics": metrics}

    def _write_log(self, record: Mapping[str, Any]) -> None:
        self.store.root.mkdir(parents=True, exist_ok=True)
        with (self.store.root / LOG_FILE).open("a") as handle:
            handle.write(json.dumps(record, default=str) + "\n")


def _finish(record: dict[str, Any], started: float) -> dict[str, Any]:
    record["seconds"] = round(time.perf_counter() - started, 3)
    return record


def _iso(ts: datetime | None) -> str | None:
    return None if ts is None else ts.isoformat()


async def _sleep_or_stop(stop: asyncio.Event, seconds: float) -> None:
    try:
        await asyncio.wait_for(stop.wait(), timeout=seconds)
    except TimeoutError:
        return
