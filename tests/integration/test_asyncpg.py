"""asyncpg through the proxy: server version, TLS, prepared statements, transactions, binary and
text COPY, errors with their SQLSTATEs, wrong passwords and a fresh user's privileges.

The proxy runs on its own event loop in a thread, so the tests await asyncpg on theirs."""

from __future__ import annotations

import asyncio
import io
import ssl
import time
import uuid
from pathlib import Path

import asyncpg
import pytest

from ..conftest import ADMIN, ADMIN_PASSWORD, unique


async def connect(proxy, user: str = ADMIN, password: str = ADMIN_PASSWORD,
                  sslmode="disable") -> asyncpg.Connection:
    return await asyncpg.connect(host=proxy.host, port=proxy.port, user=user, password=password,
                                 database="dev", ssl=sslmode, timeout=10)


@pytest.fixture(params=["disable", "require"])
def sslmode(request) -> str:
    return request.param


@pytest.fixture
async def conn(proxy, sslmode):
    connection = await connect(proxy, sslmode=sslmode)
    yield connection
    await connection.close()


@pytest.fixture
async def table(conn):
    name = unique()
    await conn.execute(f"CREATE TABLE {name} (id int PRIMARY KEY, name text, score numeric(6,2))")
    yield name
    await conn.execute(f"DROP TABLE IF EXISTS {name}")


async def test_server_version_is_redshifts(conn):
    version = conn.get_server_version()
    assert (version.major, version.minor, version.micro) == (8, 0, 2)
    assert version.releaselevel == "final"
    assert conn.get_settings().server_version == "8.0.2"
    assert await conn.fetchval("SELECT current_user") == ADMIN


async def test_tls_require_and_verify_full(make_proxy):
    proxy = make_proxy(tls__require_ssl=True)
    # the proxy refuses the plain connection, so a working connection here went over TLS
    with pytest.raises(asyncpg.PostgresError) as refused:
        await connect(proxy, sslmode="disable")
    assert "requires SSL" in str(refused.value)
    conn = await connect(proxy, sslmode="require")
    try:
        assert await conn.fetchval("SELECT 'tls'") == "tls"
    finally:
        await conn.close()

    cert = Path(proxy.config.data_dir) / "tls" / "server.crt"
    verified = ssl.create_default_context(cafile=str(cert))  # hostname 127.0.0.1 is in the SAN
    conn = await connect(proxy, sslmode=verified)
    try:
        assert await conn.fetchval("SELECT current_user") == ADMIN
    finally:
        await conn.close()
    with pytest.raises(ssl.SSLCertVerificationError):
        await connect(proxy, sslmode=ssl.create_default_context())  # system CAs only


async def test_prepared_statements_and_parameters(conn, table):
    insert = await conn.prepare(f"INSERT INTO {table} (id, name, score) VALUES ($1, $2, $3)")
    # the TEXT column is Redshift's VARCHAR(256)
    assert [p.name for p in insert.get_parameters()] == ["int4", "varchar", "numeric"]
    for row in [(1, "one", 1.5), (2, "two", None), (3, "it's", 99.25)]:
        await insert.fetch(*row)
    await conn.executemany(f"INSERT INTO {table} VALUES ($1, $2, $3)",
                           [(4, "four", 4), (5, None, 5)])

    select = await conn.prepare(f"SELECT id, name, score FROM {table} WHERE id >= $1 ORDER BY id")
    assert [a.name for a in select.get_attributes()] == ["id", "name", "score"]
    rows = await select.fetch(3)
    assert [tuple(r) for r in rows] == [(3, "it's", 99.25), (4, "four", 4), (5, None, 5)]
    assert str(rows[0]["score"]) == "99.25"
    # the same prepared statement, reused with other arguments
    assert await select.fetchval(5) == 5
    assert await select.fetchrow(6) is None
    assert await conn.fetchval("SELECT $1::int[] || $2::int", [1, 2], 3) == [1, 2, 3]
    assert await conn.fetchval("SELECT $1::jsonb ->> 'k'", '{"k": "v"}') == "v"


