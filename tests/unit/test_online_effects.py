"""Online effect metrics: impressions, hits within the window, per version and per reason kind."""

from __future__ import annotations

import tracemalloc
from datetime import UTC, datetime

from prometheus_client import CollectorRegistry

from contracts import Event, EventType, Explanation, Reason, ReasonKind, Recommendation, RecommendedItem
from streams.learner.effects import OnlineEffects

T = datetime(2024, 1, 1, tzinfo=UTC)


def _rec(user: str, version: str, items: dict[str, list[ReasonKind]]) -> Recommendation:
    ranked = [
        RecommendedItem(
            item_id=item,
            score=1.0,
            rank=rank,
            explanation=Explanation(reasons=[Reason(kind=k, detail="d", weight=1.0) for k in kinds], text="t"),
        )
        for rank, (item, kinds) in enumerate(items.items(), start=1)
    ]
    return Recommendation(user_id=user, trigger_event_id="t", model_version=version, generated_at=T, latency_ms=1.0,
                          items=ranked)  # fmt: skip


def _event(user: str, item: str, kind: EventType) -> Event:
    return Event(event_id=f"{user}-{item}-{kind.value}", user_id=user, item_id=item, type=kind, ts=T)


def test_ctr_and_conversion_per_version_and_reason() -> None:
    registry = CollectorRegistry()
    effects = OnlineEffects(window_seconds=60, registry=registry)
    effects.recommended(_rec("u1", "v1", {"a": [ReasonKind.SIMILAR_TO], "b": [ReasonKind.TRENDING]}), now=0)
    effects.recommended(_rec("u2", "v2", {"a": [ReasonKind.SIMILAR_TO, ReasonKind.SEEN_BEFORE], "c": []}), now=1)
    effects.event(_event("u1", "a", EventType.CLICK), now=2)
    effects.event(_event("u1", "a", EventType.CLICK), now=3)  # the same impression counts a click once
    effects.event(_event("u1", "a", EventType.PURCHASE), now=4)
    effects.event(_event("u1", "c", EventType.CLICK), now=5)  # not recommended to u1
    effects.event(_event("u2", "a", EventType.VIEW), now=5)  # a view is no hit
    effects.event(_event("u2", "c", EventType.ADD_TO_CART), now=100)  # too late (window 60 s)
    snap = effects.snapshot()
    v1, v2 = snap["versions"]["v1"], snap["versions"]["v2"]
    assert (v1["impressions"], v1["clicks"], v1["purchases"], v1["ctr"], v1["conversion"]) == (2, 1, 1, 0.5, 0.5)
    assert (v2["impressions"], v2["clicks"], v2["carts"], v2["ctr"]) == (2, 0, 0, 0.0)
    assert snap["reasons"]["similar_to"]["impressions"] == 2 and snap["reasons"]["similar_to"]["clicks"] == 1
    assert snap["reasons"]["trending"]["ctr"] == 0.0 and snap["reasons"]["none"]["impressions"] == 1
    value = registry.get_sample_value(
        "streamrec_online_hits_total", {"version": "v1", "reason": "similar_to", "type": "purchase"}
    )
    assert value == 1.0


def test_newest_impression_gets_the_hit_and_memory_is_bounded() -> None:
    effects = OnlineEffects(window_seconds=60, max_open=2)
    effects.recommended(_rec("u", "v1", {"a": []}), now=0)
    effects.recommended(_rec("u", "v2", {"a": []}), now=1)
    effects.event(_event("u", "a", EventType.CLICK), now=2)
    versions = effects.snapshot()["versions"]
    assert versions["v1"]["clicks"] == 0 and versions["v2"]["clicks"] == 1
    effects.recommended(_rec("x", "v1", {"p": [], "q": [], "r": []}), now=3)
    effects.event(_event("x", "p", EventType.CLICK), now=4)  # dropped: only the 2 newest stay open
    assert effects.snapshot()["versions"]["v1"]["clicks"] == 0


def test_open_impressions_stay_small() -> None:
    # The learner holds every impression of the last 30 minutes (~10^5-10^6 at 100 events/s). With a set per
    # impression, a __dict__ and an id string per key they took ~560 bytes each here; ~290 now.
    raw = [
        _rec(f"u{n % 500}", f"v{n // 400}", {f"i{(7 * n + k) % 20_000}": [ReasonKind.SIMILAR_TO] for k in range(10)})
        for n in range(2000)
    ]
    payloads = [r.model_dump_json().encode() for r in raw]
    effects = OnlineEffects(window_seconds=1800)
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for n, payload in enumerate(payloads):  # parsed and dropped, as the learner's consumer does
            effects.recommended(Recommendation.model_validate_json(payload), now=n * 0.01)
        held = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    opened = sum(v["impressions"] for v in effects.snapshot()["versions"].values())
    assert opened == 20_000  # distinct (user, item) pairs: all still open
    assert held / opened < 400, f"{held / opened:.0f} bytes per open impression"


def test_shared_ids_are_forgotten_past_the_bound_and_hits_still_count() -> None:
    effects = OnlineEffects(window_seconds=60, max_open=2)  # the shared-object table resets above 4 x 2 entries
    for n in range(6):
        effects.recommended(_rec(f"u{n}", "v1", {f"i{n}": [], f"j{n}": []}), now=n)
    effects.event(_event("u5", "i5", EventType.CLICK), now=6)
    effects.event(_event("u5", "j5", EventType.PURCHASE), now=6)
    effects.event(_event("u5", "j5", EventType.PURCHASE), now=6)  # once per impression
    effects.event(_event("u0", "i0", EventType.CLICK), now=6)  # dropped: only the newest 2 are open
    v1 = effects.snapshot()["versions"]["v1"]
    assert (v1["impressions"], v1["clicks"], v1["purchases"]) == (12.0, 1.0, 1.0)
