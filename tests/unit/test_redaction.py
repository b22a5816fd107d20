"""The user activity log's redaction (audit/records.py): statements read as the session reads
them (standard_conforming_strings on or off), what follows PASSWORD and the secrets of
PARAMETERS taken out, error messages that quote them not kept."""

from __future__ import annotations

import hashlib
import json

import pytest

from proxy.audit.records import ERROR_NOT_LOGGED, UNREADABLE, redact_passwords, redact_statement

PASSWORD = "Carolnew999"
MD5 = "md5" + hashlib.md5(f"{PASSWORD}carol".encode()).hexdigest()
SHA256 = f"sha256|{'ab' * 32}|{'cd' * 32}"

# (statement, standard_conforming_strings, the secret it holds, text the log must keep)
CASES = [
    (f"ALTER USER carol PASSWORD '{PASSWORD}'", True, PASSWORD, "ALTER USER carol PASSWORD '***'"),
    (f"ALTER USER carol PASSWORD '{PASSWORD}'", False, PASSWORD, "ALTER USER carol PASSWORD '***'"),
    (f"alter user carol password '{PASSWORD}'", False, PASSWORD, "alter user carol password '***'"),
    (f"CREATE USER carol WITH PASSWORD '{PASSWORD}' VALID UNTIL '2030-01-01' CREATEDB", False, PASSWORD,
     "VALID UNTIL '2030-01-01' CREATEDB"),
    (f"CREATE USER carol PASSWORD '{PASSWORD}' SYSLOG ACCESS UNRESTRICTED", False, PASSWORD,
     "PASSWORD '***' SYSLOG ACCESS UNRESTRICTED"),
    (f"CREATE USER carol PASSWORD '{MD5}'", False, MD5[3:], "CREATE USER carol"),
    (f"ALTER USER carol PASSWORD '{SHA256}'", False, "abababab", "ALTER USER carol"),
    (f"ALTER USER carol PASSWORD 'sha256|{PASSWORD}'", False, PASSWORD, "ALTER USER carol"),
    (f"CREATE ROLE carol LOGIN PASSWORD '{PASSWORD}'", True, PASSWORD, "CREATE ROLE carol LOGIN"),
    (f"ALTER ROLE carol WITH ENCRYPTED PASSWORD '{PASSWORD}'", False, PASSWORD, "ALTER ROLE carol"),
    (f"ALTER USER carol PASSWORD $${PASSWORD}$$", False, PASSWORD, "ALTER USER carol"),
    (f"ALTER USER carol PASSWORD $$Carol'new\\999$$", False, "new", "ALTER USER carol"),
    (f"ALTER USER carol PASSWORD $pw${PASSWORD}$pw$", False, PASSWORD, "ALTER USER carol"),
    (f"ALTER USER carol PASSWORD E'{PASSWORD}'", True, PASSWORD, "ALTER USER carol"),
    ("ALTER USER carol PASSWORD E'Carol\\'new999'", True, "new999", "ALTER USER carol"),
    ("ALTER USER carol PASSWORD e'Carol\\x6eew999'", False, "ew999", "ALTER USER carol"),
    (f"ALTER USER carol PASSWORD U&'{PASSWORD}'", False, PASSWORD, "ALTER USER carol"),
    ("ALTER USER carol PASSWORD U&'Caro!006cnew999' UESCAPE '!'", False, "new999", "ALTER USER carol"),
    (f"ALTER USER carol PASSWORD N'{PASSWORD}'", False, PASSWORD, "ALTER USER carol"),
    (f"ALTER USER carol PASSWORD = '{PASSWORD}'", False, PASSWORD, "ALTER USER carol"),
    (f"ALTER USER carol PASSWORD {PASSWORD}", False, PASSWORD, "ALTER USER carol"),
    (f'ALTER USER carol PASSWORD "{PASSWORD}"', False, PASSWORD, "ALTER USER carol"),
    (f"ALTER USER carol PASSWORD /* {PASSWORD} */ '{PASSWORD}'", False, PASSWORD, "ALTER USER carol"),
    (f"ALTER USER carol PASSWORD -- the new one\n'{PASSWORD}'", False, PASSWORD, "ALTER USER carol"),
    (f"ALTER USER carol PASSWORD 'Carol'\n'new999'", False, "new999", "ALTER USER carol"),
    # a batch with backslash constants before the password: Redshift sessions read \' as a quote
    (f"SELECT 'It\\'s', 'done'; ALTER USER carol PASSWORD '{PASSWORD}'; SELECT 'ok\\'', 'x'", False, PASSWORD,
     "ALTER USER carol PASSWORD '***'"),
    (f"SELECT 'It\\'s'; ALTER USER carol PASSWORD 'Carol\\'new999'; SELECT 'ok'", False, "new999",
     "ALTER USER carol PASSWORD '***'"),
    # ... and one with the setting on, where the same backslash ends the constant
    (f"SELECT 'x\\'; ALTER USER carol PASSWORD '{PASSWORD}'; --'", True, PASSWORD,
     "ALTER USER carol PASSWORD '***'"),
    (f"CREATE USER MAPPING FOR carol SERVER s OPTIONS (user 'carol', password '{PASSWORD}')", False, PASSWORD,
     "user 'carol'"),
    # COPY's and UNLOAD's AWS credentials (the access key id is not a secret)
    (f"COPY t FROM 's3://b/k' ACCESS_KEY_ID 'AKIAX' SECRET_ACCESS_KEY '{PASSWORD}' SESSION_TOKEN 'tok{PASSWORD}'",
     False, PASSWORD, "ACCESS_KEY_ID 'AKIAX' SECRET_ACCESS_KEY '***' SESSION_TOKEN '***'"),
    (f"UNLOAD ('select 1') TO 's3://b/k' CREDENTIALS AS 'aws_access_key_id=AKIAX;aws_secret_access_key={PASSWORD}'",
     True, PASSWORD, "TO 's3://b/k' CREDENTIALS '***'"),
]


