"""COPY ... FROM 's3://...' and UNLOAD against a local bucket directory, through the proxy with
real drivers: what gets loaded and written, and that privileges and row-level security apply
to the user who runs them."""

from __future__ import annotations

import gzip
import os
from pathlib import Path

import psycopg
import pytest
import redshift_connector

from proxy.config import AccessKey, Iam, IamRole, IamUser

from ..conftest import USER_PASSWORD, unique

ACCOUNT = "123456789012"
ROLE_ARN = f"arn:aws:iam::{ACCOUNT}:role/MyRedshiftRole"
ROLE = f"IAM_ROLE '{ROLE_ARN}'"
LOADER_KEY, LOADER_SECRET = "AKIALOADER0000000001", "loader-secret-access-key-0001"
BUCKET_S3 = {"Version": "2012-10-17", "Statement": [
    {"Effect": "Allow", "Action": ["s3:ListBucket", "s3:GetObject", "s3:PutObject"],
     "Resource": ["arn:aws:s3:::test-bucket", "arn:aws:s3:::test-bucket/*"]}]}
IAM = Iam(users=[IamUser("loader", [AccessKey(LOADER_KEY, LOADER_SECRET)], policies=[BUCKET_S3])],
          roles=[IamRole("MyRedshiftRole", policies=[BUCKET_S3])])


@pytest.fixture
def s3proxy(make_proxy, bucket):
    return make_proxy(s3={"test-bucket": str(bucket)}, strict_redshift=True, iam=IAM,
                      cluster__iam_roles=[ROLE_ARN], cluster__default_iam_role=ROLE_ARN)


@pytest.fixture
def admin(s3proxy):
    with s3proxy.connect() as conn:
        conn.notices = []
        conn.add_notice_handler(lambda diag: conn.notices.append(diag.message_primary))
        yield conn


@pytest.fixture
def user(s3proxy, postgres):
    """A fresh user without privileges on anything: (name, connect())."""
    name = unique("u")
    with s3proxy.connect() as conn:
        conn.execute(f"CREATE USER {name} PASSWORD '{USER_PASSWORD}'")
    yield name, lambda: s3proxy.connect(name, USER_PASSWORD)
    with postgres.connect() as direct:
        direct.execute(f"DROP OWNED BY {name}")
    with s3proxy.connect() as conn:
        conn.execute(f"DROP USER {name}")


def put(bucket: Path, key: str, text: str, compress: bool = False) -> None:
    path = bucket / key
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gzip.compress(text.encode()) if compress else text.encode())


def table(conn, columns: str = "id int, name varchar(30), price decimal(8,2)") -> str:
    name = unique("t")
    conn.execute(f"CREATE TABLE {name} ({columns})")
    return name


def rows(conn, name: str) -> list[tuple]:
    return conn.execute(f"SELECT * FROM {name} ORDER BY 1").fetchall()


# --------------------------------------------------------------------------- COPY


def test_copy_pipe_delimited_with_redshift_defaults(admin, bucket):
    put(bucket, "tickit/venue_pipe.txt", "1|Toyota Park|10.50\n2||\n3|Columbus Crew Stadium|\\N\n")
    t = table(admin)
    cur = admin.execute(f"COPY {t} FROM 's3://test-bucket/tickit/venue_pipe' {ROLE}")
    assert cur.statusmessage == "COPY"
    assert admin.notices[-1] == f"Load into table '{t}' completed, 3 record(s) loaded successfully."
    # An empty field loads as NULL into a numeric column and as '' into a varchar; \N is NULL.
    import decimal
    assert rows(admin, t) == [(1, "Toyota Park", decimal.Decimal("10.50")), (2, "", None),
                              (3, "Columbus Crew Stadium", None)]


