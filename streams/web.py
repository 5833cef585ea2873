"""HTTP endpoints on the worker's Faust web server: on-demand recommendations, health, metrics."""

from __future__ import annotations

from typing import Any

import faust
from faust.web import Request, Response, View
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from streams.runtime import Runtime

__all__ = ["attach_web"]


def attach_web(app: faust.App, runtime: Runtime) -> None:
    """Register `/healthz`, `/metrics` and `/users/{user_id}/recommendations`."""

    @app.page("/healthz")
    class Health(View):
        async def get(self, request: Request) -> Response:
            return self.json({"status": "ok", "model_version": runtime.scorer.version})

    @app.page("/metrics")
    class Metrics(View):
        async def get(self, request: Request) -> Response:
            body = generate_latest(runtime.metrics.registry).decode()
            return self.text(body, content_type=CONTENT_TYPE_LATEST.split(";")[0])

    @app.page("/users/{user_id}/recommendations")
    class UserRecommendations(View):
        async def get(self, request: Request, user_id: str) -> Response:
            try:
                k = int(request.query.get("k", "10"))
            except ValueError:
                return self.json({"error": "k must be an integer"}, status=400)
            if not 1 <= k <= 1000:
                return self.json({"error": "k must be within 1..1000"}, status=400)
            rec = await runtime.recommend_now(user_id, k)
            if rec is None:
                return self.json({"error": f"no events for user {user_id!r}"}, status=404)
            body: Any = rec.model_dump(mode="json")
            return self.json(body)
