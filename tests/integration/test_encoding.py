"""Non-UTF-8 client encodings. In SJIS, BIG5, GBK and GB18030 a lead byte swallows the byte after
it, and trail bytes include the backslash: the UTF-8 bytes of 'Ã' then \\' (C3 83 5C 27) are, in
SJIS, a character, the character 835C and a quote that ends the string. So text the proxy reads
as one string constant would run as SQL in a session whose client_encoding a function body
changed (set_config), with the next message already on its way. The proxy sends PostgreSQL
ASCII only, refuses what it cannot read, accepts client_encoding UTF8 only, and ends a session
whose encoding changes anyway; UTF-8 users keep every non-ASCII name and value.

Every attack is shown to work against PostgreSQL directly first, so that a test here can fail."""

from __future__ import annotations

import asyncio
import socket
import uuid

import asyncpg
import psycopg
import pytest

from proxy.protocol import messages as m
from proxy.protocol.auth import md5_response, redshift_md5

from ..conftest import ADMIN, ADMIN_PASSWORD, unique, wait_for
from .test_psql import ok, psql

PASSWORD = "Secret123"
# Python's codec for each PostgreSQL encoding, to find a character whose last UTF-8 byte is a
# lead byte there (PostgreSQL itself then confirms the attack, see test_every_encoding_attempt_fails).
CODECS = {"SJIS": "shift_jis", "BIG5": "big5", "GBK": "gbk", "GB18030": "gb18030"}


def swallowing_character(codec: str) -> str:
    """A character whose UTF-8 bytes, followed by a backslash and a quote, read in codec as
    characters and the quote: the backslash is part of a character."""
    for code in range(0xA0, 0x3000):
        encoded = chr(code).encode() + b"\\'"
        try:
            read = encoded.decode(codec)
        except UnicodeDecodeError:
            continue
        if "\\" not in read and read.endswith("'"):
            return chr(code)
    raise AssertionError(f"no character for {codec}")


# ---------------------------------------------------------------- a raw protocol client


class RawClient:
    """A socket speaking the protocol byte by byte: exact bytes in, every message out."""

    def __init__(self, proxy, user: str, password: str = PASSWORD, **params: str):
        self.sock = socket.create_connection((proxy.host, proxy.port), timeout=10)
        self.sock.sendall(m.startup_message({"user": user, "database": "dev", **params}))
        self.buffer = b""
        kind, body = self.message()
        if kind == m.B_AUTHENTICATION and body[:4] == b"\0\0\0\x05":
            self.sock.sendall(m.password_message(md5_response(redshift_md5(password, user), body[4:8]) + b"\0"))
            self.greeting = self.until_ready()
        else:
            self.greeting = [(kind, body)]

    def message(self) -> tuple[int, bytes] | None:
        while True:
            if len(self.buffer) >= 5:
                length = int.from_bytes(self.buffer[1:5], "big")
                if len(self.buffer) >= 1 + length:
                    kind, body = self.buffer[0], self.buffer[5:1 + length]
                    self.buffer = self.buffer[1 + length:]
                    return kind, body
            try:
                data = self.sock.recv(65536)
            except (ConnectionResetError, socket.timeout):
                data = b""
            if not data:
                return None
            self.buffer += data

    def until_ready(self, count: int = 1) -> list[tuple[int, bytes]]:
        """Messages until count ReadyForQuery, or until the proxy closes the connection."""
        messages = []
        while count:
            message = self.message()
            if message is None:
                break
            messages.append(message)
            count -= message[0] == m.B_READY_FOR_QUERY
        return messages

    def close(self) -> None:
        self.sock.close()


def errors(messages) -> list[dict[str, str]]:
    return [m.decode_fields(body) for kind, body in messages if kind == m.B_ERROR_RESPONSE]


def tags(messages) -> list[bytes]:
    return [body[:-1] for kind, body in messages if kind == m.B_COMMAND_COMPLETE]


