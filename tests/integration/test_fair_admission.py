"""One client cannot freeze or starve the others (issue 16): connections that have not logged in
have a budget of their own, a flood of failed logins keeps the login throttle small, one
statement's work is bounded by size limits, and the classification cache by its byte budget.
Work is counted (connections, entries, bytes), never timed. Loopback addresses play other hosts."""

from __future__ import annotations

import concurrent.futures
import socket
import struct
from dataclasses import replace

import psycopg
import pytest

from proxy.config import Auth, Limits
from proxy.protocol import messages as m
from proxy.protocol.auth import md5_response, redshift_md5

from ..conftest import wait_for
from .test_bad_input import error_fields, read_all
from .test_connectivity import attempt, logged_in


def silent(proxy, source: str, count: int) -> list[socket.socket]:
    """count TCP connections from source that never send a byte."""
    return [socket.create_connection((proxy.host, proxy.port), timeout=10, source_address=(source, 0))
            for _ in range(count)]


def settled(proxy, opened: int) -> bool:
    """Every connection opened so far is either waiting to log in or was closed to make room or
    refused for its address."""
    context = proxy.proxy.context
    return len(context.waiting) + context.refused["login limit"] + context.refused["address login limit"] >= opened


def logs_in(proxy) -> bool:
    with proxy.connect() as conn:
        return conn.execute("SELECT 1").fetchone() == (1,)


def test_a_thousand_silent_connections_do_not_keep_a_user_out(proxy):
    """With the defaults, 1,000 connections from 127.0.0.2 that never send a byte: a user at
    127.0.0.1 logs in; at most 250 of them wait at once, the oldest were closed to make room."""
    held = silent(proxy, "127.0.0.2", 1000)
    try:
        assert wait_for(lambda: settled(proxy, 1000), timeout=30)
        assert logs_in(proxy)
        waiting = proxy.proxy.context.waiting
        assert waiting.peak <= Limits().max_unauthenticated_connections
        assert proxy.proxy.context.connection_total <= Limits().max_unauthenticated_connections
        assert proxy.proxy.context.refused["login limit"] >= 1000 - Limits().max_unauthenticated_connections
        # The oldest one was told why it was closed.
        fields = error_fields(read_all(held[0]))
        assert fields["C"] == "53300" and fields["M"] == "too many connections are waiting to log in"
    finally:
        for sock in held:
            sock.close()


def test_silent_connections_from_many_addresses_do_not_keep_a_user_out(make_proxy):
    """20 addresses with 20 silent connections each against a budget of 50: each newcomer
    closes the oldest of the address with the most waiting, and a login from a 21st address
    gets in; so does a login from one of the 20."""
    proxy = make_proxy(limits=replace(Limits(), max_unauthenticated_connections=50))
    held = []
    try:
        for n in range(20):
            held += silent(proxy, f"127.0.0.{n + 2}", 20)
        assert wait_for(lambda: settled(proxy, 400), timeout=30)
        assert logs_in(proxy)
        logged_in(proxy, "127.0.0.5").close()
        assert proxy.proxy.context.waiting.peak <= 50
    finally:
        for sock in held:
            sock.close()


def test_silent_connections_cannot_take_every_connection_slot(make_proxy):
    """max_client_connections of 10, all taken by connections that have not logged in: a
    client that logs in still gets in (one of them makes room); once all 10 have logged in,
    the next is refused with 53300."""
    proxy = make_proxy(limits=replace(Limits(), max_client_connections=10))
    held = silent(proxy, "127.0.0.2", 10)
    sessions = []
    try:
        assert wait_for(lambda: settled(proxy, 10))
        for _ in range(10):
            sessions.append(logged_in(proxy, "127.0.0.3"))
        assert wait_for(lambda: proxy.proxy.context.connection_total == 10)
        assert attempt(proxy, "127.0.0.4") == "error 53300"
    finally:
        for sock in held + sessions:
            sock.close()


def test_the_budget_per_address_refuses_only_that_address(make_proxy):
    proxy = make_proxy(limits=replace(Limits(), max_unauthenticated_per_address=10))
    held = silent(proxy, "127.0.0.2", 10)
    try:
        assert wait_for(lambda: settled(proxy, 10))
        with socket.create_connection((proxy.host, proxy.port), timeout=10, source_address=("127.0.0.2", 0)) as sock:
            fields = error_fields(read_all(sock))
        assert fields["C"] == "53300" and "have not logged in yet" in fields["M"]
        assert logs_in(proxy)  # 127.0.0.1
        assert attempt(proxy, "127.0.0.3") == "admitted"
    finally:
        for sock in held:
            sock.close()


def failed_login(proxy, source: str, user: str) -> dict[str, str]:
    with socket.create_connection((proxy.host, proxy.port), timeout=10, source_address=(source, 0)) as sock:
        sock.sendall(m.startup_message({"user": user, "database": "dev"}))
        data = sock.recv(1024)
        assert data[:1] == b"R" and struct.unpack_from("!i", data, 5)[0] == m.AUTH_MD5
        sock.sendall(m.password_message(md5_response(redshift_md5("Wrong1234", user), data[9:13]) + b"\0"))
        return error_fields(read_all(sock))


