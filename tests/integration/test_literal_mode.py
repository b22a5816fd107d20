"""What runs is what was judged (DESIGN principle 8): SQL that the proxy prints for PostgreSQL to
run, now or later (masking expressions, RLS predicates, UNLOAD's query, statements rewritten to
read catalog or masking views), reads the same under the session's standard_conforming_strings,
which Redshift's drivers run with off, as when it was judged.

The masking and RLS examples are AWS's own, with their backslashes, sent by redshift_connector.
"""

from __future__ import annotations

import shutil

import psycopg
import pytest
import redshift_connector

from proxy.config import Iam
from proxy.testing import s3_roles

from ..conftest import ADMIN, ADMIN_PASSWORD, USER_PASSWORD, server_directory, unique, wait_for

ROLE_ARN = "arn:aws:iam::123456789012:role/MyRedshiftRole"
ROLE = f"IAM_ROLE '{ROLE_ARN}'"


def connect(proxy, user: str = ADMIN, password: str = ADMIN_PASSWORD):
    conn = redshift_connector.connect(host=proxy.host, port=proxy.port, database="dev", user=user,
                                      password=password, timeout=20, ssl=False)
    conn.autocommit = True
    return conn


def run(conn, statement: str) -> list[tuple]:
    cursor = conn.cursor()
    cursor.execute(statement)
    return [tuple(row) for row in cursor.fetchall()] if cursor.description else []


def masked(read):
    """read() once the proxy knows of a new masking attachment (within a moment), else None."""
    try:
        return read()
    except (redshift_connector.ProgrammingError, psycopg.errors.InsufficientPrivilege):
        return None


@pytest.fixture
def bucket():
    directory = server_directory()
    yield directory
    shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture
def world(make_proxy, bucket, postgres):
    """A proxy with a bucket, a table of cards and codes, and a user who reads it."""
    proxy = make_proxy(s3={"b": str(bucket)}, iam=Iam(roles=s3_roles([ROLE_ARN], ["b"])),
                         cluster__iam_roles=[ROLE_ARN])
    t, user = unique("cards"), unique("u")
    with connect(proxy) as admin:
        assert run(admin, "SHOW standard_conforming_strings") == [("off",)]  # as on Redshift
        run(admin, f"CREATE USER {user} PASSWORD '{USER_PASSWORD}'")
        run(admin, f"CREATE TABLE {t} (id int, credit_card varchar(256), code varchar(10))")
        run(admin, f"INSERT INTO {t} VALUES (1, '1234567890123456', 'abc'), (2, '6543210987654321', 'a1c')")
        run(admin, f"GRANT SELECT ON {t} TO {user}")
    yield proxy, t, user
    with postgres.connect() as direct:
        direct.execute(f"DROP OWNED BY {user} CASCADE")


def test_aws_masking_example_with_backslashes(world):
    proxy, t, user = world
    policy = unique("mask_credit_card_partial")
    with connect(proxy) as admin:
        # docs.aws.amazon.com/redshift/latest/dg/t_ddm-procedures.html: '^\\d{12}' is ^\d{12} on Redshift.
        run(admin, f"CREATE MASKING POLICY {policy} WITH (credit_card VARCHAR(256)) "
                   "USING (REGEXP_REPLACE(credit_card, '^\\\\d{12}', 'XXXXXXXXXXXX'))")
        run(admin, f"ATTACH MASKING POLICY {policy} ON {t}(credit_card) TO {user}")

    def read():  # a new session each time: the driver keeps its prepared statements
        with connect(proxy, user, USER_PASSWORD) as conn:
            return run(conn, f"SELECT id, credit_card FROM {t} ORDER BY id")
    assert wait_for(lambda: masked(read)) == [(1, "XXXXXXXXXXXX3456"), (2, "XXXXXXXXXXXX4321")]
    with connect(proxy) as admin:
        run(admin, f"DETACH MASKING POLICY {policy} ON {t}(credit_card) FROM {user}")
        run(admin, f"DROP MASKING POLICY {policy}")


def test_rls_predicate_with_backslashes(world):
    proxy, t, user = world
    policy = unique("p")
    with connect(proxy) as admin:
        run(admin, f"CREATE RLS POLICY {policy} WITH (code VARCHAR(10)) USING (code !~ '\\\\d')")  # no digit
        run(admin, f"ATTACH RLS POLICY {policy} ON {t} TO {user}")
        run(admin, f"ALTER TABLE {t} ROW LEVEL SECURITY ON")
    with connect(proxy, user, USER_PASSWORD) as conn:
        assert run(conn, f"SELECT id, code FROM {t} ORDER BY id") == [(1, "abc")]
    with connect(proxy) as admin:
        run(admin, f"ALTER TABLE {t} ROW LEVEL SECURITY OFF")
        run(admin, f"DETACH RLS POLICY {policy} ON {t} FROM {user}")
        run(admin, f"DROP RLS POLICY {policy}")