# ---------------------------------------------------------------- fixtures


@pytest.fixture
def mallory(proxy, postgres):
    """A non-superuser in a group (so PostgreSQL would let it SET ROLE to the group's role), and
    a table anyone may insert into: an injected statement that ran leaves a row there."""
    me, group, marker = unique("mallory"), unique("g"), unique("marker")
    with proxy.connect() as admin:
        admin.execute(f"CREATE USER {me} PASSWORD '{PASSWORD}'")
        admin.execute(f"CREATE GROUP {group} WITH USER {me}")
    with postgres.connect() as direct:
        direct.execute(f"CREATE TABLE public.{marker} (v text)")
        direct.execute(f"GRANT SELECT, INSERT ON public.{marker} TO PUBLIC")
    yield me, f"grp:{group}", marker
    with postgres.connect() as direct:
        direct.execute(f"DROP TABLE public.{marker}")
        direct.execute(f"DROP OWNED BY {me}")
    with proxy.connect() as admin:
        admin.execute(f"DROP GROUP {group}")
        admin.execute(f"DROP USER {me}")


def injections(char: str, group: str, marker: str) -> list[tuple[str, bytes]]:
    """Statements that hold, after char and a backslash, a quote that ends the constant in the
    session's encoding: what follows runs there, and leaves a row in marker if it does."""
    prefix = char.encode()
    return [
        ("E-string", b"SELECT E'" + prefix + b"\\' ; INSERT INTO " + marker.encode() + b" VALUES ('ran'); --'"),
        # an ordinary constant: a backslash escapes in a Redshift session (standard_conforming_strings off)
        ("SET ROLE", b"SELECT '" + prefix + b"\\' ; SET ROLE \"" + group.encode() + b"\"; INSERT INTO "
         + marker.encode() + b" SELECT current_user; --'"),
        ("EXPLAIN ANALYZE", b"SELECT E'" + prefix + b"\\' ; EXPLAIN (ANALYZE) INSERT INTO " + marker.encode()
         + b" VALUES ('explain'); --'"),
        ("DISCARD", b"SELECT E'" + prefix + b"\\' ; DISCARD TEMP; INSERT INTO " + marker.encode()
         + b" VALUES ('discard'); --'"),
    ]


SET_SJIS = "DO $$BEGIN PERFORM set_config('client_encoding', '{}', false); END$$"


def run_directly(postgres, encoding: str, sql: bytes, standard_strings: str) -> None:
    """sql in a session of PostgreSQL's own (no proxy) whose client_encoding is encoding."""
    with postgres.connect() as direct:
        pgconn = direct.pgconn
        pgconn.exec_(f"SET standard_conforming_strings = {standard_strings}".encode())
        pgconn.exec_(SET_SJIS.format(encoding).encode())
        pgconn.exec_(sql)


def rows(postgres, marker: str) -> list[str]:
    with postgres.connect() as direct:
        return [v for (v,) in direct.execute(f"SELECT v FROM public.{marker}").fetchall()]


def backend_gone(postgres, user: str) -> bool:
    with postgres.connect() as direct:
        return direct.execute("SELECT count(*) = 0 FROM pg_stat_activity WHERE usename = %s",
                              (user,)).fetchone()[0]


# ---------------------------------------------------------------- the attacks


