"""The worker's web server with a bearer token: every route but /healthz refuses a request without it."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import httpx

from contracts import Settings
from tests.integration.worker_support import WorkerPool


async def test_a_token_guards_every_route_but_healthz(
    tmp_path: Path, settings_factory: Callable[..., Settings]
) -> None:
    pool = WorkerPool(tmp_path, extra_env={"STREAMREC_WEB_TOKEN": "s3cret-token"})
    worker = pool.start(settings_factory())
    try:
        base = f"http://127.0.0.1:{worker.web_port}"
        async with httpx.AsyncClient(base_url=base, timeout=5.0) as http:
            for _ in range(240):  # the worker is up once /healthz answers (open without the token)
                try:
                    if (await http.get("/healthz")).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                await asyncio.sleep(0.5)
            assert (await http.get("/healthz")).status_code == 200
            for path in ("/metrics", "/users/u1/recommendations", "/dashboard/", "/api/dashboard/stats"):
                refused = await http.get(path)
                assert refused.status_code == 401, path
                assert "s3cret" not in refused.text
                assert (await http.get(path, headers={"Authorization": "Bearer wrong"})).status_code == 401
            good = {"Authorization": "Bearer s3cret-token"}
            assert (await http.get("/metrics", headers=good)).status_code == 200
            assert (await http.get("/users/nobody/recommendations", headers=good)).status_code == 404
        assert "s3cret-token" not in worker.log.read_text(errors="replace")
    finally:
        pool.stop_all()
