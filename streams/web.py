"""HTTP endpoints on the worker's Faust web server: recommendations, health, metrics and the live dashboard.

Routes:
    /healthz                              status and serving model version
    /metrics                              Prometheus text format
    /users/{user_id}/recommendations      on-demand recommendation (`?k=`, 1..1000)
    /dashboard/                           the dashboard page (plain HTML/JS/CSS, no CDN); /dashboard/{file}
    /api/dashboard/stats                  per-second series, totals, dead letters, model versions, recent users
    /api/dashboard/users/{user_id}        recent events (with titles) + current recommendation (with titles)
"""

from __future__ import annotations

import hmac
from collections.abc import Callable
from typing import Any

import faust
from aiohttp import web as aiohttp_web
from faust.web import Request, Response, View
from mode import Service
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import SecretStr

from feature_store import FeatureConfig, FeatureStore, StoreClient, redis_client
from streams.dashboard import STATIC_DIR
from streams.dashboard.live import DashboardSensor, LiveState, TitleLookup
from streams.runtime import Runtime

__all__ = ["attach_web", "bearer_auth"]

_STATIC = {"index.html": "text/html", "app.js": "application/javascript", "style.css": "text/css"}


def bearer_auth(token: SecretStr) -> Any:
    """aiohttp middleware: every request but `/healthz` needs `Authorization: Bearer <token>` (else 401).

    `/healthz` stays open for load balancers and orchestrators; it tells only the status and the model version.
    """
    expected = f"Bearer {token.get_secret_value()}".encode()

    @aiohttp_web.middleware
    async def check(request: aiohttp_web.Request, handler: Any) -> Any:
        given = request.headers.get("Authorization", "").encode()
        if request.path != "/healthz" and not hmac.compare_digest(given, expected):
            return aiohttp_web.json_response({"error": "missing or wrong bearer token"}, status=401)
        return await handler(request)

    return check


def _k(request: Request) -> int | str:
    try:
        k = int(request.query.get("k", "10"))
    except ValueError:
        return "k must be an integer"
    return k if 1 <= k <= 1000 else "k must be within 1..1000"


def attach_web(app: faust.App, runtime: Runtime) -> LiveState:
    """Register the routes above, the dashboard's sensor and its one-second sampler; returns the live state."""
    state = LiveState(runtime.metrics)
    topics = runtime.settings.topics
    app.sensors.add(DashboardSensor(state, topics.events, topics.recommendations))

    @app.timer(1.0)  # type: ignore[untyped-decorator]  # faust's decorators are untyped
    async def _sample() -> None:
        serving = runtime.serving  # read once: version and metrics of the same pair
        state.tick(serving.version, model_metrics=serving.metrics)

    _attach_service_routes(app, runtime)
    _attach_dashboard(app, runtime, state, _title_lookup(app, runtime))
    return state


def _title_lookup(app: faust.App, runtime: Runtime) -> Callable[[], TitleLookup]:
    """The dashboard's title/history reader, created on first use; its Redis client closes with the worker."""
    lookups: dict[str, TitleLookup] = {}
    clients: list[StoreClient] = []

    @app.service
    class _Titles(Service):
        """Owns the dashboard's Redis client (titles, histories), closed when the worker stops."""

        async def on_stop(self) -> None:
            lookups.clear()
            while clients:
                await clients.pop().aclose()

    def titles() -> TitleLookup:
        if "default" not in lookups:
            client = redis_client(runtime.settings.redis_url.get_secret_value(), cluster=runtime.settings.redis_cluster)
            clients.append(client)
            store = FeatureStore(client, FeatureConfig(max_events=runtime.settings.recent_events))
            lookups["default"] = TitleLookup(store, client)
        return lookups["default"]

    return titles


def _attach_service_routes(app: faust.App, runtime: Runtime) -> None:
    """/healthz, /metrics and /users/{user_id}/recommendations."""

    @app.page("/healthz")
    class Health(View):
        async def get(self, request: Request) -> Response:
            # 503 when Redis is unreachable: the worker cannot apply features or commit, so a load balancer or
            # an orchestrator should see it as not ready (it retries by itself and recovers when Redis is back).
            redis_ok = await runtime.redis_reachable()
            body = {
                "status": "ok" if redis_ok else "degraded",
                "redis": "ok" if redis_ok else "unreachable",
                "model_version": runtime.serving.version,
            }
            return self.json(body, status=200 if redis_ok else 503)

    @app.page("/metrics")
    class Metrics(View):
        async def get(self, request: Request) -> Response:
            body = generate_latest(runtime.metrics.registry).decode()
            return self.text(body, content_type=CONTENT_TYPE_LATEST.split(";")[0])

    @app.page("/users/{user_id}/recommendations")
    class UserRecommendations(View):
        async def get(self, request: Request, user_id: str) -> Response:
            k = _k(request)
            if isinstance(k, str):
                return self.json({"error": k}, status=400)
            rec = await runtime.recommend_now(user_id, k)
            if rec is None:
                return self.json({"error": f"no events for user {user_id!r}"}, status=404)
            body: Any = rec.model_dump(mode="json")
            return self.json(body)


def _attach_dashboard(app: faust.App, runtime: Runtime, state: LiveState, titles: Callable[[], TitleLookup]) -> None:
    """The dashboard page, its static files and its two JSON endpoints."""

    @app.page("/dashboard/")
    class DashboardIndex(View):
        async def get(self, request: Request) -> Response:
            return self.html((STATIC_DIR / "index.html").read_text(encoding="utf-8"))

    @app.page("/dashboard")
    class DashboardIndexNoSlash(DashboardIndex):  # same page: it links its files by absolute paths
        pass

    @app.page("/dashboard/{name}")
    class DashboardFile(View):
        async def get(self, request: Request, name: str) -> Response:
            kind = _STATIC.get(name)  # a fixed list: no path from the request ever reaches the file system
            if kind is None:
                return self.json({"error": "not found"}, status=404)
            return self.bytes((STATIC_DIR / name).read_bytes(), content_type=kind)

    @app.page("/api/dashboard/stats")
    class DashboardStats(View):
        async def get(self, request: Request) -> Response:
            return self.json({"model_version": runtime.serving.version, **state.stats()})

    @app.page("/api/dashboard/users/{user_id}")
    class DashboardUser(View):
        async def get(self, request: Request, user_id: str) -> Response:
            return self.json(await _user_view(runtime, state, titles(), user_id))


async def _user_view(runtime: Runtime, state: LiveState, lookup: TitleLookup, user_id: str) -> dict[str, Any]:
    """Recent events + the current recommendation (the last one sent by this worker, else computed now)."""
    events = await lookup.recent_events(user_id)
    rec = state.last_recommendation(user_id)
    source = "stream"
    if rec is None and events:
        fresh = await runtime.recommend_now(user_id, runtime.settings.top_k)
        rec, source = (fresh.model_dump(mode="json") if fresh else None), "on_demand"
    ids = {e["item_id"] for e in events if e.get("item_id")}
    if rec is not None:
        for it in rec["items"]:
            ids.add(it["item_id"])
            ids |= {x["item_id"] for x in it["explanation"]["evidence"] if x.get("item_id")}
    names = await lookup.titles(ids)
    return {
        "user_id": user_id,
        "events": events,
        "recommendation": rec,
        "source": source if rec is not None else None,
        "titles": names,
    }