def test_every_encoding_attempt_fails(proxy, postgres, mallory, capsys):
    me, group, marker = mallory
    tried = succeeded = 0
    failures = []

    def attempt(name: str, messages: bytes, *, then_fatal: bool) -> None:
        """messages in one TCP write, as mallory; nothing may leave a row in marker."""
        nonlocal tried, succeeded
        tried += 1
        client = RawClient(proxy, me)
        client.sock.sendall(messages)
        seen = client.until_ready(2)
        client.close()
        wait_for(lambda: backend_gone(postgres, me))
        left = rows(postgres, marker)
        fatal = [e for e in errors(seen) if e.get("S") == "FATAL"]
        if left or (then_fatal and not any("client_encoding must be UTF8" in e.get("M", "") for e in fatal)):
            succeeded += 1
            failures.append((name, left, errors(seen)))
        with postgres.connect() as direct:
            direct.execute(f"DELETE FROM public.{marker}")

    for encoding, codec in CODECS.items():
        char = swallowing_character(codec)
        for variant, sql in injections(char, group, marker):
            # The attack is real: PostgreSQL itself, in that encoding, runs what follows the quote.
            standard = "off" if variant == "SET ROLE" else "on"
            run_directly(postgres, encoding, sql, standard)
            assert rows(postgres, marker), f"{encoding} {variant}: the attack does not work directly"
            with postgres.connect() as direct:
                direct.execute(f"DELETE FROM public.{marker}")
            # Through the proxy: set_config in a DO block (out of the proxy's sight), the attack
            # pipelined in the same write, before any ParameterStatus can come back.
            attempt(f"{encoding} {variant}", m.query(SET_SJIS.format(encoding)) + m.query(sql), then_fatal=True)
        # What is not UTF-8 at all: refused, never passed (0x83 0x5C is a character in SJIS).
        for lead in (b"\x82", b"\x83"):
            invalid = b"SELECT '" + lead + b"\\' ; INSERT INTO " + marker.encode() + b" VALUES ('invalid'); --'"
            attempt(f"{encoding} invalid UTF-8 {lead!r}", m.query(SET_SJIS.format(encoding)) + m.query(invalid),
                    then_fatal=True)
        # Set where the proxy sees it: refused.
        for statement in (f"SET client_encoding = '{encoding}'", f"SET NAMES '{encoding}'",
                          f"SELECT set_config('client_encoding', '{encoding}', false)"):
            attempt(f"{statement}", m.query(statement) + m.query(
                injections(char, group, marker)[0][1]), then_fatal=False)
    # A statement the proxy rewrites (a Redshift catalog view) holding the value \: pglast prints
    # it '\', which a Redshift session (standard_conforming_strings off) reads on to the next quote.
    tried += 1
    with proxy.connect(me, PASSWORD) as conn:
        cur = conn.cursor()
        cur.execute(f"SELECT usename FROM pg_user WHERE usename = E'\\\\' OR usename = $$ ; INSERT INTO {marker} "
                    f"VALUES (current_user) ; SELECT $$ OR usename = '--'")
        read, more = cur.fetchall(), cur.nextset()  # one statement, reading the view: no row, no more
    if read or more or rows(postgres, marker):
        succeeded += 1
        failures.append(("printed catalog rewrite", rows(postgres, marker), read))
    with capsys.disabled():
        print(f"\nencoding attempts: {tried}, succeeded: {succeeded}")
    assert tried >= 30
    assert failures == []


def test_invalid_utf8_is_refused_and_the_session_keeps_serving(proxy, mallory):
    me, _, marker = mallory
    client = RawClient(proxy, me)
    client.sock.sendall(m.query(b"SELECT '\x82\x5c' ; SET ROLE awsuser; --'") + m.query("SELECT 'still here'"))
    first, second = client.until_ready(1), client.until_ready(1)
    assert [(e["S"], e["C"], e["M"]) for e in errors(first)] == [
        ("ERROR", "22021", 'invalid byte sequence for encoding "UTF8": 0x82')]
    assert errors(second) == [] and tags(second) == [b"SELECT 1"]
    # Parse (extended protocol) too, through psycopg
    with proxy.connect(me, PASSWORD) as conn:
        with pytest.raises(psycopg.errors.CharacterNotInRepertoire, match="0xe9"):
            conn.execute(b"SELECT 'caf\xe9'", prepare=True)
        assert conn.execute("SELECT 1").fetchone() == (1,)
    client.close()


