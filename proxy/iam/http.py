"""The control-plane HTTP server (aiohttp) on the API port: /healthz, /readyz, /metrics, the
Redshift API (iam/api.py) and STS (iam/sts.py), told apart by the signature's service."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from .sts import is_sts_request


def make_app(backend_ok: Callable[[], Awaitable[bool]], redshift=None, metrics=None, sts=None,
             local_idp=None) -> web.Application:
    """/healthz: the process answers. /readyz: the backing database answers too. /metrics:
    Prometheus. redshift: the RedshiftApi answering the AWS Query protocol on POST / (and GET /);
    sts: the StsApi, answering there the requests signed for the sts service (and the unsigned
    ones of STS's version). local_idp: the development IdP's SAML metadata and JWKS."""
    async def healthz(request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def readyz(request: web.Request) -> web.Response:
        healthy = await backend_ok()
        return web.json_response({"status": "ok" if healthy else "backend unavailable"},
                                 status=200 if healthy else 503)

    async def prometheus(request: web.Request) -> web.Response:
        return web.Response(body=generate_latest(metrics.registry), headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def query_api(request: web.Request) -> web.Response:
        body = await request.read()
        url = f"http://{request.host}{request.path_qs}"
        api = sts if sts is not None and is_sts_request(dict(request.headers), body, url) else redshift
        reply = await api.handle(request.method, url, dict(request.headers), body, request.remote or "")
        return web.Response(status=reply.status, text=reply.body, content_type="text/xml")

    app = web.Application(client_max_size=1 << 20)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    if metrics is not None:
        app.router.add_get("/metrics", prometheus)
    if local_idp is not None:
        async def saml_metadata(request: web.Request) -> web.Response:
            return web.Response(text=local_idp.metadata(), content_type="application/samlmetadata+xml")

        async def jwks(request: web.Request) -> web.Response:
            return web.json_response(local_idp.jwks())

        app.router.add_get("/local-idp/saml/metadata", saml_metadata)
        app.router.add_get("/local-idp/oidc/jwks", jwks)
    if redshift is not None:
        app.router.add_post("/", query_api)
        app.router.add_get("/", query_api)
    return app


async def start(app: web.Application, host: str, port: int) -> tuple[web.AppRunner, tuple[str, int]]:
    """Start serving; returns the runner (to stop it) and the bound address."""
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, host, port, reuse_address=True)
    await site.start()
    bound = runner.addresses[0]
    return runner, (bound[0], bound[1])
