"""One client cannot freeze or starve the others (issue 16): a flood of failed logins keeps the
login throttle small. Work is counted (entries), never timed. Loopback addresses play other
hosts."""

from __future__ import annotations

import concurrent.futures
import socket
import struct
from dataclasses import replace

from proxy.config import Auth
from proxy.protocol import messages as m
from proxy.protocol.auth import md5_response, redshift_md5

from .test_bad_input import error_fields, read_all


def logs_in(proxy) -> bool:
    with proxy.connect() as conn:
        return conn.execute("SELECT 1").fetchone() == (1,)


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
