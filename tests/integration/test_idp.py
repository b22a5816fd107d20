"""Native identity-provider federation: CREATE / ALTER / DROP IDENTITY PROVIDER and logins with
an OIDC token in auth code 14, from a raw client (with and without the trailing NUL) and from
redshift_connector's BasicJwtCredentialsProvider. The test IdP is an RSA key made here; its
JWKS is given inline."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import socket
import struct
import time
from pathlib import Path

import jwt
import psycopg
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from proxy.audit.records import redact_passwords
from proxy.config import Audit, IdentityProvider
from proxy.policy.identifiers import short_name
from proxy.policy import sealing
from proxy.protocol import messages as m

from ..conftest import ADMIN, unique, wait_for

ISSUER = "https://sts.windows.net/2e0f7f47-1c2a-4b0e-9d4c-3f6a0b7c9d11/"
AUDIENCE = "api://shiftguard-test"
SECRET = "Client-Secret-never-shown"
REFUSED = 'password authentication failed for user ""'


def new_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def jwks_of(key: rsa.RSAPrivateKey, kid: str = "k1") -> dict:
    jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key()))
    return {"keys": [{**jwk, "kid": kid, "use": "sig"}]}


KEY = new_key()


def token(claims: dict | None = None, key=KEY, drop: tuple[str, ...] = (), **extra) -> str:
    now = int(time.time())
    body = {"iss": ISSUER, "aud": AUDIENCE, "iat": now, "nbf": now - 5, "exp": now + 600,
            "upn": "Alice@Example.com", "groups": [], **(claims or {}), **extra}
    for name in drop:
        body.pop(name, None)
    return jwt.encode(body, key, algorithm="RS256", headers={"kid": "k1"})


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def handmade(header: dict, claims: dict, sign) -> str:
    """A JWT pyjwt would refuse to make: alg none, or HS256 keyed with the IdP's public key."""
    signing_input = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(claims).encode())}"
    return f"{signing_input}.{_b64(sign(signing_input.encode()))}"


def claims_now(**extra) -> dict:
    now = int(time.time())
    return {"iss": ISSUER, "aud": AUDIENCE, "exp": now + 600, "upn": "alice@example.com", **extra}


def parameters(**changes) -> str:
    params = {"issuer": ISSUER, "client_id": "87f4aa26-78b7-410e-bf29-57b39929ef9a", "client_secret": SECRET,
              "audience": [AUDIENCE], "jwks": jwks_of(KEY)}
    params.update(changes)
    return json.dumps({k: v for k, v in params.items() if v is not None})


@pytest.fixture
def provider(proxy):
    """(name, namespace) of a fresh provider; dropped with its users and roles afterwards."""
    name, namespace = unique("idp"), unique("ns")
    with proxy.connect() as admin:
        admin.execute(f"CREATE IDENTITY PROVIDER {name} TYPE azure NAMESPACE '{namespace}' "
                      f"PARAMETERS '{parameters()}'")
    yield name, namespace
    with proxy.connect() as admin:
        admin.execute(f"DROP IDENTITY PROVIDER {name} CASCADE")


# --------------------------------------------------------------------------- a raw client


