"""What the dashboard shows, kept by the worker: per-second series, dead letters, model versions, last answers.

`LiveState.tick()` runs once a second (a Faust timer) and turns the worker's Prometheus metrics into deltas:
events and recommendations per second, the latency distribution of that second (p50/p95/p99 interpolated in
the histogram's buckets, mean exact from `_sum`/`_count`). `DashboardSensor` (a Faust sensor) remembers the
users whose events arrived most recently; `LiveState.sent_recommendation` keeps the last recommendation this
worker sent to each user (raw bytes; parsed only when a user is looked at). The recommend agent calls it for
every recommendation, because it hands them to the producer directly, past Faust's topic API and its sensors.
"""

from __future__ import annotations

import json
import time
from collections import OrderedDict, deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import faust
from faust.types import TP, Message, PendingMessage, ProducerT
from prometheus_client import Histogram

from feature_store import FeatureStore
from streams.metrics import WorkerMetrics

__all__ = ["DashboardSensor", "LiveState", "TitleLookup", "histogram_quantile"]

_SERIES_POINTS = 300  # five minutes at one point per second
_LAST_RECS = 5000  # users whose last recommendation is kept
_RECENT_USERS = 50


def histogram_quantile(q: float, bounds: list[float], counts: list[float]) -> float | None:
    """q-quantile of a histogram (`counts[i]` observations in `(bounds[i-1], bounds[i]]`), linear in the bucket.

    Example:
        >>> histogram_quantile(0.5, [1.0, 2.0, float("inf")], [0, 10, 0])
        1.5
    """
    total = sum(counts)
    if total <= 0:
        return None
    rank, seen, lower = q * total, 0.0, 0.0
    for upper, c in zip(bounds, counts, strict=True):
        if c > 0 and seen + c >= rank:
            if upper == float("inf"):
                return lower
            return lower + (upper - lower) * (rank - seen) / c
        seen += c
        lower = upper if upper != float("inf") else lower
    return lower


def _cumulative_buckets(h: Histogram) -> tuple[list[float], list[float], float, float]:
    """(upper bounds, cumulative counts, sum, count) of an unlabelled histogram."""
    bounds, cum, total_sum, total_count = [], [], 0.0, 0.0
    for metric in h.collect():
        for s in metric.samples:
            if s.name.endswith("_bucket"):
                bounds.append(float(s.labels["le"]))
                cum.append(s.value)
            elif s.name.endswith("_sum"):
                total_sum = s.value
            elif s.name.endswith("_count"):
                total_count = s.value
    return bounds, cum, total_sum, total_count


def _counter_total(c: Any) -> float:
    return float(sum(s.value for m in c.collect() for s in m.samples if s.name.endswith("_total")))


def _dead_letters(c: Any) -> dict[str, int]:
    out: dict[str, int] = {}
    for m in c.collect():
        for s in m.samples:
            if s.name.endswith("_total"):
                out[s.labels["reason"]] = int(s.value)
    return out