@pytest.mark.parametrize("statement", [
    "SET client_encoding = 'SJIS'", "SET SESSION client_encoding TO 'BIG5'", "SET LOCAL client_encoding = 'GBK'",
    "SET NAMES 'GB18030'", "SET client_encoding = sjis", 'SET "CLIENT_ENCODING" = \'SJIS\'',
    "SELECT set_config('client_encoding', 'SJIS', false)",
    "SELECT pg_catalog.set_config('client_encoding', 'BIG5', true)",
])
def test_setting_another_client_encoding_is_refused(proxy, mallory, statement):
    me = mallory[0]
    with proxy.connect(me, PASSWORD) as conn:
        with pytest.raises(psycopg.errors.FeatureNotSupported, match="client_encoding must be UTF8"):
            conn.execute(statement)
        assert conn.execute("SHOW client_encoding").fetchone() == ("UTF8",)


def test_utf8_and_reset_pass(proxy, mallory):
    me = mallory[0]
    with proxy.connect(me, PASSWORD) as conn:
        for statement in ("SET client_encoding = 'UTF8'", "SET NAMES 'utf-8'", "RESET client_encoding",
                          "SET client_encoding TO DEFAULT", "RESET ALL",
                          "SELECT set_config('client_encoding', 'unicode', false)"):
            conn.execute(statement)
            assert conn.execute("SHOW client_encoding").fetchone() == ("UTF8",)


def test_a_session_whose_encoding_changes_unseen_ends_saying_why(proxy, mallory):
    me = mallory[0]
    with proxy.connect(me, PASSWORD) as conn:
        with pytest.raises(psycopg.Error, match="client_encoding must be UTF8"):
            conn.execute(SET_SJIS.format("SJIS"))
        assert conn.closed or conn.broken
    with proxy.connect(me, PASSWORD) as conn:  # the next session is UTF8 again
        assert conn.execute("SHOW client_encoding").fetchone() == ("UTF8",)


@pytest.mark.parametrize("params", [
    {"client_encoding": "SJIS"}, {"client_encoding": "big5"}, {"options": "-c client_encoding=GBK"},
    {"options": "--client_encoding=GB18030"}, {"client_encoding": "SQL_ASCII"},
])
def test_startup_with_another_client_encoding_is_refused(proxy, mallory, params):
    me = mallory[0]
    with pytest.raises(psycopg.OperationalError, match="client_encoding must be UTF8"):
        proxy.connect(me, PASSWORD, **params)
    client = RawClient(proxy, me, **params)
    ((kind, body),) = client.greeting
    fields = m.decode_fields(body)
    assert (kind, fields["S"], fields["C"]) == (m.B_ERROR_RESPONSE, "FATAL", "0A000")
    assert "UTF-8" in fields["H"]
    client.close()


def test_startup_in_utf8_by_any_name_is_accepted(proxy, mallory, postgres):
    me = mallory[0]
    for name in ("UTF8", "utf-8", "unicode"):
        with proxy.connect(me, PASSWORD, client_encoding=name) as conn:
            assert conn.execute("SHOW client_encoding").fetchone() == ("UTF8",)
    # A role's own default (ALTER ROLE ... SET, out of the proxy's reach) does not apply: the
    # proxy opens every backend session with client_encoding=UTF8.
    with postgres.connect() as direct:
        direct.execute(f"ALTER ROLE {me} SET client_encoding = 'SJIS'")
    try:
        with proxy.connect(me, PASSWORD) as conn:
            assert conn.execute("SHOW client_encoding").fetchone() == ("UTF8",)
    finally:
        with postgres.connect() as direct:
            direct.execute(f"ALTER ROLE {me} RESET client_encoding")


def test_psql_with_another_client_encoding_is_refused(proxy):
    result = psql(proxy, "-c", "SELECT 1", client_encoding="SJIS")
    assert result.returncode != 0 and "client_encoding must be UTF8" in result.stderr


# ---------------------------------------------------------------- UTF-8 users keep their text


TEXTS = ["é", "あいう", "𝄞 clef", "naïve 'quoted' \\ back", "中文 \\' ; SELECT 1; --", "Ã\\"]