def test_copy_csv_header_null_as_and_columns(admin, bucket):
    put(bucket, "csv/venue.csv", 'venueid,venuename\n'
                                 '7,"Stadium, the ""big"" one"\n'
                                 '8,NULL\n')
    t = table(admin, "id int, name varchar(40), seats int DEFAULT 42")
    admin.execute(f"COPY {t} (id, name) FROM 's3://test-bucket/csv/venue.csv' {ROLE} "
                  f"FORMAT AS CSV IGNOREHEADER 1 NULL AS 'NULL' REGION 'us-east-1'")
    assert rows(admin, t) == [(7, 'Stadium, the "big" one', 42), (8, None, 42)]
    t2 = table(admin, "id int, name varchar(40)")
    admin.execute(f"COPY {t2} FROM 's3://test-bucket/csv/venue.csv' ACCESS_KEY_ID '{LOADER_KEY}' "
                  f"SECRET_ACCESS_KEY '{LOADER_SECRET}' CSV DELIMITER ',' IGNOREHEADER AS 1 EMPTYASNULL")
    assert rows(admin, t2) == [(7, 'Stadium, the "big" one'), (8, "NULL")]


def test_copy_gzip_and_a_prefix_of_several_files(admin, bucket):
    put(bucket, "multi/part_00.gz", "1;a\n2;b\n", compress=True)
    put(bucket, "multi/part_01.gz", "3;c\n", compress=True)
    put(bucket, "multi/sub/part_02.gz", "4;d\n", compress=True)
    put(bucket, "multiple.gz", "99;not under the prefix multi/\n", compress=True)
    t = table(admin, "id int, v char(1)")
    admin.execute(f"COPY {t} FROM 's3://test-bucket/multi/' CREDENTIALS 'aws_iam_role={ROLE_ARN}' "
                  f"DELIMITER ';' GZIP")
    assert rows(admin, t) == [(1, "a"), (2, "b"), (3, "c"), (4, "d")]
    assert admin.notices[-1].endswith("4 record(s) loaded successfully.")
    # A prefix is a key prefix, not a directory: 'multi' also names multiple.gz.
    t2 = table(admin, "id int, v varchar(40)")
    admin.execute(f"COPY {t2} FROM 's3://test-bucket/multi' {ROLE} DELIMITER ';' GZIP IGNOREHEADER 1")
    assert rows(admin, t2) == [(2, "b")]  # each file's first line skipped


def test_copy_needs_insert_privilege(s3proxy, admin, bucket, user):
    name, connect = user
    put(bucket, "priv/data.txt", "1|x|1.00\n")
    t = table(admin)
    admin.execute(f"GRANT SELECT ON {t} TO {name}")
    with connect() as conn:
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute(f"COPY {t} FROM 's3://test-bucket/priv/data.txt' {ROLE}")
    admin.execute(f"GRANT INSERT ON {t} TO {name}")
    with connect() as conn:
        conn.execute(f"COPY {t} FROM 's3://test-bucket/priv/data.txt' {ROLE}")
    assert len(rows(admin, t)) == 1


@pytest.mark.parametrize("options", ["", "IGNOREHEADER 2", "GZIP", "GZIP IGNOREHEADER 2"])
def test_a_file_the_server_cannot_read_fails_the_copy(admin, bucket, options):
    key = f"unreadable/{unique('f')}"
    put(bucket, key, "h\nh\n1|x|1.00\n", compress="GZIP" in options)
    (bucket / key).chmod(0)
    t = table(admin)
    if os.geteuid() == 0:  # root reads anything; the server runs as postgres
        with pytest.raises(psycopg.Error, match="Permission denied|program .* failed"):
            admin.execute(f"COPY {t} FROM 's3://test-bucket/{key}' {ROLE} {options}")
    (bucket / key).chmod(0o644)
    admin.execute(f"COPY {t} FROM 's3://test-bucket/{key}' {ROLE} {options} IGNOREHEADER 2"
                  if "IGNOREHEADER" not in options else f"COPY {t} FROM 's3://test-bucket/{key}' {ROLE} {options}")
    assert rows(admin, t)[-1][0] == 1