class Raw:
    """A client speaking the protocol over a plain socket: the code-14 exchange, then queries."""

    def __init__(self, proxy, params: dict):
        self.sock = socket.create_connection((proxy.host, proxy.port), timeout=10)
        self.buffer = b""
        self.sock.sendall(m.startup_message(params))

    def message(self) -> tuple[bytes, bytes]:
        while True:
            if len(self.buffer) >= 5:
                (length,) = struct.unpack_from("!i", self.buffer, 1)
                if len(self.buffer) >= length + 1:
                    kind, body = self.buffer[:1], self.buffer[5:length + 1]
                    self.buffer = self.buffer[length + 1:]
                    return kind, body
            data = self.sock.recv(65536)
            if not data:
                raise ConnectionError("closed")
            self.buffer += data

    def until(self, *kinds: bytes) -> list[tuple[bytes, bytes]]:
        seen = []
        while True:
            kind, body = self.message()
            seen.append((kind, body))
            if kind in kinds:
                return seen

    def query(self, sql: str) -> tuple[list[str], dict | None]:
        """First column of each row, and the error's fields if the statement failed."""
        self.sock.sendall(m.query(sql))
        rows, error = [], None
        for kind, body in self.until(b"Z"):
            if kind == b"D":
                (length,) = struct.unpack_from("!i", body, 2)
                rows.append(body[6:6 + length].decode())
            elif kind == b"E":
                error = m.decode_fields(body)
        return rows, error

    def close(self) -> None:
        self.sock.close()


def startup(provider_name: str | None = None) -> dict:
    params = {"database": "dev", "client_protocol_version": "2", "plugin_name": "BasicJwtCredentialsProvider",
              "idp_type": "AzureAD"}
    if provider_name:
        params["provider_name"] = provider_name
    return params


def login(proxy, jwt_text: str | bytes, provider_name: str | None = None, nul: bool = False) -> tuple[Raw, dict | None]:
    """The code-14 exchange; (client, None) when logged in, (client, error fields) when refused."""
    client = Raw(proxy, startup(provider_name))
    kind, body = client.message()
    assert (kind, struct.unpack("!i", body[:4])[0]) == (b"R", 14)
    raw = jwt_text.encode() if isinstance(jwt_text, str) else jwt_text
    client.sock.sendall(m.message(ord("i"), raw + (b"\0" if nul else b"")))
    for kind, body in client.until(b"Z", b"E"):
        if kind == b"E":
            return client, m.decode_fields(body)
    return client, None


def current_user(proxy, jwt_text: str, provider_name: str | None = None, nul: bool = False) -> str:
    client, error = login(proxy, jwt_text, provider_name, nul)
    try:
        assert error is None, error
        rows, error = client.query("SELECT current_user")
        assert error is None
        return rows[0]
    finally:
        client.close()


# --------------------------------------------------------------------------- logins


@pytest.mark.parametrize("nul", [False, True], ids=["python-no-nul", "jdbc-nul"])
def test_token_login_becomes_the_namespaced_user(proxy, provider, postgres, nul):
    name, namespace = provider
    assert current_user(proxy, token(), name, nul=nul) == f"{namespace}:alice@example.com"
    # The provider is found by the token's issuer when the client names none.
    assert current_user(proxy, token(), None, nul=nul) == f"{namespace}:alice@example.com"
    with postgres.connect() as direct:
        row = direct.execute("SELECT password_md5, password_sha256, superuser FROM shiftguard_rows.users "
                             "WHERE name = %s", (f"{namespace}:alice@example.com",)).fetchone()
    assert row == (None, None, False)  # auto-created with PASSWORD DISABLE


def test_a_user_name_of_up_to_127_bytes_logs_in_as_one_user(proxy, provider, postgres):
    """namespace:name past PostgreSQL's 63 bytes: the role has the short name (identifiers.py), the
    catalogs name the user whole, and the next login is the same user; past 127 bytes, refused."""
    name, namespace = provider
    upn = "firstname.lastname." + "x" * 40 + "@example.com"
    user = f"{namespace}:{upn}"
    assert 63 < len(user.encode()) <= 127
    role = short_name(user)
    assert current_user(proxy, token(upn=upn), name) == role
    assert current_user(proxy, token(upn=upn), name) == role
    with postgres.connect() as direct:
        assert direct.execute("SELECT count(*) FROM shiftguard_rows.users WHERE name = %s", (role,)).fetchone() == (1,)
    with proxy.connect() as admin:  # the connection log names the user whole
        assert wait_for(lambda: admin.execute(
            "SELECT DISTINCT trim(username) FROM stl_connection_log WHERE event = 'authenticated' "
            "AND username LIKE %s", (f"{namespace}:first%",)).fetchall() == [(user,)])
    client, error = login(proxy, token(upn="y" * (127 - len(namespace))), name)  # 128 bytes
    client.close()
    assert error is not None and error["C"] == "28P01"


