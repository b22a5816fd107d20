"""Login pieces without sockets: method choice, SCRAM server, throttle."""

from __future__ import annotations

import pytest
import scramp

from proxy.catalog.store import UserRecord
from proxy.frontend.auth import LoginThrottle, Method, choose_method, verify_cleartext
from proxy.policy.users import parse_password
from proxy.protocol.auth import parse_scram_verifier, scram_verifier
from proxy.protocol.scram import ScramFailure, ScramServer


def user(password: str | None) -> UserRecord:
    verifiers = parse_password(password, "bob").verifiers if password else {}
    return UserRecord("bob", False, password_md5=verifiers.get("md5"), password_sha256=verifiers.get("sha256"),
                      password_salt=verifiers.get("salt"), password_scram=verifiers.get("scram"))


CLEAR, MD5, SHA = user("Secret123"), user("md5" + "a" * 32), user("sha256|" + "a" * 64 + "|" + "b" * 64)


@pytest.mark.parametrize("record, driver, tls, scram, method", [
    (CLEAR, False, False, False, Method.MD5),
    (CLEAR, False, False, True, Method.SCRAM),
    (CLEAR, True, True, True, Method.MD5),          # never SCRAM to a Redshift driver
    (None, False, False, True, Method.SCRAM),       # an unknown user looks like CLEAR
    (None, True, False, True, Method.MD5),
    (MD5, False, False, True, Method.MD5),          # no SCRAM verifier behind an md5 hash
    (SHA, True, False, False, Method.DIGEST),
    (SHA, False, True, False, Method.CLEARTEXT),    # cleartext only over TLS
    (SHA, False, False, False, Method.MD5),          # fails like a wrong password
    (user(None), False, False, True, Method.MD5),   # disabled
])
def test_choose_method(record, driver, tls, scram, method):
    assert choose_method(record, redshift_driver=driver, tls=tls, scram=scram) is method


def exchange(password: str, verifier: str, username: str = "bob") -> bool:
    client = scramp.ScramClient(["SCRAM-SHA-256"], username, password)
    server = ScramServer(*parse_scram_verifier(verifier))
    client.set_server_first(server.server_first(client.get_client_first()))
    proved = server.verify_final(client.get_client_final())
    if proved:
        client.set_server_final(server.server_final())  # scramp checks our signature
    return proved


def test_scram_server_against_scramp_client():
    verifier = scram_verifier("Secret123")
    assert exchange("Secret123", verifier)
    assert not exchange("Secret124", verifier)


def test_scram_server_accepts_postgres_empty_user_name_and_rejects_garbage():
    server = ScramServer(*parse_scram_verifier(scram_verifier("Secret123")))
    assert server.server_first("n,,n=,r=abcdef").startswith("r=abcdef")
    with pytest.raises(ScramFailure):
        server.verify_final("c=biws,r=wrongnonce,p=AAAA")
    for bad in ("p=tls-server-end-point,,n=,r=x", "n,a=admin,n=,r=x", "n,,n=", "garbage"):
        with pytest.raises(ScramFailure):
            ScramServer(*parse_scram_verifier(scram_verifier("x" * 8))).server_first(bad)


def test_cleartext_against_each_stored_form():
    assert verify_cleartext("bob", CLEAR, b"Secret123") and not verify_cleartext("bob", CLEAR, b"Secret124")
    sha = user("sha256|Mypassword1")
    assert verify_cleartext("bob", sha, b"Mypassword1") and not verify_cleartext("bob", sha, b"Mypassword2")
    assert not verify_cleartext("bob", None, b"Secret123")


def test_throttle_cools_down_one_user_from_one_address():
    throttle = LoginThrottle(failures=3, window=10, cooldown=5)
    for t in (0, 1, 2):
        assert not throttle.locked("bob", "a", now=t)
        throttle.failed("bob", "a", now=t)
    assert throttle.locked("bob", "a", now=3)
    assert not throttle.locked("bob", "b", now=3) and not throttle.locked("eve", "a", now=3)
    assert not throttle.locked("bob", "a", now=7.1)
    for t in (20, 40, 60):  # spread wider than the window: never locked
        throttle.failed("bob", "a", now=t)
    assert not throttle.locked("bob", "a", now=60)


def test_throttle_is_bounded_and_constant_work_per_failure():
    """A flood of failures over ever new user names (issue 16: 100,000 of them made every
    failure rebuild the table): the throttle keeps at most its bound, and each failure looks
    at a constant few entries, however many came before."""
    throttle = LoginThrottle(failures=3, window=10, cooldown=5, entries=1_000)
    for t in (0, 1, 2):
        throttle.failed("bob", "a", now=t)
    work = throttle.work
    for n in range(50_000):
        throttle.failed(f"user{n}" + "x" * 200, "a", now=3)
        assert len(throttle) <= 1_001
    assert (throttle.work - work) / 50_000 <= 6
    assert throttle.locked("bob", "a", now=4)  # the flood of counting pairs does not forget a lock


def test_throttle_forgets_spent_entries_as_new_ones_come():
    throttle = LoginThrottle(failures=3, window=10, cooldown=5, entries=1_000)
    for n in range(500):
        throttle.failed(f"user{n}", "a", now=0)
    for n in range(500):
        throttle.failed(f"late{n}", "a", now=100)  # the first 500 are past their window
    assert len(throttle) == 500