def test_copy_inside_a_transaction_rolls_back(admin, bucket):
    put(bucket, "tx/data.txt", "1|x|1.00\n")
    t = table(admin)
    with admin.transaction(force_rollback=True):
        admin.execute(f"COPY {t} FROM 's3://test-bucket/tx/data.txt' {ROLE}")
        assert len(rows(admin, t)) == 1
    assert rows(admin, t) == []


# --------------------------------------------------------------------------- UNLOAD


def test_unload_round_trip(admin, bucket):
    source = table(admin, "id int, name varchar(20), price decimal(8,2), sold date")
    admin.execute(f"INSERT INTO {source} VALUES (1, 'O''Hare', 1.50, '2008-01-05'), (2, 'a|b', NULL, NULL), "
                  f"(3, 'back\\\\slash', 3.00, '2008-02-29')")
    prefix = f"unload/{source}_"
    cur = admin.execute(f"UNLOAD ('select * from {source} where id > 0 order by id') "
                        f"TO 's3://test-bucket/{prefix}' {ROLE}")
    assert cur.statusmessage == "UNLOAD"
    assert admin.notices[-1] == "UNLOAD completed, 3 record(s) unloaded successfully."
    written = bucket / f"{prefix}0000_part_00"
    assert written.read_text().splitlines()[0] == "1|O'Hare|1.50|2008-01-05"
    copy = table(admin, "id int, name varchar(20), price decimal(8,2), sold date")
    admin.execute(f"COPY {copy} FROM 's3://test-bucket/{prefix}' {ROLE}")
    assert rows(admin, copy) == rows(admin, source)


def test_unload_csv_gzip_header_parallel_off_and_overwrite(admin, bucket):
    source = table(admin, "id int, name varchar(20)")
    admin.execute(f"INSERT INTO {source} VALUES (1, 'x, y'), (2, NULL), (3, '')")
    prefix = f"csv_unload/{source}/"
    statement = (f"UNLOAD ('SELECT id, name FROM {source} ORDER BY id') TO 's3://test-bucket/{prefix}' {ROLE} "
                 f"FORMAT AS CSV HEADER GZIP PARALLEL OFF")
    admin.execute(statement)
    written = bucket / f"{prefix}000.gz"
    assert gzip.decompress(written.read_bytes()).decode() == 'id,name\n1,"x, y"\n2,\n3,""\n'
    with pytest.raises(psycopg.errors.lookup("58P02"), match="ALLOWOVERWRITE"):
        admin.execute(statement)
    admin.execute(statement + " ALLOWOVERWRITE")
    copy = table(admin, "id int, name varchar(20)")
    admin.execute(f"COPY {copy} FROM 's3://test-bucket/{prefix}' {ROLE} CSV GZIP IGNOREHEADER 1 NULL AS ''")
    assert rows(admin, copy) == [(1, "x, y"), (2, None), (3, "")]


def test_unload_runs_the_query_with_the_users_privileges(admin, bucket, user):
    name, connect = user
    secret = table(admin, "id int, secret varchar(20)")
    admin.execute(f"INSERT INTO {secret} VALUES (1, 'launch codes')")
    with connect() as conn:
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute(f"UNLOAD ('select * from {secret}') TO 's3://test-bucket/stolen/{name}_' {ROLE}")
    assert not (bucket / "stolen" / f"{name}_0000_part_00").exists()
    admin.execute(f"GRANT SELECT (id) ON {secret} TO {name}")
    with connect() as conn:
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute(f"UNLOAD ('select id, secret from {secret}') TO 's3://test-bucket/stolen/{name}_' {ROLE}")
        conn.execute(f"UNLOAD ('select id from {secret}') TO 's3://test-bucket/stolen/{name}_' {ROLE}")
    assert (bucket / "stolen" / f"{name}_0000_part_00").read_text() == "1\n"


