"""`Learner`: consumes events (+ catalog items) in its own consumer group, fine-tunes, gates, promotes, announces.

Process and failure model: the learner is a separate process (`streamrec learner`); workers only read the model
store and the `model-updates` topic, so a learner crash never touches serving. It starts from the store's
`CURRENT` version (waiting until there is one) and re-reads `CURRENT` before every cycle, so a rollback or a
manual promotion is followed. Offsets are committed only after a cycle has used the events (promoted or not),
so a restarted learner resumes after the last finished cycle. Heavy work runs in a thread, off the event loop
(the consumer keeps its heartbeats).

Every cycle appends one JSON line to `<store>/learner.jsonl`: window, gate metrics, decision and why. Online
effects (`streams.learner.effects`: CTR and conversion per model version and reason kind, from the
recommendations topic joined with later events) are kept in `<store>/online.json` and as Prometheus counters.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from prometheus_client import CollectorRegistry

from contracts import Event, Item, Recommendation, Settings
from model.continual import (
    CachedEncoder,
    ContinualConfig,
    Ranker,
    ReplayReservoir,
    fine_tune,
    gate,
    grow_vocabulary,
    ndcg_at_10,
)
from model.store import ModelStore
from model.stream_buffer import CycleData, StreamBuffer
from model.text_tower import MiniLMEncoder, TextEncoder
from model.transformer import SeqRecModel
from model.vocab import ItemVocab
from streams.kafka_clients import client_kwargs
from streams.learner.effects import OnlineEffects
from streams.learner.kafka import model_update, publish_update
from streams.validation import RawRecord, validate_event

__all__ = ["LOG_FILE", "ONLINE_FILE", "Learner", "LearnerOptions"]

log = logging.getLogger(__name__)
LOG_FILE = "learner.jsonl"
ONLINE_FILE = "online.json"


@dataclass(frozen=True)
class LearnerOptions:
    """When to run a cycle and how; `continual` holds the fine-tuning and gate knobs."""

    every_events: int = 500  # a cycle as soon as this many events are pending ...
    every_seconds: float = 30.0  # ... or this long after the previous cycle, with at least `min_events` pending
    min_events: int = 50
    from_beginning: bool = False  # a new consumer group starts at the earliest offset (default: latest)
    text_init: bool = True  # initialise new titled items from MiniLM text (loaded only when needed)
    track_frozen: bool = True  # also score a fixed reference version on each window (drift report) ...
    frozen_version: str | None = None  # ... this one (default: the version this process started from)
    effects_window_seconds: float = 1800.0  # a click/cart/purchase this soon after a recommendation is a hit
    effects_every_seconds: float = 10.0  # how often online.json is rewritten
    continual: ContinualConfig = field(default_factory=ContinualConfig)


@dataclass
class _Serving:
    model: SeqRecModel
    vocab: ItemVocab
    version: str


class Learner:
    """The continual-learning consumer (see the module docstring)."""

    def __init__(
        self,
        settings: Settings,
        options: LearnerOptions | None = None,
        store: ModelStore | None = None,
        encoder: TextEncoder | None = None,
        registry: CollectorRegistry | None = None,
    ) -> None:
        """Args: settings (Kafka, topics, store dir), options, store (default `settings.model_dir`), text model,
        Prometheus registry for the online effect counters."""
        self.settings = settings
        self.options = options or LearnerOptions()
        self.store = store or ModelStore(settings.model_dir)
        self._encoder = CachedEncoder(encoder or MiniLMEncoder()) if self.options.text_init else None
        self._catalog: dict[str, Item] = {}
        self._categories: dict[str, str] = {}
        self._new_catalog: list[str] = []
        self._reservoir = ReplayReservoir(self.options.continual.reservoir_size, self.options.continual.seed)
        self._serving: _Serving | None = None
        self._frozen: Ranker | None = None
        self._frozen_version = ""
        self._buffer: StreamBuffer | None = None
        self.effects = OnlineEffects(self.options.effects_window_seconds, registry=registry)
        self.cycles = 0

    async def run(self, stop: asyncio.Event) -> None:
        """Consume and learn until `stop` is set."""
        if not await self._wait_for_model(stop):
            return
        assert self._serving is not None  # noqa: S101
        self._buffer = StreamBuffer(self._serving.model.config.max_len + 1, self._categories)
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
        positions = {f"{tp.topic}:{tp.partition}": await consumer.position(tp) for tp in consumer.assignment()}
        assert self._serving is not None  # noqa: S101
        record = {"kind": "ready", "at": datetime.now(UTC).isoformat(), "base": self._serving.version}
        self._write_log(record | {"positions": positions})
        log.info("learner ready on %d partitions, base %s", len(positions), self._serving.version)

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
        self._serving = _Serving(loaded.model, loaded.vocab, loaded.manifest.version)
        if self._frozen is None and self.options.track_frozen:
            reference = loaded if self.options.frozen_version is None else self.store.load(self.options.frozen_version)
            self._frozen = Ranker(reference.model, reference.vocab)
            self._frozen_version = reference.manifest.version
        log.info("learner serving base: %s (%d items)", loaded.manifest.version, len(loaded.vocab))

    async def _follow(self, topic: str, from_start: bool, handle: Callable[[bytes | None], None]) -> None:
        """Read every partition of `topic` without a group (from its start or its end) until cancelled."""
        consumer = AIOKafkaConsumer(group_id=None, enable_auto_commit=False, **client_kwargs(self.settings))
        await consumer.start()
        try:
            partitions = consumer.partitions_for_topic(topic)
            while not partitions:
                await consumer._client.force_metadata_update()  # noqa: SLF001 (no public refresh in aiokafka)
                partitions = consumer.partitions_for_topic(topic)
                if not partitions:
                    await asyncio.sleep(1.0)
            consumer.assign([TopicPartition(topic, p) for p in sorted(partitions)])
            await (consumer.seek_to_beginning() if from_start else consumer.seek_to_end())
            while True:
                for messages in (await consumer.getmany(timeout_ms=1000)).values():
                    for m in messages:
                        handle(m.value)
        finally:
            await consumer.stop()

    async def _follow_catalog(self) -> None:
        """The compacted items topic from the start: titles and categories for new items."""
        await self._follow(self.settings.topics.items, True, self._add_item)

    async def _follow_effects(self, stop: asyncio.Event) -> None:
        """New recommendations (from the end) for the online effect metrics; online.json every few seconds."""
        writer = asyncio.create_task(self._write_effects(stop))
        try:
            await self._follow(self.settings.topics.recommendations, False, self._add_recommendation)
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
            self._save_effects()

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
        offsets: dict[TopicPartition, int] = {}
        starts: dict[TopicPartition, int] = {}  # first offset of the current window, per partition
        last_cycle = time.monotonic()
        skew = timedelta(seconds=self.settings.max_future_skew_seconds)
        limit = self.settings.max_event_bytes
        while not stop.is_set():
            batch = await consumer.getmany(timeout_ms=200, max_records=5000)
            now = datetime.now(UTC)
            for tp, messages in batch.items():
                for m in messages:
                    record = RawRecord(m.value, m.key, m.topic, m.partition, m.offset)
                    checked = validate_event(record, max_bytes=limit, max_future_skew=skew, now=now)
                    if isinstance(checked, Event):
                        self._buffer.add(checked)
                        self.effects.event(checked, time.monotonic())
                    starts.setdefault(tp, m.offset)
                    offsets[tp] = m.offset + 1
            pending = self._buffer.pending
            due = time.monotonic() - last_cycle >= self.options.every_seconds and pending >= self.options.min_events
            if pending >= self.options.every_events or due:
                done = dict(offsets)
                window = {str(tp.partition): [start, offsets[tp]] for tp, start in starts.items()}
                starts = {}
                await self._run_cycle(producer, window)
                await consumer.commit(done)
                last_cycle = time.monotonic()

    async def _run_cycle(self, producer: AIOKafkaProducer, offsets: dict[str, list[int]]) -> None:
        assert self._buffer is not None  # noqa: S101
        data = self._buffer.cut(self.options.continual.holdout_fraction)
        loop = asyncio.get_running_loop()
        serving = self._serving.version if self._serving else None
        record = await loop.run_in_executor(None, self._cycle, data, offsets)
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
        cfg = self.options.continual
        if self.store.current() != (self._serving.version if self._serving else None):
            self._reload()  # someone promoted or rolled back: learn on top of what is serving
        assert self._serving is not None  # noqa: S101
        base = self._serving
        record: dict[str, Any] = {
            "kind": "cycle", "at": datetime.now(UTC).isoformat(), "cycle": self.cycles + 1, "base": base.version,
            "events": data.events, "train_sequences": len(data.train), "gate_points": len(data.points),
            "first_ts": _iso(data.first_ts), "last_ts": _iso(data.last_ts), "promoted": False, "offsets": offsets,
        }  # fmt: skip
        new = [i for i in data.items + self._new_catalog if i not in base.vocab]
        self._new_catalog = []
        model, vocab, added = grow_vocabulary(
            base.model, base.vocab, new, self._catalog, self._encoder if self._catalog else None, cfg.growth
        )
        record["new_items"] = len(added)
        tuned = fine_tune(model, vocab, data.train, self._reservoir, cfg)
        self._reservoir.add(data.train)
        record |= {"steps": tuned.steps, "loss_first": tuned.loss_first, "loss_last": tuned.loss_last}
        record["max_grad_norm"] = tuned.max_grad_norm
        if tuned.model is None:
            record["reason"] = f"update discarded: {tuned.reason}"
            return _finish(record, started)
        result = gate(Ranker(tuned.model, vocab), Ranker(base.model, base.vocab), data.points, cfg)
        record |= {"candidate_ndcg": result.candidate_ndcg, "serving_ndcg": result.serving_ndcg}
        if self._frozen is not None and result.points:
            record["frozen_ndcg"] = ndcg_at_10(self._frozen, data.points[-cfg.max_gate_points :])
            record["frozen_version"] = self._frozen_version
        record["reason"] = result.reason
        if result.points < cfg.min_gate_points and self._buffer is not None:
            self._buffer.carry(data.users)  # no decision yet: train on these users again next cycle
        if not result.promote:
            return _finish(record, started)
        metrics = {"ndcg@10": result.candidate_ndcg, "serving_ndcg@10": result.serving_ndcg,
                   "gate_points": float(result.points)}  # fmt: skip
        window = {"events": data.events, "first_ts": _iso(data.first_ts), "last_ts": _iso(data.last_ts),
                  "train_sequences": len(data.train), "new_items": len(added), "topic": self.settings.topics.events,
                  "offsets": offsets}  # fmt: skip
        training = {"steps": tuned.steps, "lr": cfg.lr, "batch_size": cfg.batch_size,
                    "replay_fraction": cfg.replay_fraction, "loss_last": tuned.loss_last}  # fmt: skip
        manifest = self.store.save(
            tuned.model, vocab, parent_version=base.version, data=window, metrics=metrics, training=training
        )
        self.store.set_current(manifest.version, action="learner", note={"gate": result.reason})
        self._serving = _Serving(tuned.model, vocab, manifest.version)
        record |= {"promoted": True, "version": manifest.version, "metrics": metrics}
        return _finish(record, started)

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
