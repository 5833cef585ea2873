"""The query API of a real `streamrec worker` (streams/web.py): on-demand recommendations, health and metrics.

One worker (baseline blend) on the real broker and Redis; a small generated stream with a titled catalog and a
few malformed records is replayed, then `/users/{user_id}/recommendations`, `/healthz` and `/metrics` are read.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from contracts import Item, Recommendation, Settings
from feature_store import FeatureConfig, FeatureStore, redis_client
from streamrec.commands.replay import replay
from tests.integration.worker_support import Worker, WorkerPool, collect, generated_events, produce

pytestmark = pytest.mark.integration

T0 = datetime.now(UTC) - timedelta(days=3)
N_ITEMS = 24
HIDDEN = "i2"  # popular in the stream (Pareto-distributed items) but unavailable in the catalog
STAGES = ("decode", "features_write", "features_read", "score", "explain")
# Dead-letter reason -> records injected with it (keys are user ids of the stream, so they share its partitions).
MALFORMED: dict[str, list[tuple[bytes, bytes]]] = {
    "undecodable": [(b"\xff\xfe\x00binary", b"u1"), (b"{not json", b"u2")],
    "unknown_type": [(json.dumps({"event_id": "m1", "user_id": "u3", "type": "teleport"}).encode(), b"u3")],
    "missing_item": [
        (json.dumps({"event_id": "m2", "user_id": "u4", "type": "purchase", "ts": T0.isoformat()}).encode(), b"u4")
    ],
}


def _catalog() -> list[Item]:
    return [
        Item(
            item_id=f"i{n}",
            title=f"Kitchen thing {n}",
            category=f"c{n % 4}",
            available=f"i{n}" != HIDDEN,
            ts=T0 - timedelta(days=1),
        )
        for n in range(N_ITEMS)
    ]


@pytest.fixture
def pool(tmp_path: Path) -> Iterator[WorkerPool]:
    """Workers serving the baseline blend (empty model store), short batch wait; stopped after the test."""
    env = {"STREAMREC_MODEL_DIR": str(tmp_path / "no-models"), "STREAMREC_MAX_WAIT_MS": "5"}
    workers = WorkerPool(tmp_path, extra_env=env)
    yield workers
    workers.stop_all()


async def _get(session: aiohttp.ClientSession, worker: Worker, path: str) -> tuple[int, str]:
    async with session.get(f"http://127.0.0.1:{worker.web_port}{path}", timeout=aiohttp.ClientTimeout(10)) as r:
        return r.status, await r.text()


async def _recommend(session: aiohttp.ClientSession, worker: Worker, user: str, query: str) -> Recommendation:
    status, body = await _get(session, worker, f"/users/{user}/recommendations{query}")
    assert status == 200, (user, query, status, body)
    return Recommendation.model_validate_json(body)


async def _wait_for_catalog(settings: Settings, timeout_s: float = 30.0) -> None:
    client = redis_client(settings.redis_url.get_secret_value(), cluster=settings.redis_cluster)
    try:
        store, ids = FeatureStore(client, FeatureConfig(item_cache_seconds=0)), [it.item_id for it in _catalog()]
        deadline = time.monotonic() + timeout_s
        while len((await store.catalog(ids))[0]) < len(ids):
            assert time.monotonic() < deadline, "the worker did not ingest the catalog"
            await asyncio.sleep(0.2)
    finally:
        await client.aclose()


def _samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Prometheus text -> {(sample name, labels): value}; raises on text that is not the exposition format."""
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