def test_unload_sees_only_the_rows_row_level_security_allows(s3proxy, admin, bucket, user):
    name, connect = user
    t = table(admin, "id int, owner varchar(64)")
    policy = unique("pol")
    admin.execute(f"INSERT INTO {t} VALUES (1, '{name}'), (2, 'someone else'), (3, '{name}')")
    admin.execute(f"GRANT SELECT ON {t} TO {name}")
    admin.execute(f"CREATE RLS POLICY {policy} WITH (owner varchar(64)) USING (owner = current_user)")
    admin.execute(f"ATTACH RLS POLICY {policy} ON {t} TO {name}")
    admin.execute(f"ALTER TABLE {t} ROW LEVEL SECURITY ON")
    try:
        conn = redshift_connector.connect(host=s3proxy.host, port=s3proxy.port, database="dev", user=name,
                                          password=USER_PASSWORD, ssl=False, timeout=20)
        try:
            cursor = conn.cursor()
            cursor.execute(f"UNLOAD ('select id from {t} order by id') TO 's3://test-bucket/rls/{t}_' {ROLE} "
                           f"PARALLEL OFF")
            conn.commit()
        finally:
            conn.close()
        assert (bucket / "rls" / f"{t}_000").read_text() == "1\n3\n"
    finally:
        admin.execute(f"DROP TABLE {t}")
        admin.execute(f"DROP RLS POLICY {policy}")


def test_copy_loads_rows_row_level_security_hides(admin, bucket, user):
    """Redshift: COPY is not filtered by RLS; the user then sees only what the policy allows."""
    name, connect = user
    put(bucket, "rlscopy/data.txt", f"1|{name}\n2|someone else\n")
    t = table(admin, "id int, owner varchar(64)")
    policy = unique("pol")
    admin.execute(f"GRANT SELECT, INSERT ON {t} TO {name}")
    admin.execute(f"CREATE RLS POLICY {policy} WITH (owner varchar(64)) USING (owner = current_user)")
    admin.execute(f"ATTACH RLS POLICY {policy} ON {t} TO {name}")
    admin.execute(f"ALTER TABLE {t} ROW LEVEL SECURITY ON")
    try:
        with connect() as conn:
            conn.execute(f"COPY {t} FROM 's3://test-bucket/rlscopy/data.txt' {ROLE}")
            assert conn.execute(f"SELECT id FROM {t}").fetchall() == [(1,)]
        assert rows(admin, t) == [(1, name), (2, "someone else")]
    finally:
        admin.execute(f"DROP TABLE {t}")
        admin.execute(f"DROP RLS POLICY {policy}")


def test_unload_takes_one_select_only(admin, bucket):
    t = table(admin)
    for query in (f"select 1; delete from {t}", f"delete from {t}", f"insert into {t} values (1)"):
        with pytest.raises(psycopg.Error) as info:
            admin.execute(f"UNLOAD ('{query}') TO 's3://test-bucket/one/x_' {ROLE}")
        assert info.value.sqlstate == "0A000"
    # Redshift's backslash-escaped quotes inside the query text.
    admin.execute(f"UNLOAD ('select \\'it\\'\\'s\\' as q') TO 's3://test-bucket/one/q_' {ROLE} PARALLEL OFF")
    assert (bucket / "one" / "q_000").read_text() == "it's\n"


# --------------------------------------------------------------------------- refusals


