"""Dashboard state (series from metrics, sensor memory), replay selection and the tail renderer, without services."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from rich.console import Console

from contracts import Event, EventType, Evidence, Explanation, Reason, ReasonKind, Recommendation, RecommendedItem
from streamrec.commands.replay import parse_time, select_events
from streamrec.commands.tail import render_recommendation
from streams.dashboard.live import LiveState, histogram_quantile
from streams.metrics import WorkerMetrics

T0 = datetime(2024, 5, 1, tzinfo=UTC)


def test_histogram_quantile_interpolates_inside_the_bucket() -> None:
    bounds = [0.01, 0.1, 1.0, float("inf")]
    assert histogram_quantile(0.5, bounds, [10, 0, 0, 0]) == pytest.approx(0.005)
    assert histogram_quantile(0.5, bounds, [0, 10, 10, 0]) == pytest.approx(0.1)
    assert histogram_quantile(0.75, bounds, [0, 10, 10, 0]) == pytest.approx(0.55)
    assert histogram_quantile(0.99, bounds, [0, 0, 0, 5]) == 1.0  # the +Inf bucket reports its lower edge
    assert histogram_quantile(0.5, bounds, [0, 0, 0, 0]) is None


def test_tick_turns_counters_into_per_second_rates_and_window_latencies() -> None:
    m = WorkerMetrics()
    state = LiveState(m)
    state.tick("v1", now=100.0)  # baseline
    m.events_in.inc(50)
    for _ in range(10):
        m.recommendation_latency.observe(0.004)  # bucket (0.0025, 0.005]
    m.dead_letters.labels(reason="oversize").inc(2)
    point = state.tick("v1", now=102.0)
    assert point["events_per_s"] == 25.0
    assert point["recs_per_s"] == 5.0
    assert point["dead_letters_per_s"] == 1.0
    assert 2.5 <= point["latency_ms"]["p50"] <= 5.0
    assert point["latency_ms"]["mean"] == pytest.approx(4.0)
    gate = {"ndcg@10": 0.41, "serving_ndcg@10": 0.4, "anchor_ndcg@10": 0.39, "gate_points": 300.0}
    quiet = state.tick("v2", now=103.0, model_metrics=gate)  # nothing new this second: no latency, model change noted
    assert quiet["recs_per_s"] == 0.0 and quiet["latency_ms"]["p50"] is None
    stats = state.stats()
    assert [v["version"] for v in stats["models"]] == ["v1", "v2"]
    assert stats["models"][1]["metrics"] == gate and stats["models"][0]["metrics"] == {}  # shown by the dashboard
    assert stats["totals"] == {"events": 50, "recommendations": 10, "dead_letters": 2}
    assert stats["dead_letters"] == {"oversize": 2}


def test_sensor_memory_is_bounded_and_keeps_the_latest() -> None:
    state = LiveState(WorkerMetrics())
    for i in range(60):
        state.saw_event(f"u{i}", now=float(i))
    state.saw_event("u3", now=99.0)
    recent = state.stats()["recent_users"]
    assert len(recent) == 50 and recent[0] == "u3"
    state.sent_recommendation("u1", json.dumps({"user_id": "u1", "n": 1}).encode())
    state.sent_recommendation("u1", json.dumps({"user_id": "u1", "n": 2}).encode())
    assert state.last_recommendation("u1") == {"user_id": "u1", "n": 2}
    assert state.last_recommendation("nobody") is None


def _events() -> list[Event]:
    users = ["a", "b", "a", "c", "b", "d"]
    return [
        Event(event_id=f"e{i}", user_id=u, item_id="i", type=EventType.VIEW, ts=T0 + timedelta(hours=i))
        for i, u in enumerate(users)
    ]


def test_select_events_by_user_count_window_and_limit() -> None:
    ids = lambda xs: [e.event_id for e in xs]  # noqa: E731
    assert ids(select_events(_events(), max_users=2)) == ["e0", "e1", "e2", "e4"]
    assert ids(select_events(_events(), users=["c", "d"])) == ["e3", "e5"]
    assert ids(select_events(_events(), since=T0 + timedelta(hours=2), until=T0 + timedelta(hours=4))) == ["e2", "e3"]
    assert ids(select_events(_events(), limit=3)) == ["e0", "e1", "e2"]
    assert parse_time("2024-05-01T00:00:00") == T0  # naive = UTC


def test_render_recommendation_shows_titles_reason_text_and_evidence() -> None:
    why = Explanation(
        evidence=[Evidence(event_id="e1", item_id="i1", type=EventType.ADD_TO_CART, ts=T0, weight=0.7)],
        reasons=[Reason(kind=ReasonKind.CART_COMPLEMENT, detail="Teapot", weight=0.5)],
        text="Because you added 'Teapot' to your cart 5 minutes ago",
    )
    rec = Recommendation(
        user_id="u1",
        trigger_event_id="e1",
        model_version="transformer-abc",
        generated_at=T0,
        latency_ms=12.5,
        items=[RecommendedItem(item_id="i2", score=0.9, rank=1, explanation=why)],
    )
    console = Console(width=120, record=True)
    trigger = {"event_id": "e1", "item_id": "i1", "type": "add_to_cart"}
    console.print(render_recommendation(rec, {"i1": "Teapot", "i2": "Tea cosy"}, trigger))
    text = console.export_text()
    for part in ("u1", "add_to_cart i1 Teapot", "transformer-abc", "12.5 ms", "Tea cosy", why.text,
                 "cart_complement(Teapot)", "add_to_cart Teapot (+0.70)"):  # fmt: skip
        assert part in text, (part, text)