def test_unload_query_is_judged_as_it_runs(world, bucket, postgres):
    """With standard_conforming_strings off, 'x\\' holds a quote: the query below is a SELECT and a
    CREATE TABLE, which UNLOAD refuses (one SELECT only); nothing is created."""
    proxy, t, user = world
    evil = unique("evil")
    smuggled = f"UNLOAD ('select ''x\\\\'' as a, ''; CREATE TABLE {evil} (a int); --'' as b') TO 's3://b/o_' {ROLE}"
    with connect(proxy) as admin:
        with pytest.raises(redshift_connector.ProgrammingError, match="exactly one SELECT"):
            run(admin, smuggled)
    with psycopg.connect(proxy.conninfo(), autocommit=True) as admin:
        admin.execute("SET standard_conforming_strings = off")
        with pytest.raises(psycopg.errors.FeatureNotSupported, match="exactly one SELECT"):
            admin.execute(smuggled)
    with postgres.connect() as direct:
        assert direct.execute("SELECT to_regclass(%s)", (evil,)).fetchone() == (None,)


@pytest.mark.parametrize("escape", ["", " ESCAPE"])
def test_backslashes_survive_unload_and_copy(world, bucket, escape):
    """Without ESCAPE Redshift writes a backslash as it is; shiftguard writes PostgreSQL's text
    format either way (a backslash doubled, docs/local-stand-in-and-redshift-sql.md), and reads
    back what it wrote."""
    proxy, t, user = world
    source, target = unique("src"), unique("dst")
    with connect(proxy) as admin:
        run(admin, f"CREATE TABLE {source} (id int, v varchar(40))")
        run(admin, f"INSERT INTO {source} VALUES (1, 'a\\\\b'), (2, 'c:\\\\dir\\\\file'), (3, 'ends\\\\')")
        assert run(admin, f"SELECT v FROM {source} ORDER BY id") == [("a\\b",), ("c:\\dir\\file",), ("ends\\",)]
        run(admin, f"UNLOAD ('select id, v from {source} where id > 0 order by id') "
                   f"TO 's3://b/bs/{source}_' {ROLE}{escape} ALLOWOVERWRITE PARALLEL OFF")
        (unloaded,) = (bucket / "bs").glob(f"{source}_*")
        assert unloaded.read_text() == "1|a\\\\b\n2|c:\\\\dir\\\\file\n3|ends\\\\\n"
        run(admin, f"CREATE TABLE {target} (id int, v varchar(40))")
        run(admin, f"COPY {target} FROM 's3://b/bs/{source}_' {ROLE}{escape}")
        assert run(admin, f"SELECT id, v FROM {target} ORDER BY id") == run(admin, f"SELECT id, v FROM {source} ORDER BY id")
        run(admin, f"DROP TABLE {source}, {target}")


@pytest.mark.parametrize("standard", ["on", "off"])
def test_rewritten_statements_read_as_judged(world, standard):
    """A statement the proxy rewrites (a catalog view, a masked table) and prints back keeps its
    constants: a backslash before a quote does not end one where the proxy saw none end."""
    proxy, t, user = world
    policy = unique("m")
    backslash = "\\\\" if standard == "off" else "\\"  # one backslash, as the session reads it
    with connect(proxy) as admin:
        run(admin, f"CREATE MASKING POLICY {policy} WITH (code VARCHAR(10)) USING ('***'::TEXT)")
        run(admin, f"ATTACH MASKING POLICY {policy} ON {t}(code) TO {user}")
    for target, conninfo in ((f"pg_user WHERE usename = '{ADMIN}'", proxy.conninfo()),
                             (f"{t} WHERE id = 1", proxy.conninfo(user, USER_PASSWORD))):
        with psycopg.connect(conninfo, autocommit=True) as conn:
            conn.execute(f"SET standard_conforming_strings = {standard}")
            query = f"SELECT '{backslash}' AS a, ', (SELECT 1); DISCARD ALL; --' AS b FROM {target}"
            assert wait_for(lambda: masked(lambda: conn.execute(query).fetchall())) == [
                ("\\", ", (SELECT 1); DISCARD ALL; --")]
    with connect(proxy) as admin:
        run(admin, f"DETACH MASKING POLICY {policy} ON {t}(code) FROM {user}")
        run(admin, f"DROP MASKING POLICY {policy}")