async def test_transactions_commit_rollback_and_savepoint(conn, table):
    async with conn.transaction():
        await conn.execute(f"INSERT INTO {table} (id, name) VALUES ($1, $2)", 1, "committed")
        await conn.execute(f"INSERT INTO {table} (id, name) VALUES ($1, $2)", 2, "committed")

    class Abort(Exception):
        pass

    with pytest.raises(Abort):
        async with conn.transaction():
            await conn.execute(f"INSERT INTO {table} (id, name) VALUES (3, 'rolled back')")
            assert await conn.fetchval(f"SELECT count(*) FROM {table}") == 3
            raise Abort

    async with conn.transaction():
        await conn.execute(f"INSERT INTO {table} (id, name) VALUES (4, 'outer')")
        with pytest.raises(asyncpg.UniqueViolationError):
            async with conn.transaction():  # a savepoint
                await conn.execute(f"INSERT INTO {table} (id, name) VALUES (5, 'inner')")
                await conn.execute(f"INSERT INTO {table} (id, name) VALUES (1, 'duplicate')")

    tr = conn.transaction()
    await tr.start()
    await conn.execute(f"DELETE FROM {table}")
    await tr.rollback()
    assert not conn.is_in_transaction()

    rows = await conn.fetch(f"SELECT id, name FROM {table} ORDER BY id")
    assert [tuple(r) for r in rows] == [(1, "committed"), (2, "committed"), (4, "outer")]


async def test_copy_records_in_and_query_out(conn, table, tmp_path):
    status = await conn.copy_records_to_table(
        table, records=[(1, "alpha", 1.25), (2, "with, comma", None), (3, None, 3)],
        columns=["id", "name", "score"])
    assert status == "COPY 3"
    (tmp_path / "more.csv").write_text("4,from file,4.5\n")
    assert await conn.copy_to_table(table, source=tmp_path / "more.csv", format="csv") == "COPY 1"

    out = io.BytesIO()
    status = await conn.copy_from_query(
        f"SELECT id, name, score FROM {table} WHERE id > $1 ORDER BY id", 1,
        output=out, format="csv")
    assert status == "COPY 3"
    assert out.getvalue() == b'2,"with, comma",\n3,,3.00\n4,from file,4.50\n'

    await conn.copy_from_table(table, output=tmp_path / "all.txt", columns=["id", "name"])
    assert sorted((tmp_path / "all.txt").read_text().splitlines()) == [
        "1\talpha", "2\twith, comma", "3\t\\N", "4\tfrom file"]


async def test_copy_in_error_keeps_nothing_and_connection_works(conn, table):
    with pytest.raises(asyncpg.UniqueViolationError) as failed:
        await conn.copy_records_to_table(table, records=[(1, "a", 1), (1, "again", 2)])
    assert failed.value.sqlstate == "23505"
    assert await conn.fetchval(f"SELECT count(*) FROM {table}") == 0
    assert await conn.copy_records_to_table(table, records=[(1, "a", 1)]) == "COPY 1"


async def test_errors_have_sqlstate_and_connection_survives(conn, table):
    with pytest.raises(asyncpg.DivisionByZeroError) as error:
        await conn.fetchval("SELECT 1 / $1::int", 0)
    assert error.value.sqlstate == "22012"
    assert await conn.fetchval("SELECT 1 / $1::int", 1) == 1

    with pytest.raises(asyncpg.UndefinedTableError) as error:
        await conn.prepare(f"SELECT * FROM missing_{table}")
    assert error.value.sqlstate == "42P01"

    with pytest.raises(asyncpg.PostgresSyntaxError) as error:
        await conn.execute("SELEC 1")
    assert error.value.sqlstate == "42601"

    with pytest.raises(asyncpg.InvalidTextRepresentationError) as error:
        async with conn.transaction():
            await conn.execute(f"INSERT INTO {table} (id) VALUES (1)")
            await conn.execute("SELECT 'x'::int")
    assert error.value.sqlstate == "22P02"
    assert not conn.is_in_transaction()
    assert await conn.fetchval(f"SELECT count(*) FROM {table}") == 0
    assert await conn.fetchval("SELECT current_user") == ADMIN


@pytest.mark.parametrize("user", ["x", ADMIN])
async def test_wrong_password_is_refused(proxy, user):
    with pytest.raises(asyncpg.InvalidPasswordError) as refused:
        await connect(proxy, user=user, password="wrong-password")
    assert refused.value.sqlstate == "28P01"
    assert f'password authentication failed for user "{user}"' in str(refused.value)