def test_a_token_naming_another_users_short_name_is_refused(proxy, provider):
    """A long user's role has a short name, prefix#hash (identifiers.py); a token whose own user
    name is spelled that way (a UPN may hold '#': a guest's is name#EXT#@tenant) would log in as
    that role, the other user. Such a name is refused; a group named so makes no member of it."""
    name, namespace = provider
    victim = "victim." + "v" * 50 + "@example.com"
    role = short_name(f"{namespace}:{victim}")
    assert current_user(proxy, token(upn=victim), name) == role
    lookalike = role.split(":", 1)[1]
    client, error = login(proxy, token(upn=lookalike), name)
    client.close()
    assert error is not None and error["C"] == "28P01"
    client, error = login(proxy, token(upn="mallory@example.com", groups=[lookalike]), name)
    try:
        assert error is None, error
        rows, error = client.query(f"SELECT pg_has_role('{role}', 'MEMBER')")
        assert error is None and rows[0] == "f"
    finally:
        client.close()


def test_user_claim_is_configurable(proxy, provider):
    name, namespace = provider
    with proxy.connect() as admin:
        admin.execute(f"ALTER IDENTITY PROVIDER {name} PARAMETERS '{parameters(user_claim='oid')}'")
    assert current_user(proxy, token(oid="0F3A-Bob"), name) == f"{namespace}:0f3a-bob"


def test_groups_become_roles_until_the_next_login(proxy, provider):
    name, namespace = provider
    table = unique("sales")
    role = f"{namespace}:analysts"
    with proxy.connect() as admin:
        admin.execute(f"CREATE TABLE {table} (v text)")
        admin.execute(f"INSERT INTO {table} VALUES ('figures')")
    try:
        # The first login with the group creates the role; an admin grants it SELECT.
        client, error = login(proxy, token(groups=["Analysts"]), name)
        assert error is None
        rows, error = client.query(f"SELECT v FROM {table}")
        assert error["C"] == "42501"
        client.close()
        with proxy.connect() as admin:
            assert admin.execute("SELECT count(*) FROM svv_roles WHERE role_name = %s", (role,)).fetchone() == (1,)
            admin.execute(f'GRANT SELECT ON {table} TO ROLE "{role}"')
        client, error = login(proxy, token(groups=["Analysts"]), name)
        assert client.query(f"SELECT v FROM {table}") == (["figures"], None)
        client.close()
        # Out of the group at the next login: the role is gone from the user.
        client, error = login(proxy, token(groups=["Other"]), name)
        rows, error = client.query(f"SELECT v FROM {table}")
        assert rows == [] and error["C"] == "42501"
        client.close()
    finally:
        with proxy.connect() as admin:
            admin.execute(f"DROP TABLE {table}")


def _hs256_with_public_key(sign_input: bytes) -> bytes:
    pem = KEY.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    return hmac.new(pem, sign_input, hashlib.sha256).digest()


REFUSALS = {
    "bad signature": lambda name: (token(key=new_key()), name),
    "alg none": lambda name: (handmade({"alg": "none", "typ": "JWT"}, claims_now(), lambda _: b""), name),
    "HS256 keyed with the public key": lambda name: (
        handmade({"alg": "HS256", "typ": "JWT", "kid": "k1"}, claims_now(), _hs256_with_public_key), name),
    "wrong issuer": lambda name: (token(iss="https://evil.example/"), name),
    "wrong audience": lambda name: (token(aud="api://someone-else"), name),
    "expired": lambda name: (token(exp=int(time.time()) - 3600, nbf=int(time.time()) - 7200), name),
    "not yet valid": lambda name: (token(nbf=int(time.time()) + 3600), name),
    "no expiry": lambda name: (token(drop=("exp",)), name),
    "unknown provider": lambda name: (token(), "no_such_provider"),
    "unknown issuer, no provider named": lambda name: (token(iss="https://other.example/"), None),
    "no user claim": lambda name: (token(drop=("upn",)), name),
    "not a JWT": lambda name: ("garbage", name),
}


