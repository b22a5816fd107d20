"""The control-plane HTTP server (aiohttp) on the API port: /healthz now; the Redshift API and
/metrics are mounted here as they arrive."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web


def make_app(backend_ok: Callable[[], Awaitable[bool]]) -> web.Application:
    async def healthz(request: web.Request) -> web.Response:
        healthy = await backend_ok()
        return web.json_response({"status": "ok" if healthy else "backend unavailable"},
                                 status=200 if healthy else 503)

    app = web.Application(client_max_size=1 << 20)
    app.router.add_get("/healthz", healthz)
    return app


async def start(app: web.Application, host: str, port: int) -> tuple[web.AppRunner, tuple[str, int]]:
    """Start serving; returns the runner (to stop it) and the bound address."""
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, host, port, reuse_address=True)
    await site.start()
    bound = runner.addresses[0]
    return runner, (bound[0], bound[1])
