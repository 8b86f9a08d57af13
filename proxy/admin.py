"""The admin HTTP listener: /healthz, /readyz, /metrics and an authenticated /reload.

Bound to loopback unless the configuration says otherwise: it exposes operational detail and a
reload trigger, so it is not for the open network.
"""

from __future__ import annotations

import hmac
from typing import TYPE_CHECKING

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest

if TYPE_CHECKING:
    from proxy.config import Admin
    from proxy.runtime import Worker


def _registry() -> CollectorRegistry:
    import os

    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return registry
    return REGISTRY


def build_app(settings: Admin, worker: Worker) -> web.Application:
    """The aiohttp application serving the admin endpoints for `worker`."""

    async def healthz(_request: web.Request) -> web.Response:
        return web.json_response({"status": "alive"})

    async def readyz(_request: web.Request) -> web.Response:
        checks = worker.readiness()
        ready = all(checks.values())
        return web.json_response({"ready": ready, "checks": checks}, status=200 if ready else 503)

    async def metrics(_request: web.Request) -> web.Response:
        body = generate_latest(_registry())
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def reload(request: web.Request) -> web.Response:
        expected = settings.token
        given = request.headers.get("Authorization", "").removeprefix("Bearer ").strip()
        if not expected or not hmac.compare_digest(given.encode(), expected.encode()):
            return web.json_response({"error": "a valid bearer token is required"}, status=401)
        ok = await worker.request_reload()
        return web.json_response({"reloaded": ok}, status=200 if ok else 422)

    app = web.Application()
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)
    app.router.add_post("/reload", reload)
    return app


async def start_admin(settings: Admin, worker: Worker) -> web.AppRunner:
    """Start the admin listener; the caller cleans the runner up at shutdown."""
    runner = web.AppRunner(build_app(settings, worker), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, settings.host, settings.port)
    await site.start()
    return runner