@pytest.mark.parametrize("case", list(REFUSALS))
def test_every_bad_token_gets_the_same_answer(proxy, provider, postgres, case):
    name, namespace = provider
    jwt_text, provider_name = REFUSALS[case](name)
    client, error = login(proxy, jwt_text, provider_name)
    client.close()
    assert (error["S"], error["C"], error["M"]) == ("FATAL", "28P01", REFUSED)
    with postgres.connect() as direct:
        assert direct.execute("SELECT count(*) FROM shiftguard_rows.users WHERE name LIKE %s",
                              (f"{namespace}:%",)).fetchone() == (0,)


def test_a_disabled_provider_refuses_and_enable_restores(proxy, provider):
    name, namespace = provider
    with proxy.connect() as admin:
        admin.execute(f"ALTER IDENTITY PROVIDER {name} DISABLE")
    client, error = login(proxy, token(), name)
    client.close()
    assert (error["C"], error["M"]) == ("28P01", REFUSED)
    with proxy.connect() as admin:
        admin.execute(f"ALTER IDENTITY PROVIDER {name} ENABLE")
    assert current_user(proxy, token(), name) == f"{namespace}:alice@example.com"


@pytest.mark.parametrize("kind", [b"p", b"oversized"])
def test_anything_but_one_bounded_token_message_is_a_protocol_violation(proxy, provider, kind):
    name, _ = provider
    client = Raw(proxy, startup(name))
    client.message()
    if kind == b"p":
        client.sock.sendall(m.password_message(token().encode() + b"\0"))
    else:
        client.sock.sendall(m.message(ord("i"), b"x" * 20_000))
    kinds = client.until(b"E")
    client.close()
    assert m.decode_fields(kinds[-1][1])["C"] == "08P01"


def test_a_password_login_without_a_user_is_still_refused(proxy):
    client = Raw(proxy, {"database": "dev"})
    kind, body = client.message()
    client.close()
    assert kind == b"E" and m.decode_fields(body)["C"] == "28000"


def test_refusals_and_logins_are_in_the_connection_log(make_proxy, tmp_path):
    proxy = make_proxy(audit=Audit(dir=str(tmp_path / "audit"), user_activity=True))
    name, namespace = unique("idp"), unique("ns")
    with proxy.connect() as admin:
        admin.execute(f"CREATE IDENTITY PROVIDER {name} TYPE azure NAMESPACE '{namespace}' "
                      f"PARAMETERS '{parameters()}'")
    try:
        bad = token(aud="api://someone-else")
        login(proxy, bad, name)[0].close()
        assert current_user(proxy, token(), name) == f"{namespace}:alice@example.com"
        with proxy.connect() as admin:
            rows = wait_for(lambda: admin.execute(
                "SELECT event, username, authmethod, plugin_name FROM stl_connection_log WHERE authmethod = %s "
                "AND event IN ('authenticated', 'authentication failure') ORDER BY recordtime", (name,)).fetchall()
                if len(admin.execute("SELECT 1 FROM stl_connection_log WHERE authmethod = %s AND event IN "
                                     "('authenticated', 'authentication failure')", (name,)).fetchall()) >= 2
                else None)
            assert rows == [("authentication failure", "", name, "BasicJwtCredentialsProvider"),
                            ("authenticated", f"{namespace}:alice@example.com", name, "BasicJwtCredentialsProvider")]
            # The user activity log holds the statement, without the client secret.
            texts = [r[0] for r in admin.execute("SELECT sql FROM shiftguard_rows.query_log WHERE sql LIKE "
                                                 "'CREATE IDENTITY PROVIDER%'").fetchall()]
        assert texts and not any(SECRET in t for t in texts)
        log_text = "".join(p.read_text() for p in (tmp_path / "audit").rglob("*") if p.is_file())
        assert SECRET not in log_text and bad not in log_text
    finally:
        with proxy.connect() as admin:
            admin.execute(f"DROP IDENTITY PROVIDER {name} CASCADE")