@pytest.fixture
def names():
    suffix = uuid.uuid4().hex[:8]
    return f"tablé_{suffix}", f"prénom_あ", f"grüß_{suffix}"


def check_stored(postgres, table: str, column: str, function: str | None = None) -> None:
    """What PostgreSQL holds: the names and values exactly as the client wrote them."""
    with postgres.connect() as direct:
        assert direct.execute("SELECT attname FROM pg_attribute WHERE attrelid = %s::regclass AND attnum > 0 "
                              "ORDER BY attnum", (f'"{table}"',)).fetchall() == [("id",), (column,)]
        assert [v for (v,) in direct.execute(f'SELECT "{column}" FROM "{table}" ORDER BY id')] == TEXTS
        if function is not None:
            assert direct.execute("SELECT prosrc FROM pg_proc WHERE proname = %s",
                                  (function,)).fetchone() == ("BEGIN RETURN 'こんにちは é'; END",)


def test_psycopg_keeps_non_ascii_names_values_and_function_bodies(proxy, postgres, names):
    table, column, function = names
    with proxy.connect() as conn:
        conn.execute(f'CREATE TABLE "{table}" (id int, "{column}" text)')
        try:
            for number, text in enumerate(TEXTS):
                # a literal in the text (simple protocol), and a parameter (prepared statements)
                literal = "E'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"
                conn.execute(f'INSERT INTO "{table}" VALUES ({number}, {literal}) -- ajouté é'.encode(),
                             prepare=False)
                conn.execute(f'UPDATE "{table}" SET "{column}" = %s WHERE id = %s /* é */', (text, number),
                             prepare=True)
            conn.execute(f"CREATE FUNCTION \"{function}\"() RETURNS text LANGUAGE plpgsql AS "
                         f"$$BEGIN RETURN 'こんにちは é'; END$$")
            check_stored(postgres, table, column, function)
            cur = conn.execute(f'SELECT "{column}" AS "résultat", \'é\' AS "é" FROM "{table}" ORDER BY id')
            assert [d.name for d in cur.description] == ["résultat", "é"]
            assert [r[0] for r in cur.fetchall()] == TEXTS
            assert conn.execute(f'SELECT "{function}"()').fetchone() == ("こんにちは é",)
            assert conn.execute("SELECT E'\\\\é', 'a' -- é\n'b'", prepare=True).fetchone() == ("\\é", "ab")
            # statements the proxy rewrites, naming non-ASCII objects (regclass text inside)
            conn.execute(f'GRANT SELECT ON "{table}" TO PUBLIC')
            conn.execute(f"SELECT usename FROM pg_user WHERE usename = 'é'")
        finally:
            conn.execute(f'DROP TABLE IF EXISTS "{table}"')
            conn.execute(f'DROP FUNCTION IF EXISTS "{function}"()')
    with postgres.connect() as direct:
        assert direct.execute("SELECT to_regclass(%s)", (f'"{table}"',)).fetchone() == (None,)


def test_asyncpg_keeps_non_ascii_names_and_values(proxy, postgres, names):
    table, column, _ = names

    async def run():
        conn = await asyncpg.connect(host=proxy.host, port=proxy.port, user=ADMIN, password=ADMIN_PASSWORD,
                                     database="dev", ssl="disable", timeout=10)
        try:
            await conn.execute(f'CREATE TABLE "{table}" (id int, "{column}" text)')
            await conn.executemany(f'INSERT INTO "{table}" VALUES ($1, $2)', list(enumerate(TEXTS)))
            fetched = await conn.fetch(f'SELECT "{column}" AS "é", \'あ\' AS "あ" FROM "{table}" ORDER BY id')
            statement = await conn.prepare(f'SELECT count(*) FROM "{table}" WHERE "{column}" = $1')
            return [dict(r) for r in fetched], await statement.fetchval("é")
        finally:
            await conn.close()

    try:
        fetched, count = asyncio.run(run())
        assert fetched == [{"é": text, "あ": "あ"} for text in TEXTS] and count == 1
        check_stored(postgres, table, column)
    finally:
        with postgres.connect() as direct:
            direct.execute(f'DROP TABLE IF EXISTS "{table}"')


