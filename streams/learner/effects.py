"""Online effect metrics: recommendations joined with the same user's later events (CTR and conversion).

Every recommended item is an impression, attributed to the recommendation's model version and to each reason
kind in its explanation. A `click`, `add_to_cart` or `purchase` of that item by that user, arriving within
`window_seconds` after the impression (processing time: recommendations are stamped with wall-clock time, events
with their producer's time), is a hit for the newest open impression of the pair; each impression counts each
hit type once. CTR = clicks / impressions, conversion = purchases / impressions, per version and per reason kind.

Example:
    >>> from datetime import UTC, datetime
    >>> from contracts import Event, EventType, Explanation, Recommendation, RecommendedItem
    >>> t = datetime(2024, 1, 1, tzinfo=UTC)
    >>> effects = OnlineEffects(window_seconds=60)
    >>> item = RecommendedItem(item_id="a", score=1.0, rank=1, explanation=Explanation(text="t"))
    >>> rec = Recommendation(user_id="u", trigger_event_id="e0", model_version="v1", generated_at=t, latency_ms=1.0,
    ...                      items=[item])
    >>> effects.recommended(rec, now=0.0)
    >>> effects.event(Event(event_id="e1", user_id="u", item_id="a", type=EventType.CLICK, ts=t), now=5.0)
    >>> effects.snapshot()["versions"]["v1"]["ctr"]
    1.0
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, TypeVar

from prometheus_client import CollectorRegistry, Counter

from contracts import Event, EventType, Recommendation

__all__ = ["HIT_TYPES", "OnlineEffects"]

T = TypeVar("T")

HIT_TYPES: dict[EventType, str] = {
    EventType.CLICK: "click",
    EventType.ADD_TO_CART: "cart",
    EventType.PURCHASE: "purchase",
}


@dataclass
class _Tally:
    impressions: int = 0
    hits: dict[str, int] = field(default_factory=lambda: dict.fromkeys(HIT_TYPES.values(), 0))

    def as_dict(self) -> dict[str, float]:
        n = self.impressions
        out: dict[str, float] = {"impressions": float(n), **{f"{k}s": float(v) for k, v in self.hits.items()}}
        out["ctr"] = self.hits["click"] / n if n else 0.0
        out["cart_rate"] = self.hits["cart"] / n if n else 0.0
        out["conversion"] = self.hits["purchase"] / n if n else 0.0
        return out


_HIT_BITS = {hit: 1 << n for n, hit in enumerate(HIT_TYPES.values())}


@dataclass(slots=True)
class _Impression:
    # Up to `max_open` of these are held for `window_seconds` (30 min: ~10^5-10^6 at 100 events/s), so they are
    # kept small: slots, the hit types counted as bits, and version / kinds / ids shared between impressions
    # (~510 bytes each before, ~230 now, measured with tracemalloc on parsed recommendations).
    version: str
    kinds: tuple[str, ...]
    expires: float
    counted: int = 0  # bits of `_HIT_BITS`


class OnlineEffects:
    """Joins recommendations with later events; counts in memory and (optionally) as Prometheus counters."""

    def __init__(
        self, window_seconds: float = 1800.0, max_open: int = 1_000_000, registry: CollectorRegistry | None = None
    ) -> None:
        """Args: attribution window (s), open impressions kept at most (oldest dropped), Prometheus registry."""
        self.window_seconds = window_seconds
        self.max_open = max_open
        self._open: OrderedDict[tuple[str, str], _Impression] = OrderedDict()
        self._shared: dict[object, object] = {}  # one object per distinct version, kinds tuple, user or item id
        self._versions: dict[str, _Tally] = {}
        self._kinds: dict[str, _Tally] = {}
        self._prom: tuple[Counter, Counter] | None = None
        if registry is not None:
            self._prom = (
                Counter(
                    "streamrec_online_impressions", "Recommended items shown", ["version", "reason"], registry=registry
                ),
                Counter(
                    "streamrec_online_hits",
                    "Recommended items clicked / carted / bought within the window",
                    ["version", "reason", "type"],
                    registry=registry,
                ),
            )

    def recommended(self, rec: Recommendation, now: float) -> None:
        """Open one impression per recommended item (`now`: processing time, seconds)."""
        self._expire(now)
        version = self._versions.setdefault(rec.model_version, _Tally())
        name, user = self._share(rec.model_version), self._share(rec.user_id)
        for item in rec.items:
            kinds = self._share(tuple(sorted({r.kind.value for r in item.explanation.reasons})) or ("none",))
            key = (user, self._share(item.item_id))
            self._open.pop(key, None)
            self._open[key] = _Impression(name, kinds, now + self.window_seconds)
            version.impressions += 1
            for kind in kinds:
                self._kinds.setdefault(kind, _Tally()).impressions += 1
                if self._prom is not None:
                    self._prom[0].labels(version=rec.model_version, reason=kind).inc()
        while len(self._open) > self.max_open:
            self._open.popitem(last=False)

    def event(self, event: Event, now: float) -> None:
        """Count `event` as a hit if it acts on an open impression of the same user."""
        hit = HIT_TYPES.get(event.type)
        if hit is None or event.item_id is None:
            return
        impression = self._open.get((event.user_id, event.item_id))
        if impression is None or impression.expires < now or impression.counted & _HIT_BITS[hit]:
            return
        impression.counted |= _HIT_BITS[hit]
        self._versions.setdefault(impression.version, _Tally()).hits[hit] += 1
        for kind in impression.kinds:
            self._kinds.setdefault(kind, _Tally()).hits[hit] += 1
            if self._prom is not None:
                self._prom[1].labels(version=impression.version, reason=kind, type=hit).inc()

    def _share(self, value: T) -> T:
        """The one stored object equal to `value` (ids, versions and kinds recur across many impressions)."""
        shared = self._shared.setdefault(value, value)
        if len(self._shared) > 4 * self.max_open:  # ids of expired impressions: forget them all, re-share anew
            self._shared = {value: value}
            return value
        return shared  # type: ignore[return-value]  # equal to `value`, so of its type

    def _expire(self, now: float) -> None:
        while self._open:
            key, impression = next(iter(self._open.items()))
            if impression.expires >= now:
                return
            del self._open[key]

    def snapshot(self) -> dict[str, Any]:
        """`{"window_seconds", "versions": {version: metrics}, "reasons": {kind: metrics}}`."""
        return {
            "window_seconds": self.window_seconds,
            "versions": {v: t.as_dict() for v, t in sorted(self._versions.items())},
            "reasons": {k: t.as_dict() for k, t in sorted(self._kinds.items())},
        }