# --------------------------------------------------------------------------- statements


def test_only_superusers_manage_identity_providers(proxy, provider, new_user):
    name, _ = provider
    user, password = new_user()
    with proxy.connect(user, password) as conn:
        for sql in (f"CREATE IDENTITY PROVIDER x_{user} TYPE azure NAMESPACE 'n_{user}' PARAMETERS '{parameters()}'",
                    f"ALTER IDENTITY PROVIDER {name} DISABLE", f"DROP IDENTITY PROVIDER {name}"):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(sql)
        assert conn.execute("SELECT count(*) FROM svv_identity_providers").fetchone() == (0,)


def test_statement_errors(proxy, provider):
    name, namespace = provider
    with proxy.connect() as admin:
        with pytest.raises(psycopg.errors.DuplicateObject, match="already exists"):
            admin.execute(f"CREATE IDENTITY PROVIDER {name} TYPE azure NAMESPACE 'other' PARAMETERS '{parameters()}'")
        with pytest.raises(psycopg.errors.DuplicateObject, match="namespace"):
            admin.execute(f"CREATE IDENTITY PROVIDER {name}_2 TYPE azure NAMESPACE '{namespace}' "
                          f"PARAMETERS '{parameters()}'")
        for sql in ("ALTER IDENTITY PROVIDER no_such_idp DISABLE", "DROP IDENTITY PROVIDER no_such_idp"):
            with pytest.raises(psycopg.errors.UndefinedObject, match="does not exist"):
                admin.execute(sql)
        for bad in (parameters(jwks=None), parameters(audience=None), "not json",
                    parameters(jwks={"keys": [{"kty": "oct", "k": "c2VjcmV0"}]})):
            with pytest.raises(psycopg.errors.InvalidParameterValue):
                admin.execute(f"CREATE IDENTITY PROVIDER {name}_3 TYPE azure NAMESPACE 'n3' PARAMETERS '{bad}'")
        with pytest.raises(psycopg.errors.FeatureNotSupported):
            admin.execute(f"CREATE IDENTITY PROVIDER {name}_4 TYPE okta NAMESPACE 'n4' PARAMETERS '{parameters()}'")
        with pytest.raises(psycopg.errors.SyntaxError):
            admin.execute(f"CREATE IDENTITY PROVIDER {name}_5 TYPE azure PARAMETERS '{parameters()}'")


def test_svv_identity_providers_never_shows_the_secret(proxy, provider):
    name, namespace = provider
    with proxy.connect() as admin:
        row = admin.execute("SELECT uid, name, type, instanceid, namespc, params, enabled FROM svv_identity_providers "
                            "WHERE name = %s", (name,)).fetchone()
    uid, shown_name, kind, instanceid, namespc, params, enabled = row
    assert (shown_name, kind, instanceid, namespc, enabled) == (
        name, "azure", "2e0f7f47-1c2a-4b0e-9d4c-3f6a0b7c9d11", namespace, True)
    assert isinstance(uid, int)
    shown = json.loads(params)
    assert shown["issuer"] == ISSUER and shown["audience"] == [AUDIENCE]
    assert "client_secret" not in shown and SECRET not in params


