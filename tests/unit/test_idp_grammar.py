"""CREATE / ALTER / DROP IDENTITY PROVIDER: statement -> procedure call, or the refusal."""

from __future__ import annotations

import json

import pytest

from proxy.policy import sealing
from proxy.policy.statements import Denial, Translator, classify_statement

KEY = b"backend secret"
T = Translator(lambda name: "verifier", seal=sealing.sealer(KEY))
JWKS = {"keys": [{"kty": "RSA", "kid": "k1", "n": "sXchDaQebHnPiGvyDOAT4saGEUetSyo9MKLOoWFsueri23bOdgWp4Dy1Wl"
                  "UzewbgBHod5pcM9H95GQRV3JDXboIRROSBigeC5yjU1hGzHHyXss8UDprecbAYxknTcQkhslANGRUZmdTOQ5qTRsL"
                  "AVSwGgzeBxKXdZGtSC6adVoOXAiK5XasDAtJyVEd0kF7wqC7twORvZRVsaO3MlnNYKhZTdV5QDoAdQb6bzmdZ8kW"
                  "cWPUBzVbsRqqSG5jlTIYwqmPPI7gN7BqvtrgwRuewmWG3x1Zw-qDXuIiFSDSOffFRDjmdaxm8pK7yZ5SIX0HYUw0p"
                  "CdKKF8iGwTyU9qfVLxyx9vEbhrlzzHbfzbqZ_1QWjSm-EOOkAIFgMz8PV8C3tBw9LnPuH-C3WDA4W1Ux6YBCz7rY"
                  "RxcUPjj1nsKtTrEbk0twqK6X6YpVFGR7CKnxJ9ukWQ", "e": "AQAB"}]}


def params(**changes) -> str:
    value = {"issuer": "https://issuer/", "client_secret": "s", "audience": "api://a", "jwks": JWKS, **changes}
    return json.dumps({k: v for k, v in value.items() if v is not None})


def test_create_becomes_a_call_with_the_checked_parameters():
    sql, tag, cacheable = classify_statement(
        f"CREATE IDENTITY PROVIDER Oauth TYPE azure NAMESPACE 'aad' PARAMETERS '{params()}' "
        "AUTO_CREATE_ROLES TRUE EXCLUDE GROUPS LIKE 'tmp%'", T)
    assert sql.startswith("CALL shiftguard.create_identity_provider(") and tag == b"CREATE IDENTITY PROVIDER"
    assert not cacheable  # holds client_secret
    spec = json.loads(sql[sql.index("E'") + 2:sql.rindex("'::jsonb")].replace("''", "'").replace("\\\\", "\\"))
    assert (spec["name"], spec["namespace"], spec["params"]["audience"]) == ("oauth", "aad", ["api://a"])
    assert spec["groups_filter"] == {"mode": "exclude", "pattern": "tmp%"}


def test_the_secrets_are_sealed_in_the_call():
    """The CALL's text (pg_stat_activity, PostgreSQL's logs) never holds client_secret: it holds
    the secret sealed under the backend secret, which opens it again."""
    secrets = {"client_secret": "Client-Secret-1", "client_pk_base64": "UGsgYmFzZTY0", "client_pk_password": "Pk-pass-1"}
    for verb in ("CREATE IDENTITY PROVIDER p TYPE azure NAMESPACE 'aad'", "ALTER IDENTITY PROVIDER p"):
        sql, _, cacheable = classify_statement(f"{verb} PARAMETERS '{params(**secrets)}'", T)
        assert not cacheable and not any(value in sql for value in secrets.values())
        stored = json.loads(sql[sql.index("E'") + 2:sql.rindex("'::jsonb")].replace("''", "'"))["params"]
        for key, value in secrets.items():
            assert stored[key].startswith(sealing.PREFIX) and sealing.opener(KEY)(key, stored[key]) == value
            with pytest.raises(ValueError):
                sealing.opener(b"another backend")(key, stored[key])
        again = classify_statement(f"{verb} PARAMETERS '{params(**secrets)}'", T)[0]
        assert stored["client_secret"] not in again  # sealed anew: a fresh nonce
    refused = classify_statement(f"ALTER IDENTITY PROVIDER p PARAMETERS '{params()}'", Translator(lambda name: "v"))
    assert isinstance(refused, Denial) and refused.sqlstate == "0A000"


@pytest.mark.parametrize("sql, code", [
    (f"CREATE IDENTITY PROVIDER p TYPE azure NAMESPACE 'aad' PARAMETERS '{params(jwks=None)}'", "22023"),
    (f"CREATE IDENTITY PROVIDER p TYPE azure NAMESPACE 'aad' PARAMETERS '{params(issuer=None)}'", "22023"),
    (f"CREATE IDENTITY PROVIDER p TYPE azure NAMESPACE 'aad' PARAMETERS '{params(public_key='x')}'", "22023"),
    (f"CREATE IDENTITY PROVIDER p TYPE azure NAMESPACE 'a:b' PARAMETERS '{params()}'", "22023"),
    (f"CREATE IDENTITY PROVIDER p TYPE azure NAMESPACE 'IAM' PARAMETERS '{params()}'", "22023"),
    (f"CREATE IDENTITY PROVIDER p TYPE awsidc NAMESPACE 'aad' PARAMETERS '{params()}'", "0A000"),
    ("CREATE IDENTITY PROVIDER p TYPE azure NAMESPACE 'aad'", "22023"),
    (f"CREATE IDENTITY PROVIDER p TYPE azure NAMESPACE 'aad' PARAMETERS '{params()}' ENABLE DISABLE", "42601"),
    ("ALTER IDENTITY PROVIDER p", "42601"),
    ("DROP IDENTITY PROVIDER p RESTRICT", "42601"),
])
def test_refusals(sql, code):
    result = classify_statement(sql, T)
    assert isinstance(result, Denial) and result.sqlstate == code


def test_alter_and_drop():
    sql, tag, _ = classify_statement("ALTER IDENTITY PROVIDER p NAMESPACE 'x' DISABLE", T)
    assert '"enabled":false' in sql and '"namespace":"x"' in sql and tag == b"ALTER IDENTITY PROVIDER"
    assert classify_statement("DROP IDENTITY PROVIDER p CASCADE", T)[0] == \
        "CALL shiftguard.drop_identity_provider(E'p', true)"
    assert classify_statement("SELECT 'identity'", T) is None
