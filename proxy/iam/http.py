"""The control-plane HTTP server (aiohttp) on the API port: /healthz, /readyz, /metrics, the
Redshift API (iam/api.py) and STS (iam/sts.py), told apart by the signature's service; and the
local IdP's HTTPS sign-in (iam/local_idp.py), on a port of its own."""

from __future__ import annotations

import html
import logging
import ssl
from collections.abc import Awaitable, Callable

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from .sts import is_sts_request

log = logging.getLogger(__name__)


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


ADFS_SIGN_ON = "/adfs/ls/IdpInitiatedSignOn.aspx"
_LOGIN_PAGE = (f'<html><body><form method="post" action="{ADFS_SIGN_ON}?loginToRp=urn:amazon:webservices">'
               '<input type="text" name="UserName"><input type="password" name="Password">'
               '<input type="hidden" name="AuthMethod" value="FormsAuthentication">'
               '<input type="submit" value="Sign in"></form></body></html>')


def make_local_idp_app(local_idp, roles: Callable[[], list[str]]) -> web.Application:
    """The local IdP's sign-in in the shape of AD FS's IdP-initiated sign-on, which
    redshift_connector's AdfsCredentialsProvider fills in: GET is the login form; POST with
    UserName and Password answers, for a user added to the IdP with that password, the page an
    IdP posts to AWS holding the SAMLResponse (naming roles()), else 401 and the form again."""
    async def login_form(request: web.Request) -> web.Response:
        return web.Response(text=_LOGIN_PAGE, content_type="text/html")

    async def sign_in(request: web.Request) -> web.Response:
        form = await request.post()
        user = str(form.get("UserName", ""))
        response = local_idp.form_login(user, str(form.get("Password", "")), roles())
        if response is None:
            log.info("local IdP: sign-in of %r from %s refused", user, request.remote)
            return web.Response(status=401, text=_LOGIN_PAGE, content_type="text/html")
        log.info("local IdP: %r signed in from %s", user, request.remote)
        return web.Response(text='<html><body onload="document.forms[0].submit()"><form method="post" '
                                 'action="https://signin.aws.amazon.com/saml"><input type="hidden" '
                                 f'name="SAMLResponse" value="{html.escape(response)}"></form></body></html>',
                            content_type="text/html")

    app = web.Application(client_max_size=64 << 10)
    app.router.add_get(ADFS_SIGN_ON, login_form)
    app.router.add_post(ADFS_SIGN_ON, sign_in)
    return app


async def start(app: web.Application, host: str, port: int,
                ssl_context: ssl.SSLContext | None = None) -> tuple[web.AppRunner, tuple[str, int]]:
    """Start serving (over TLS with ssl_context); returns the runner (to stop it) and the bound
    address."""
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, host, port, reuse_address=True, ssl_context=ssl_context)
    await site.start()
    bound = runner.addresses[0]
    return runner, (bound[0], bound[1])