def test_alter_replaces_parameters_and_drop_cascade_removes_users_and_roles(proxy, provider, postgres):
    name, namespace = provider
    assert current_user(proxy, token(groups=["Team"]), name) == f"{namespace}:alice@example.com"
    other = new_key()
    with proxy.connect() as admin:
        admin.execute(f"ALTER IDENTITY PROVIDER {name} PARAMETERS '{parameters(jwks=jwks_of(other))}'")
    client, error = login(proxy, token(), name)  # the old key no longer signs logins
    client.close()
    assert error["C"] == "28P01"
    assert current_user(proxy, token(key=other), name) == f"{namespace}:alice@example.com"
    with proxy.connect() as admin:
        admin.execute(f"DROP IDENTITY PROVIDER {name} CASCADE")
        admin.execute(f"CREATE IDENTITY PROVIDER {name} TYPE azure NAMESPACE '{namespace}' "
                      f"PARAMETERS '{parameters()}'")  # for the fixture's own DROP
    with postgres.connect() as direct:
        assert direct.execute("SELECT count(*) FROM pg_roles WHERE rolname LIKE %s",
                              (f"{namespace}:%",)).fetchone() == (0,)


def test_secrets_are_redacted_from_logged_statements():
    sql = f"CREATE IDENTITY PROVIDER p TYPE azure NAMESPACE 'n' PARAMETERS '{parameters()}'"
    for standard_strings in (True, False):
        assert SECRET not in redact_passwords(sql, standard_strings) and ISSUER in redact_passwords(sql, standard_strings)


def test_the_client_secret_is_in_no_statement_text(make_proxy, tmp_path, postgres):
    """CREATE / ALTER IDENTITY PROVIDER hand the procedures the secrets sealed: another session of
    the admin reading pg_stat_activity, PostgreSQL's own log (every statement, and the statement of
    an error) and shiftguard's logs never find client_secret. The CALL stays in the caller's
    transaction, the provider still signs users in, and the backend secret opens what is stored."""
    proxy = make_proxy(audit=Audit(dir=str(tmp_path / "audit"), user_activity=True))
    name, namespace = unique("idp"), unique("ns")
    first, second, third = unique("Secret-One"), unique("Secret-Two"), unique("Secret-Three")
    create = (f"CREATE IDENTITY PROVIDER {name} TYPE azure NAMESPACE '{namespace}' "
              f"PARAMETERS '{parameters(client_secret=first)}'")
    server_log = postgres.data_dir / "postgres.log"
    logged_before = server_log.stat().st_size
    with postgres.connect() as direct:
        direct.execute(f"ALTER ROLE {ADMIN} SET log_statement = 'all'")
        backend_secret = bytes.fromhex(direct.execute(
            "SELECT value FROM shiftguard_rows.settings WHERE name = 'backend_secret'").fetchone()[0])

    def stored() -> str:
        with postgres.connect() as direct:
            sealed = direct.execute("SELECT params->>'client_secret' FROM shiftguard_rows.identity_providers "
                                    "WHERE name = %s", (name,)).fetchone()[0]
        assert sealed.startswith(sealing.PREFIX)
        return sealing.opener(backend_secret)("client_secret", sealed)

    seen = []
    try:
        with proxy.connect() as admin, proxy.connect() as watcher:
            admin.execute(f"SELECT 1; {create}; SELECT 2")  # one transaction with the rest of its batch
            seen += watcher.execute("SELECT query FROM pg_stat_activity").fetchall()
            with pytest.raises(psycopg.errors.DuplicateObject):  # the backend refuses: its log has the statement
                admin.execute(create)
            with pytest.raises(psycopg.errors.SyntaxError):  # cannot be scanned: refused, never sent
                admin.execute(f"ALTER IDENTITY PROVIDER {name} PARAMETERS '{parameters(client_secret=third)}'; "
                              "SELECT 'unterminated")
            admin.execute("BEGIN")
            admin.execute(f"ALTER IDENTITY PROVIDER {name} PARAMETERS '{parameters(client_secret=second)}'")
            seen += watcher.execute("SELECT query FROM pg_stat_activity").fetchall()
            admin.execute("ROLLBACK")
            assert stored() == first
            admin.execute(f"ALTER IDENTITY PROVIDER {name} PARAMETERS '{parameters(client_secret=second)}'")
            seen += watcher.execute("SELECT query FROM pg_stat_activity").fetchall()
        assert stored() == second
        assert current_user(proxy, token(), name) == f"{namespace}:alice@example.com"
        with postgres.connect() as direct:
            seen += direct.execute("SELECT query FROM pg_stat_activity").fetchall()
        with proxy.connect() as admin:
            assert wait_for(lambda: admin.execute("SELECT count(*) FROM sys_query_history WHERE query_text LIKE %s",
                                                  (f"%IDENTITY PROVIDER {name}%",)).fetchone()[0] == 4)
            seen += admin.execute("SELECT query_text || error_message FROM sys_query_history").fetchall()
            seen += admin.execute("SELECT querytxt FROM stl_query").fetchall()
        with server_log.open("rb") as file:
            file.seek(logged_before)
            server = file.read().decode(errors="replace")
        assert "shiftguard.alter_identity_provider" in server and "already exists" in server
        activity = (tmp_path / "audit" / "useractivitylog").read_text()
        assert f"IDENTITY PROVIDER {name}" in activity and any(f"IDENTITY PROVIDER {name}" in r[0] for r in seen)
        for text in (server, activity, "\n".join(str(r[0]) for r in seen)):
            assert first not in text and second not in text and third not in text
    finally:
        with postgres.connect() as direct:
            direct.execute(f"ALTER ROLE {ADMIN} RESET log_statement")
        with proxy.connect() as admin:
            admin.execute(f"DROP IDENTITY PROVIDER {name} CASCADE")