async def test_new_user_is_itself_and_refused_ungranted_table(proxy, new_user, sslmode):
    table = unique()
    admin = await connect(proxy)
    try:
        await admin.execute(f"CREATE TABLE {table} (a int); INSERT INTO {table} VALUES (7)")
        name, password = new_user()
        conn = await connect(proxy, name, password, sslmode=sslmode)
        try:
            assert tuple(await conn.fetchrow("SELECT current_user, session_user")) == (name, name)
            with pytest.raises(asyncpg.InsufficientPrivilegeError) as refused:
                await conn.fetch(f"SELECT * FROM {table}")
            assert refused.value.sqlstate == "42501"
            assert await conn.fetchval("SELECT 1") == 1
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                await conn.copy_from_table(table, output=io.BytesIO())
            await admin.execute(f"GRANT SELECT ON {table} TO {name}")
            assert await conn.fetchval(f"SELECT a FROM {table}") == 7
        finally:
            await conn.close()
    finally:
        await admin.execute(f"DROP TABLE IF EXISTS {table}")
        await admin.close()


async def test_cursor_fetches_in_batches(conn):
    # a server-side portal read a few rows at a time (Execute with a row limit, PortalSuspended)
    async with conn.transaction():
        seen = [r[0] async for r in conn.cursor("SELECT n FROM generate_series(1, $1) n", 25,
                                                prefetch=4)]
        cursor = await conn.cursor("SELECT n FROM generate_series(1, 10) n")
        assert [r[0] for r in await cursor.fetch(3)] == [1, 2, 3]
        await cursor.forward(5)
        assert (await cursor.fetchrow())[0] == 9
    assert seen == list(range(1, 26))


async def test_executemany_is_atomic(conn, table):
    with pytest.raises(asyncpg.UniqueViolationError):
        await conn.executemany(f"INSERT INTO {table} (id, name) VALUES ($1, $2)",
                               [(1, "a"), (2, "b"), (1, "duplicate"), (3, "c")])
    assert await conn.fetchval(f"SELECT count(*) FROM {table}") == 0
    await conn.executemany(f"INSERT INTO {table} (id, name) VALUES ($1, $2)", [(1, "a"), (2, "b")])
    assert await conn.fetchval(f"SELECT count(*) FROM {table}") == 2


async def test_timeout_cancels_the_query_and_connection_survives(conn):
    # asyncpg cancels a timed-out query with a CancelRequest on a new connection (over TLS
    # too when the session uses TLS); the proxy must pass it on to the right backend.
    started = time.monotonic()
    with pytest.raises(asyncio.TimeoutError):
        await conn.fetchval("SELECT pg_sleep(30)", timeout=0.5)
    assert await conn.fetchval("SELECT 'alive'") == "alive"
    assert time.monotonic() - started < 10, "the query was not cancelled"
    with pytest.raises(asyncpg.QueryCanceledError) as cancelled:
        await conn.execute("SET statement_timeout = 200; SELECT pg_sleep(5)")
    assert cancelled.value.sqlstate == "57014"
    await conn.execute("RESET statement_timeout")
    assert await conn.fetchval("SELECT 1") == 1


async def test_create_user_through_asyncpg_then_log_in(proxy, conn, sslmode):
    name = f"u_{uuid.uuid4().hex[:10]}"
    try:
        assert await conn.execute(f"CREATE USER {name} PASSWORD 'Secret123'") == "CREATE USER"
        with pytest.raises(asyncpg.InvalidParameterValueError) as weak:
            await conn.execute(f"CREATE USER {name}_weak PASSWORD 'weak'")
        assert "password must be 8 to 64 characters long" in str(weak.value)
        user = await connect(proxy, name, "Secret123", sslmode=sslmode)
        try:
            assert await user.fetchval("SELECT current_user") == name
        finally:
            await user.close()
        assert await conn.execute(f"DROP USER {name}") == "DROP USER"
        with pytest.raises(asyncpg.InvalidPasswordError):
            await connect(proxy, name, "Secret123")
    finally:
        await conn.execute(f"DROP USER IF EXISTS {name}")