def test_psql_keeps_non_ascii_names_and_values(proxy, postgres, names):
    table, column, function = names
    script = "\n".join([
        f'CREATE TABLE "{table}" (id int, "{column}" text);',
        *(f"INSERT INTO \"{table}\" VALUES ({n}, E'{t.replace(chr(92), chr(92) * 2).replace(chr(39), chr(92) + chr(39))}');"
          for n, t in enumerate(TEXTS)),
        f"CREATE FUNCTION \"{function}\"() RETURNS text LANGUAGE plpgsql AS $$BEGIN RETURN 'こんにちは é'; END$$;",
        f'SELECT "{column}" FROM "{table}" ORDER BY id;',
        f'SELECT "{function}"();',
    ])
    try:
        lines = ok(psql(proxy, "-f", "-", stdin=script, client_encoding="UTF8"))
        assert lines == [*TEXTS, "こんにちは é"]
        check_stored(postgres, table, column, function)
    finally:
        with postgres.connect() as direct:
            direct.execute(f'DROP TABLE IF EXISTS "{table}"')
            direct.execute(f'DROP FUNCTION IF EXISTS "{function}"()')


def test_a_masked_table_with_a_non_ascii_name_is_read_through_its_mask(proxy, postgres, mallory):
    """The proxy sends the name as U&"..."; its masking rewrite still finds the table."""
    me = mallory[0]
    table, policy = f"cartes_é_{uuid.uuid4().hex[:6]}", unique("mask")
    with proxy.connect() as admin:
        admin.execute(f'CREATE TABLE "{table}" (id int, "numéro" text)')
        admin.execute(f"""INSERT INTO "{table}" VALUES (1, '4532993817514842')""")
        admin.execute(f'GRANT SELECT ON "{table}" TO PUBLIC')
        admin.execute(f"CREATE MASKING POLICY {policy} WITH (\"numéro\" VARCHAR(256)) USING ('XXXX'::TEXT)")
        admin.execute(f'ATTACH MASKING POLICY {policy} ON "{table}" ("numéro") TO PUBLIC')
    try:
        def read():
            try:
                with proxy.connect(me, PASSWORD) as conn:
                    return conn.execute(f'SELECT "numéro" FROM "{table}"').fetchall()
            except psycopg.errors.InsufficientPrivilege:
                return None
        assert wait_for(read, timeout=5) == [("XXXX",)]
    finally:
        with proxy.connect() as admin:
            admin.execute(f'DETACH MASKING POLICY {policy} ON "{table}" ("numéro") FROM PUBLIC')
            admin.execute(f"DROP MASKING POLICY {policy}")
            admin.execute(f'DROP TABLE "{table}" CASCADE')