# --------------------------------------------------------------------------- configuration


def test_providers_from_the_configuration(make_proxy, postgres):
    name, namespace = unique("cfg"), unique("ns")
    configured = IdentityProvider(name=name, namespace=namespace, parameters=json.loads(parameters()))
    proxy = make_proxy(identity_providers=[configured])
    try:
        assert current_user(proxy, token(), name) == f"{namespace}:alice@example.com"
        with proxy.connect() as admin:
            assert admin.execute("SELECT namespc FROM svv_identity_providers WHERE name = %s",
                                 (name,)).fetchone() == (namespace,)
        with postgres.connect() as direct:  # stored sealed, as CREATE IDENTITY PROVIDER stores it
            assert direct.execute("SELECT params->>'client_secret' FROM shiftguard_rows.identity_providers WHERE name = %s",
                                  (name,)).fetchone()[0].startswith(sealing.PREFIX)
    finally:
        with proxy.connect() as admin:
            admin.execute(f"DROP IDENTITY PROVIDER {name} CASCADE")


# --------------------------------------------------------------------------- redshift_connector


def test_redshift_connector_basic_jwt_provider(proxy, provider, monkeypatch):
    """The driver insists on TLS for native IdP plugins ("Authentication must use an SSL
    connection"); it trusts the proxy's certificate through SSL_CERT_FILE (see
    test_redshift_connector.py)."""
    redshift_connector = pytest.importorskip("redshift_connector")
    monkeypatch.setenv("SSL_CERT_FILE", str(Path(proxy.config.data_dir) / "tls" / "server.crt"))
    name, namespace = provider
    conn = redshift_connector.connect(host=proxy.host, port=proxy.port, database="dev", ssl=True, sslmode="verify-ca",
                                      timeout=20,
                                      credentials_provider="BasicJwtCredentialsProvider",
                                      web_identity_token=token(groups=["Readers"]), provider_name=name,
                                      iam_disable_cache=True)
    try:
        cursor = conn.cursor()
        cursor.execute("SELECT current_user")
        assert cursor.fetchone()[0] == f"{namespace}:alice@example.com"
    finally:
        conn.close()