async def test_query_api_health_and_metrics_of_a_real_worker(
    settings_factory: Callable[..., Settings], pool: WorkerPool
) -> None:
    settings = settings_factory()
    worker = pool.start(settings)
    events = generated_events(240, users=30, items=N_ITEMS, seed=3, prefix="q")
    assert any(e.item_id == HIDDEN for e in events), "the hidden item must be in the stream for its filter to matter"
    # The catalog first, ingested before any event (so categories and the unavailable set apply to all of them).
    await replay(settings, [], rate=0, items=_catalog())
    await _wait_for_catalog(settings)
    await replay(settings, events, rate=0)
    await produce(settings, [r for recs in MALFORMED.values() for r in recs])
    latest = {e.user_id: e.event_id for e in events}
    n_bad = sum(map(len, MALFORMED.values()))
    streamed, letters = await collect(
        settings,
        lambda last, dl: (
            len(dl) >= n_bad and all(last.get(u, {}).get("trigger_event_id") == t for u, t in latest.items())
        ),
        timeout_s=90,
    )
    assert sorted(d["reason"] for d in letters) == sorted(r for r, recs in MALFORMED.items() for _ in recs)
    # Item-side features (popularity, neighbours) are cached by the worker for `item_cache_seconds` (2 s): let the
    # cache of the last batches expire so on-demand answers see the whole stream and repeat exactly.
    await asyncio.sleep(FeatureConfig().item_cache_seconds + 0.5)

    own: dict[str, set[str]] = {}
    for e in events:
        own.setdefault(e.user_id, set()).add(e.event_id)
    catalog = {it.item_id for it in _catalog()} - {HIDDEN}
    users = sorted(latest)[:8]
    async with aiohttp.ClientSession() as session:
        # On-demand recommendations: contract, size, user, trigger, explanations grounded in the user's own events.
        evidence_seen = 0
        for user in users:
            rec = await _recommend(session, worker, user, "?k=5")
            assert rec.user_id == user
            assert rec.trigger_event_id == latest[user], "the trigger is the user's newest event"
            assert [it.rank for it in rec.items] == [1, 2, 3, 4, 5], (user, rec.items)
            assert len({it.item_id for it in rec.items}) == 5, (user, rec.items)
            assert {it.item_id for it in rec.items} <= catalog, (user, rec.items)  # never the unavailable item
            for it in rec.items:
                assert it.explanation.text, (user, it)
                assert {ev.event_id for ev in it.explanation.evidence} <= own[user], (user, it.explanation)
                evidence_seen += len(it.explanation.evidence)
            again = await _recommend(session, worker, user, "?k=5")  # nothing new happened: same answer
            assert again.model_dump(exclude={"generated_at"}) == rec.model_dump(exclude={"generated_at"})
            longer = await _recommend(session, worker, user, "?k=1000")  # as many as the catalog allows
            assert 5 < len(longer.items) <= len(catalog), (user, len(longer.items))
            assert {it.item_id for it in longer.items} <= catalog
            # Every candidate at k=5 is one at k=1000 too (not necessarily in the same top 5: the blend asks each
            # part for k items before merging, model/baselines.py).
            assert {it.item_id for it in rec.items} <= {it.item_id for it in longer.items}, user
        assert evidence_seen > 0, "no evidence at all: the subset checks above would be vacuous"
        default = await _recommend(session, worker, users[0], "")
        assert len(default.items) == settings.top_k

        # Bad k: 400 with a message naming the problem; unknown user: 404 (streams/web.py, Runtime.recommend_now).
        for query, message in [
            ("?k=0", "k must be within 1..1000"),
            ("?k=1001", "k must be within 1..1000"),
            ("?k=-3", "k must be within 1..1000"),
            ("?k=abc", "k must be an integer"),
            ("?k=", "k must be an integer"),
        ]:
            status, body = await _get(session, worker, f"/users/{users[0]}/recommendations{query}")
            assert (status, json.loads(body)) == (400, {"error": message}), (query, status, body)
        status, body = await _get(session, worker, "/users/nobody-here/recommendations?k=5")
        assert (status, json.loads(body)) == (404, {"error": "no events for user 'nobody-here'"}), (status, body)

        status, body = await _get(session, worker, "/healthz")
        health = json.loads(body)
        assert status == 200 and health["status"] == "ok" and health["redis"] == "ok", (status, body)
        version = health["model_version"]
        assert version and version == rec.model_version == streamed[users[0]][-1]["model_version"], (health, rec)

        # Metrics: every family, with the values this stream must have produced.
        status, text = await _get(session, worker, "/metrics")
        assert status == 200, status
        samples = _samples(text)

    def value(name: str, **labels: str) -> float:
        key = (name, frozenset(labels.items()))
        assert key in samples, f"{name}{labels} missing from /metrics"
        return samples[key]

    total = len(events) + n_bad
    assert value("streamrec_events_in_total") == total
    assert value("streamrec_events_applied_total") == len(events)
    batches = value("streamrec_batches_total")
    assert 1 <= batches <= total
    assert value("streamrec_batch_size_count") == batches
    assert value("streamrec_batch_size_sum") == total
    assert value("streamrec_batch_size_bucket", le="+Inf") == batches
    for stage in STAGES:
        count = value("streamrec_stage_seconds_count", stage=stage)
        assert 1 <= count <= batches, (stage, count, batches)
        assert value("streamrec_stage_seconds_bucket", stage=stage, le="+Inf") == count
        assert value("streamrec_stage_seconds_sum", stage=stage) > 0, stage
    for reason, recs in MALFORMED.items():
        assert value("streamrec_dead_letters_total", reason=reason) == len(recs), reason
    dead = {dict(labels)["reason"] for (name, labels) in samples if name == "streamrec_dead_letters_total"}
    assert dead == set(MALFORMED), dead
    assert value("streamrec_model_info", version=version) == 1
    assert [k for k in samples if k[0] == "streamrec_model_info"] == [
        ("streamrec_model_info", frozenset({("version", version)}))
    ]