@pytest.mark.parametrize("statement, sqlstate, message", [
    ("COPY {t} FROM 's3://test-bucket/../etc/passwd' {role}", "0A000", "leaves its bucket's directory"),
    ("COPY {t} FROM 's3://test-bucket/escape/passwd' {role}", "0A000", "leaves its bucket's directory"),
    ("COPY {t} FROM 's3://test-bucket/linkdir/passwd' {role}", "0A000", "leaves its bucket's directory"),
    ("UNLOAD ('select 1') TO 's3://test-bucket/../x_' {role}", "0A000", "leaves its bucket's directory"),
    ("UNLOAD ('select 1') TO 's3://test-bucket/linkdir/x_' {role}", "0A000", "leaves its bucket's directory"),
    ("COPY {t} FROM 's3://no-such-bucket/x' {role}", "58P01", "bucket does not exist"),
    ("COPY {t} FROM 's3://test-bucket/no/such/prefix' {role}", "58P01", "does not exist"),
    ("COPY {t} FROM 's3://test-bucket/x' {role} FORMAT AS PARQUET", "0A000", "not supported by shiftguard"),
    ("COPY {t} FROM 's3://test-bucket/x' {role} JSON 'auto'", "0A000", "not supported by shiftguard"),
    ("COPY {t} FROM 's3://test-bucket/x' {role} MANIFEST", "0A000", "not supported by shiftguard"),
    ("COPY {t} FROM 's3://test-bucket/x' {role} BZIP2", "0A000", "not supported by shiftguard"),
    ("UNLOAD ('select 1') TO 's3://test-bucket/x_' {role} PARQUET", "0A000", "not supported by shiftguard"),
    ("UNLOAD ('select 1') TO 's3://test-bucket/x_' {role} MANIFEST", "0A000", "not supported by shiftguard"),
    ("COPY {t} FROM '/etc/passwd'", "0A000", "COPY to or from a file on the database server"),
])
def test_refusals(admin, bucket, statement, sqlstate, message):
    (bucket / "escape").mkdir(exist_ok=True)
    if not (bucket / "escape" / "passwd").is_symlink():
        (bucket / "escape" / "passwd").symlink_to("/etc/passwd")
    if not (bucket / "linkdir").is_symlink():
        (bucket / "linkdir").symlink_to("/etc")
    t = table(admin)
    with pytest.raises(psycopg.Error, match=message) as info:
        admin.execute(statement.format(t=t, role=ROLE))
    assert info.value.sqlstate == sqlstate


def test_the_file_functions_take_only_tickets_the_proxy_signed(admin, user):
    name, connect = user
    with connect() as conn:
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="not a valid S3 ticket"):
            conn.execute("SELECT * FROM shiftguard.s3_read('{\"op\":\"read\",\"files\":[\"/etc/passwd\"],"
                         "\"format\":\"text\",\"delimiter\":\"|\",\"null\":\"\"}', 'forged', 1)")


def test_the_iam_role_needs_assumerole(admin, bucket, user):
    """COPY and UNLOAD name an IAM role the user must hold ASSUMEROLE on (PUBLIC holds it for
    every role until a superuser revokes that)."""
    name, connect = user
    arn = ROLE_ARN
    put(bucket, "assume/data.txt", "1|x|1.00\n")
    t = table(admin)
    admin.execute(f"GRANT SELECT, INSERT ON {t} TO {name}")
    with connect() as conn:
        conn.execute(f"COPY {t} FROM 's3://test-bucket/assume/data.txt' IAM_ROLE '{arn}'")
    admin.execute("REVOKE ASSUMEROLE ON ALL FROM PUBLIC FOR ALL")
    try:
        with connect() as conn:
            with pytest.raises(psycopg.errors.InsufficientPrivilege,
                               match=f'User {name} does not have ASSUMEROLE permission on IAM role "{arn}" for COPY'):
                conn.execute(f"COPY {t} FROM 's3://test-bucket/assume/data.txt' IAM_ROLE '{arn}'")
            with pytest.raises(psycopg.errors.InsufficientPrivilege, match="for COPY"):
                conn.execute(f"COPY {t} FROM 's3://test-bucket/assume/data.txt' "
                             f"CREDENTIALS 'aws_iam_role={arn}'")
        admin.execute(f"GRANT ASSUMEROLE ON '{arn}' TO {name} FOR COPY")
        with connect() as conn:
            conn.execute(f"COPY {t} FROM 's3://test-bucket/assume/data.txt' IAM_ROLE '{arn}'")
            with pytest.raises(psycopg.errors.InsufficientPrivilege, match="for UNLOAD"):
                conn.execute(f"UNLOAD ('SELECT * FROM {t}') TO 's3://test-bucket/assume/out_' IAM_ROLE '{arn}'")
        assert len(rows(admin, t)) == 2
    finally:
        admin.execute("GRANT ASSUMEROLE ON ALL TO PUBLIC FOR ALL")