def test_redshift_statements_on_non_ascii_names(proxy, postgres):
    """CREATE USER / GROUP, GRANT ... TO GROUP, ALTER and DROP USER (the proxy's own grammars) on
    names holding non-ASCII characters, which reach them written as U&"..." and E'\\u...'."""
    suffix = uuid.uuid4().hex[:6]
    user, group, table = f"usé_{suffix}", f"grüppe_{suffix}", f"tablé_{suffix}"
    with proxy.connect() as admin:
        admin.execute(f'CREATE USER "{user}" PASSWORD \'{PASSWORD}\'')
        admin.execute(f'CREATE GROUP "{group}" WITH USER "{user}"')
        admin.execute(f"CREATE TABLE \"{table}\" (v text); INSERT INTO \"{table}\" VALUES ('à lire')")
        admin.execute(f'GRANT SELECT ON "{table}" TO GROUP "{group}"')
        admin.execute(f"ALTER USER \"{user}\" SET search_path TO 'schéma'")
    try:
        with proxy.connect(user, PASSWORD) as conn:
            assert conn.execute(f'SELECT v, current_user FROM public."{table}"').fetchone() == ("à lire", user)
            assert conn.execute("SHOW search_path").fetchone() == ('"schéma"',)  # as PostgreSQL quotes it
        with proxy.connect() as admin:
            assert admin.execute("SELECT usename FROM pg_user WHERE usename = %s", (user,)).fetchone() == (user,)
            assert admin.execute("SELECT groname FROM pg_group WHERE groname = %s", (group,)).fetchone() == (group,)
    finally:
        with proxy.connect() as admin:
            admin.execute(f'REVOKE SELECT ON "{table}" FROM GROUP "{group}"')
            admin.execute(f'DROP TABLE "{table}"')
            admin.execute(f'ALTER GROUP "{group}" DROP USER "{user}"')
            admin.execute(f'DROP GROUP "{group}"')
            admin.execute(f'DROP USER "{user}"')
    with postgres.connect() as direct:
        assert direct.execute("SELECT count(*) FROM pg_roles WHERE rolname IN (%s, %s)",
                              (user, f"grp:{group}")).fetchone() == (0,)


def test_redshift_ddl_on_non_ascii_names(proxy):
    """DISTKEY, SORTKEY and ENCODE (the dialect's rewrite) on a table and columns named in
    non-ASCII characters: recorded under their names, altered through them."""
    table = f"tablé_{uuid.uuid4().hex[:6]}"
    with proxy.connect() as conn:
        conn.execute(f'CREATE TABLE "{table}" (id int, "clé" varchar(10) ENCODE lzo) DISTKEY("clé") SORTKEY(id)')
        try:
            conn.execute(f"INSERT INTO \"{table}\" VALUES (1, 'valeur é')")
            assert conn.execute('SELECT diststyle FROM svv_table_info WHERE "table" = %s',
                                (table,)).fetchone() == ("KEY(clé)",)
            assert conn.execute(f'ALTER TABLE "{table}" ALTER DISTSTYLE EVEN').statusmessage == "ALTER TABLE"
            assert conn.execute('SELECT "column", encoding, sortkey FROM pg_table_def WHERE tablename = %s '
                                "ORDER BY 1", (table,)).fetchall() == [("clé", "lzo", 0), ("id", "none", 1)]
            assert conn.execute(f'SELECT "clé" FROM "{table}"').fetchone() == ("valeur é",)
        finally:
            conn.execute(f'DROP TABLE "{table}"')


def test_non_ascii_left_by_a_bug_of_ours_is_refused_not_sent(proxy, mallory):
    """The relay sends only ASCII: a plan that would send non-ASCII (a rewrite that printed it, or
    a pass for non-ASCII SQL) is refused with XX000, and the session keeps serving."""
    from proxy.policy.statements import PASS, Action, Plan

    me = mallory[0]
    real = proxy.proxy.context.classify

    def buggy(sql: bytes, standard_strings: bool = True, user: str | None = None,
              database: str | None = None, **session) -> Plan:
        if sql == b"SELECT 'rewritten'":
            return Plan((Action(0, 0, len(sql), sql="SELECT 'r\u00e9crit'"),))
        if sql == "SELECT 'pass\u00e9'".encode():
            return PASS
        return real(sql, standard_strings, user, database, **session)

    proxy.proxy.context.classify = buggy
    try:
        with proxy.connect(me, PASSWORD) as conn:
            for sql in ("SELECT 'rewritten'", "SELECT 'passé'"):
                for prepare in (False, True):  # Query, and Parse
                    with pytest.raises(psycopg.errors.InternalError_, match="could not write this statement in ASCII"):
                        conn.execute(sql.encode(), prepare=prepare)
            assert conn.execute("SELECT 'still here é'").fetchone() == ("still here é",)
    finally:
        proxy.proxy.context.classify = real