@dataclass
class LiveState:
    """Rolling series (one point per `tick`), model-version history and the sensor's memory."""

    metrics: WorkerMetrics
    series: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=_SERIES_POINTS))
    versions: list[dict[str, Any]] = field(default_factory=list)
    last_recs: OrderedDict[str, bytes] = field(default_factory=OrderedDict)
    recent_users: OrderedDict[str, float] = field(default_factory=OrderedDict)
    recs_sent: int = 0
    _prev: dict[str, Any] = field(default_factory=dict)

    def tick(
        self, model_version: str, now: float | None = None, model_metrics: Mapping[str, float] | None = None
    ) -> dict[str, Any]:
        """Append one point (rates since the previous tick) and note a model change (with the new version's gate
        metrics); returns the point."""
        now = time.time() if now is None else now
        events = _counter_total(self.metrics.events_in)
        dead = sum(_dead_letters(self.metrics.dead_letters).values())
        bounds, cum, lat_sum, lat_count = _cumulative_buckets(self.metrics.recommendation_latency)
        prev = self._prev or {"t": now, "events": events, "dead": dead, "cum": cum, "sum": lat_sum, "count": lat_count}
        dt = max(now - prev["t"], 1e-6)
        per_bucket = [c - p for c, p in zip(cum, prev["cum"], strict=True)]
        in_bucket = [per_bucket[0], *(b - a for a, b in zip(per_bucket, per_bucket[1:], strict=False))]
        n = lat_count - prev["count"]

        def ms(q: float) -> float | None:
            v = histogram_quantile(q, bounds, in_bucket)
            return None if v is None else round(v * 1000.0, 3)

        point = {
            "t": now,
            "events_per_s": round((events - prev["events"]) / dt, 2),
            "recs_per_s": round(n / dt, 2),
            "dead_letters_per_s": round((dead - prev["dead"]) / dt, 2),
            "latency_ms": {
                "p50": ms(0.5),
                "p95": ms(0.95),
                "p99": ms(0.99),
                "mean": round((lat_sum - prev["sum"]) / n * 1000.0, 3) if n > 0 else None,
            },
        }
        self._prev = {"t": now, "events": events, "dead": dead, "cum": cum, "sum": lat_sum, "count": lat_count}
        self.series.append(point)
        if not self.versions or self.versions[-1]["version"] != model_version:
            self.versions.append({"t": now, "version": model_version, "metrics": dict(model_metrics or {})})
        return point

    def stats(self) -> dict[str, Any]:
        """The JSON the dashboard polls."""
        letters = _dead_letters(self.metrics.dead_letters)
        return {
            "series": list(self.series),
            "totals": {
                "events": int(_counter_total(self.metrics.events_in)),
                "recommendations": int(_cumulative_buckets(self.metrics.recommendation_latency)[3]),
                "dead_letters": sum(letters.values()),
            },
            "dead_letters": letters,
            "models": self.versions,
            "recent_users": list(reversed(self.recent_users)),
        }

    def saw_event(self, user_id: str, now: float | None = None) -> None:
        """Remember that `user_id` just had an event."""
        self.recent_users[user_id] = time.time() if now is None else now
        self.recent_users.move_to_end(user_id)
        while len(self.recent_users) > _RECENT_USERS:
            self.recent_users.popitem(last=False)

    def sent_recommendation(self, user_id: str, raw: bytes) -> None:
        """Keep the raw recommendation just sent for `user_id` (bounded, least recently updated dropped)."""
        self.recs_sent += 1
        self.last_recs[user_id] = raw
        self.last_recs.move_to_end(user_id)
        while len(self.last_recs) > _LAST_RECS:
            self.last_recs.popitem(last=False)

    def last_recommendation(self, user_id: str) -> dict[str, Any] | None:
        """The last recommendation this worker sent to `user_id`, as JSON (None if none)."""
        raw = self.last_recs.get(user_id)
        return None if raw is None else dict(json.loads(raw))


class DashboardSensor(faust.Sensor):
    """Feeds `LiveState` from the worker's own traffic (events in, recommendations out)."""

    def __init__(self, state: LiveState, events_topic: str, recommendations_topic: str) -> None:
        """Watch `events_topic` (keys = user ids) and `recommendations_topic` (raw JSON values)."""
        super().__init__()
        self.live, self.events_topic, self.recommendations_topic = state, events_topic, recommendations_topic

    def on_message_in(self, tp: TP, offset: int, message: Message) -> None:
        """An event arrived: remember its user."""
        if tp.topic == self.events_topic and isinstance(message.key, bytes):
            self.live.saw_event(message.key.decode(errors="replace"))

    def on_send_initiated(
        self, producer: ProducerT, topic: str, message: PendingMessage, keysize: int, valsize: int
    ) -> Any:
        """A recommendation sent through Faust's topic API: keep it as the user's current one (the recommend agent
        sends past it and reports its recommendations to `LiveState.sent_recommendation` itself)."""
        if topic == self.recommendations_topic and isinstance(message.key, bytes) and isinstance(message.value, bytes):
            self.live.sent_recommendation(message.key.decode(errors="replace"), message.value)
        return None


class TitleLookup:
    """Item titles and users' recent events straight from the feature store's keys, with a title cache."""

    def __init__(self, store: FeatureStore, client: Any) -> None:
        """`client` is the `redis.asyncio.Redis` that `store` wraps (owned by the caller)."""
        self.store, self._client = store, client
        self._titles: dict[str, str] = {}

    async def titles(self, item_ids: set[str]) -> dict[str, str]:
        """Title of each item id that has one."""
        missing = sorted(i for i in item_ids if i not in self._titles)
        if missing:
            if len(self._titles) > 100_000:
                self._titles.clear()
            pipe = self._client.pipeline(transaction=False)
            for i in missing:
                pipe.hget(self.store.keys.item_meta(i), "title")
            for i, raw in zip(missing, await pipe.execute(), strict=True):
                self._titles[i] = raw.decode() if isinstance(raw, bytes) else (raw or "")
        return {i: self._titles[i] for i in item_ids if self._titles.get(i)}

    async def recent_events(self, user_id: str) -> list[dict[str, Any]]:
        """The user's stored recent events, newest first (`event_id`, `item_id`, `type`, `ts` (epoch s), `query`)."""
        raw = await self._client.lrange(self.store.keys.user_events(user_id), 0, -1)
        return [dict(json.loads(entry)) for entry in raw]

    async def trigger(self, user_id: str, event_id: str) -> dict[str, Any] | None:
        """The user's stored event with this id, if still in the recent history."""
        for doc in await self.recent_events(user_id):
            if doc.get("event_id") == event_id:
                return doc
        return None
