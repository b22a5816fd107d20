"""The control-plane HTTP server (aiohttp) on the API port: /healthz, /readyz, /metrics, the
Redshift API (iam/api.py) and STS (iam/sts.py), told apart by the signature's service, and the
Data API (iam/data_api.py), by its X-Amz-Target; and the
local IdP's HTTPS sign-in (iam/local_idp.py), on a port of its own."""

from __future__ import annotations

import html
import ipaddress
import logging
import ssl
import urllib.parse
from collections.abc import Awaitable, Callable

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST

from .data_api import TARGET_PREFIX as DATA_API_TARGET
from .sts import is_sts_request

log = logging.getLogger(__name__)


def make_app(backend_ok: Callable[[], Awaitable[bool]], redshift=None, metrics=None, sts=None,
             local_idp=None, data_api=None) -> web.Application:
    """/healthz: the process answers. /readyz: the backing database answers too. /metrics:
    Prometheus. redshift: the RedshiftApi answering the AWS Query protocol on POST / (and GET /);
    sts: the StsApi, answering there the requests signed for the sts service (and the unsigned
    ones of STS's version). local_idp: the development IdP's SAML metadata and JWKS. data_api:
    the DataApi (iam/data_api.py), answering there the JSON requests whose X-Amz-Target is
    RedshiftData.*."""
    async def healthz(request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def readyz(request: web.Request) -> web.Response:
        healthy = await backend_ok()
        return web.json_response({"status": "ok" if healthy else "backend unavailable"},
                                 status=200 if healthy else 503)

    async def prometheus(request: web.Request) -> web.Response:
        return web.Response(body=await metrics.exposition(), headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def query_api(request: web.Request) -> web.Response:
        body = await request.read()
        url = f"http://{request.host}{request.path_qs}"
        if data_api is not None and request.headers.get("X-Amz-Target", "").startswith(DATA_API_TARGET):
            reply = await data_api.handle(request.method, url, dict(request.headers), body, request.remote or "")
            return web.Response(status=reply.status, text=reply.body, content_type="application/x-amz-json-1.1")
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
BROWSER_SIGN_ON = "/local-idp/saml/browser"
# Where redshift_connector's BrowserSamlCredentialsProvider listens for the IdP's POST, and what
# AWS's guides have an IdP application post to: its listen_port (7890) on the client's machine.
DEFAULT_ACS = "http://localhost:7890/redshift/"


def _login_page(action: str, hidden: dict[str, str] | None = None) -> str:
    fields = "".join(f'<input type="hidden" name="{html.escape(name)}" value="{html.escape(value)}">'
                     for name, value in (hidden or {}).items())
    return (f'<html><body><form method="post" action="{html.escape(action)}">'
            '<input type="text" name="UserName"><input type="password" name="Password">'
            f'<input type="hidden" name="AuthMethod" value="FormsAuthentication">{fields}'
            '<input type="submit" value="Sign in"></form></body></html>')


def _post_page(action: str, saml_response: str) -> str:
    """The page an IdP answers a sign-in with: a form that the browser posts at once."""
    return (f'<html><body onload="document.forms[0].submit()"><form method="post" action="{html.escape(action)}">'
            f'<input type="hidden" name="SAMLResponse" value="{html.escape(saml_response)}"></form></body></html>')


def loopback_acs(url: str) -> bool:
    """Is url an http(s) address on this machine, where a driver's browser plugin listens? The
    local IdP posts a signed assertion nowhere else (it would hand a login to another host)."""
    if "\\" in url or any(ord(c) < 0x21 or ord(c) > 0x7e for c in url):
        return False  # what browsers read otherwise than urllib (a backslash is a slash to them)
    try:
        parts = urllib.parse.urlsplit(url)
        host, port = parts.hostname, parts.port  # port: ValueError when it is not a number
    except ValueError:
        return False
    if parts.scheme not in ("http", "https") or not host or port == 0 or parts.username or parts.password:
        return False
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def make_local_idp_app(local_idp, roles: Callable[[], list[str]]) -> web.Application:
    """The local IdP's sign-in, in two shapes:
    - AD FS's IdP-initiated sign-on, which redshift_connector's AdfsCredentialsProvider fills
      in: GET is the login form; POST with UserName and Password answers, for a user added to
      the IdP with that password, the page an IdP posts to AWS holding the SAMLResponse
      (naming roles()), else 401 and the form again;
    - a browser sign-in for BrowserSamlCredentialsProvider (its login_url): GET
      BROWSER_SIGN_ON[?acs=URL] is the login form; the POST answers the page that posts the
      SAMLResponse to acs, the driver's listener (DEFAULT_ACS when not given; a loopback address
      only)."""
    adfs_form = _login_page(f"{ADFS_SIGN_ON}?loginToRp=urn:amazon:webservices")

    async def login_form(request: web.Request) -> web.Response:
        return web.Response(text=adfs_form, content_type="text/html")

    def signed_in(user: str, password: str, remote: str | None) -> str | None:
        response = local_idp.form_login(user, password, roles())
        log.info("local IdP: %r %s from %s", user, "signed in" if response else "refused", remote)
        return response

    async def sign_in(request: web.Request) -> web.Response:
        form = await request.post()
        response = signed_in(str(form.get("UserName", "")), str(form.get("Password", "")), request.remote)
        if response is None:
            return web.Response(status=401, text=adfs_form, content_type="text/html")
        return web.Response(text=_post_page("https://signin.aws.amazon.com/saml", response), content_type="text/html")

    async def browser_form(request: web.Request) -> web.Response:
        acs = request.query.get("acs", DEFAULT_ACS)
        if not loopback_acs(acs):
            return web.Response(status=400, text="acs must be an http address on this machine (loopback)")
        return web.Response(text=_login_page(BROWSER_SIGN_ON, {"acs": acs}), content_type="text/html")

    async def browser_sign_in(request: web.Request) -> web.Response:
        form = await request.post()
        acs = str(form.get("acs", DEFAULT_ACS))
        if not loopback_acs(acs):
            return web.Response(status=400, text="acs must be an http address on this machine (loopback)")
        response = signed_in(str(form.get("UserName", "")), str(form.get("Password", "")), request.remote)
        if response is None:
            return web.Response(status=401, text=_login_page(BROWSER_SIGN_ON, {"acs": acs}), content_type="text/html")
        return web.Response(text=_post_page(acs, response), content_type="text/html")

    app = web.Application(client_max_size=64 << 10)
    app.router.add_get(ADFS_SIGN_ON, login_form)
    app.router.add_post(ADFS_SIGN_ON, sign_in)
    app.router.add_get(BROWSER_SIGN_ON, browser_form)
    app.router.add_post(BROWSER_SIGN_ON, browser_sign_in)
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