def test_a_failed_login_flood_over_many_user_names_keeps_the_throttle_small(make_proxy):
    """600 failed logins from 127.0.0.2, each for another user name (some of them long): the
    throttle keeps at most its bound of pairs and does a constant few steps per failure; every
    one of them gets 28P01, and the admin at 127.0.0.1 logs in. A pair locked before the flood
    stays locked."""
    proxy = make_proxy(auth=replace(Auth(), lockout_max_pairs=50, lockout_failures=3))
    throttle = proxy.proxy.context.throttle
    for _ in range(3):
        assert failed_login(proxy, "127.0.0.2", "victim")["C"] == "28P01"
    assert throttle.locked("victim", "127.0.0.2")
    work = throttle.work
    names = [f"flood{n}" + "x" * (n % 7) * 500 for n in range(600)]
    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(lambda name: failed_login(proxy, "127.0.0.2", name), names))
    assert {(a["S"], a["C"]) for a in answers} == {("FATAL", "28P01")}
    assert len(throttle) <= 2 * 50
    assert (throttle.work - work) / len(names) <= 8  # looked up, counted, a few forgotten
    assert throttle.locked("victim", "127.0.0.2")
    assert logs_in(proxy)


# --------------------------------------------------------------------------- one statement's work


def classified(proxy, result: str) -> float:
    import re
    import urllib.request

    text = urllib.request.urlopen(f"http://127.0.0.1:{proxy.api_port}/metrics").read().decode()
    found = re.search(rf'^shiftguard_classification_total\{{result="{result}"\}} (\S+)$', text, re.M)
    return float(found.group(1)) if found else 0.0


def test_twelve_huge_statements_are_refused_and_leave_the_cache_alone(proxy):
    """With the defaults, 12 different 1 MB statements that the proxy would have to read (they
    hold non-ASCII text) are refused with 54000 and a hint, without being read; the session goes
    on, and the cache's own byte count does not move."""
    cache = proxy.proxy.context.classify
    with proxy.connect() as conn:
        assert conn.execute("SELECT 'é'").fetchone() == ("é",)
        before = cache.bytes
        assert before > 0
        for n in range(12):
            with pytest.raises(psycopg.errors.ProgramLimitExceeded) as refused:
                conn.execute(f"SELECT {n}, '{'é' * 500_000}'")
            assert "too large for shiftguard to check" in str(refused.value)
            assert "limits.max_checked_statement_size" in refused.value.diag.message_hint
            assert cache.bytes == before
        assert conn.execute("SELECT 'still here'").fetchone() == ("still here",)
    assert classified(proxy, "too large") == 12


def test_a_huge_statement_the_proxy_need_not_read_runs(proxy):
    with proxy.connect() as conn:
        assert conn.execute(f"SELECT length('{'x' * 2_000_000}')").fetchone() == (2_000_000,)


def test_a_statement_over_redshifts_16_mb_is_refused_with_its_wording(proxy):
    sql = f"SELECT length('{'x' * (16 << 20)}')"
    with proxy.connect() as conn:
        with pytest.raises(psycopg.errors.ProgramLimitExceeded) as refused:
            conn.execute(sql)
        assert str(refused.value).strip() == (f"Statement is too large. Statement Size: {len(sql)} bytes. "
                                              f"Maximum Allowed: {16 << 20} bytes")
        assert conn.execute("SELECT 1").fetchone() == (1,)


def test_the_classification_cache_keeps_to_its_byte_budget(make_proxy):
    """Limits raised so that huge statements are read: 12 statements of 600 kB run and are not
    cached (each would take more than a sixteenth of the 1 MB budget); 80 of 6 kB are, while
    the cache's own byte count stays within the budget; the last one is then served from it."""
    proxy = make_proxy(limits=replace(Limits(), max_checked_statement_size=16 << 20,
                                      classification_cache_bytes=1 << 20))
    cache = proxy.proxy.context.classify
    with proxy.connect() as conn:
        before = cache.bytes
        for n in range(12):
            assert conn.execute(f"SELECT {n}, length('{'é' * 300_000}')").fetchone() == (n, 300_000)
            assert cache.bytes == before
        for n in range(80):
            assert conn.execute(f"SELECT {n}, length('{'é' * 3000}')").fetchone() == (n, 3000)
            assert cache.bytes <= 1 << 20
        cached = classified(proxy, "cached")
        assert conn.execute(f"SELECT 79, length('{'é' * 3000}')").fetchone() == (79, 3000)
        assert classified(proxy, "cached") > cached


def test_a_message_that_would_rewrite_more_than_its_budget_is_refused_and_runs_nothing(proxy):
    """6,000 statements naming pg_user after a CREATE TABLE (140 kB, under the checked size):
    rewriting them all would pass limits.max_rewritten_statement_size (128 kB), so the message is
    refused with 54000, the table is not created, and the session goes on."""
    from ..conftest import unique

    table = unique("t")
    script = f"CREATE TABLE {table} (a int);" + "SELECT usename FROM pg_user;" * 6000
    assert len(script) < Limits().max_checked_statement_size
    with proxy.connect() as conn:
        with pytest.raises(psycopg.errors.ProgramLimitExceeded, match="too large for shiftguard to rewrite"):
            conn.execute(script)
        assert conn.execute("SELECT to_regclass(%s)", (table,)).fetchone() == (None,)
        assert conn.execute("SELECT count(*) >= 1 FROM pg_user").fetchone() == (True,)