@pytest.mark.parametrize("sql, standard_strings, secret, kept", CASES)
def test_what_follows_password_is_never_logged(sql, standard_strings, secret, kept):
    logged = redact_passwords(sql, standard_strings)
    assert secret not in logged and kept in logged


@pytest.mark.parametrize("sql, standard_strings", [
    (f"ALTER USER carol PASSWORD '{PASSWORD}", True),       # unterminated
    (f"ALTER USER carol PASSWORD '{PASSWORD}\\'", False),   # unterminated as the session reads it
    (f"ALTER USER carol PASSWORD E'{PASSWORD}", False),
    (f"ALTER USER carol PASSWORD $x${PASSWORD}", False),
])
def test_a_statement_that_cannot_be_read_is_not_logged(sql, standard_strings):
    redacted = redact_statement(sql, standard_strings)
    assert redacted.text == UNREADABLE
    assert redacted.error_message(f'unterminated quoted string at or near "\'{PASSWORD}"') == ERROR_NOT_LOGGED


def test_statements_without_secrets_are_logged_as_sent():
    for sql in ("SELECT 'It\\'s'", "SELECT 1", "SELECT 'a'; SELECT 'b\\'", "SELECT 'password'"):
        assert redact_passwords(sql, False) == sql and redact_passwords(sql, True) == sql


def test_error_messages_quoting_the_secret_are_not_kept():
    redacted = redact_statement(f"ALTER USER carol PASSWORD {PASSWORD}", False)
    assert redacted.error_message(f'syntax error at or near "{PASSWORD}"') == ERROR_NOT_LOGGED
    assert redacted.error_message('user "carol" does not exist') == 'user "carol" does not exist'
    plain = redact_statement("SELECT 1/0", False)
    assert plain.error_message("division by zero") == "division by zero"


SECRET = "Client-Secret-never-shown"
PARAMS = {"issuer": "https://issuer/", "client_id": "c", "client_secret": SECRET, "audience": ["a"],
          "client_pk_password": "Pk-Password-never-shown"}


@pytest.mark.parametrize("constant", [
    "'" + json.dumps(PARAMS) + "'",
    "$$" + json.dumps(PARAMS) + "$$",
    "E'" + json.dumps(PARAMS).replace('"', '\\"') + "'",
    "E'" + json.dumps(PARAMS).replace("C", "\\u0043") + "'",
    "U&'" + json.dumps(PARAMS) + "'",
    "'not json " + SECRET + "'",
])
@pytest.mark.parametrize("verb", ["CREATE IDENTITY PROVIDER p TYPE azure NAMESPACE 'n'", "ALTER IDENTITY PROVIDER p"])
def test_identity_provider_secrets_are_never_logged(verb, constant):
    for standard_strings in (True, False):
        redacted = redact_statement(f"{verb} PARAMETERS {constant} DISABLE", standard_strings)
        assert "never-shown" not in redacted.text and redacted.text.endswith(" DISABLE")
        assert redacted.error_message(f"invalid value {SECRET}") == ERROR_NOT_LOGGED
    redacted = redact_statement(f"{verb} PARAMETERS '{json.dumps(PARAMS)}'", False)
    assert "https://issuer/" in redacted.text
    assert redacted.error_message('identity provider PARAMETERS need "issuer"') == \
        'identity provider PARAMETERS need "issuer"'
