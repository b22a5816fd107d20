"""dbt with the real dbt-redshift adapter against shiftguard, as a team runs it against a
cluster: the jaffle-shop project in tests/dbt_project (seeds, views, a late-binding view, tables
with dist/sort, a materialized view, the three incremental strategies, an ephemeral model,
snapshots, data and unit tests, sources with freshness from data and from metadata, grants to a
user, a group and a role, persist_docs), through a
password profile and an IAM profile (GetClusterCredentials on the proxy's API port).

dbt-redshift pins redshift_connector below 2.2, older than the driver the rest of the suite
tests, so dbt runs from a virtualenv of its own, made once per machine under the user's cache
directory (about 20 s, from PyPI) and reused after.
"""

from __future__ import annotations

import datetime
import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import psycopg
import pytest

from proxy.config import AccessKey, Iam, IamUser

from ..conftest import ADMIN, ADMIN_PASSWORD, USER_PASSWORD, RunningProxy, proxy_config, unique

PROJECT = Path(__file__).resolve().parent.parent / "dbt_project"
DBT_REQUIREMENTS = ("dbt-core~=1.11.0", "dbt-redshift~=1.11.0")
KEY, SECRET = "AKIADBT0000000000001", "dbt-secret-access-key-000000001"
CLUSTER_ARN = "arn:aws:redshift:us-east-1:123456789012"
DBT_POLICY = {"Version": "2012-10-17", "Statement": [
    {"Effect": "Allow", "Action": ["redshift:GetClusterCredentials", "redshift:CreateClusterUser"],
     "Resource": [f"{CLUSTER_ARN}:dbuser:shiftguard/dbt_*", f"{CLUSTER_ARN}:dbname:shiftguard/dev"]},
    {"Effect": "Allow", "Action": "redshift:JoinGroup", "Resource": f"{CLUSTER_ARN}:dbgroup:shiftguard/*"},
]}


@pytest.fixture(scope="session")
def dbt() -> Path:
    """The dbt executable of a virtualenv holding dbt-core and dbt-redshift (made once)."""
    tag = hashlib.sha256(f"{sys.version}{DBT_REQUIREMENTS}".encode()).hexdigest()[:12]
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "shiftguard-tests"
    cache.mkdir(parents=True, exist_ok=True)
    venv = cache / f"dbt-{tag}"
    with open(cache / f"dbt-{tag}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another suite on this machine may be making it
        if not (venv / "ready").exists():
            shutil.rmtree(venv, ignore_errors=True)  # a make that was interrupted
            subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
            made = subprocess.run([str(venv / "bin" / "pip"), "install", "-q", *DBT_REQUIREMENTS],
                                  capture_output=True, text=True, timeout=900)
            assert made.returncode == 0, f"pip could not install {DBT_REQUIREMENTS}:\n{made.stdout}{made.stderr}"
            (venv / "ready").touch()
    return venv / "bin" / "dbt"


class Shop:
    """A proxy with an IAM user for dbt, the readers the project grants to, and a way to run dbt."""

    def __init__(self, proxy: RunningProxy, dbt: Path, workdir: Path):
        self.proxy = proxy
        self.dbt = dbt
        self.workdir = workdir
        suffix = uuid.uuid4().hex[:8]
        self.reader, self.group_member, self.role_member, self.outsider = (
            unique(p) for p in ("reader", "member", "holder", "outsider"))
        self.group, self.role, self.builders = f"readers_{suffix}", f"readrole_{suffix}", f"builders_{suffix}"
        self.iam_user = f"dbt_{suffix}"
        self.schemas: list[str] = []

    def schema(self) -> str:
        """A schema of its own for one test's models (dropped at the end)."""
        self.schemas.append(unique("dbt"))
        return self.schemas[-1]

    def env(self, schema: str) -> dict[str, str]:
        return {**{k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "DBT_"))},
                "SHIFTGUARD_HOST": self.proxy.host, "SHIFTGUARD_PORT": str(self.proxy.port),
                "SHIFTGUARD_USER": ADMIN, "SHIFTGUARD_PASSWORD": ADMIN_PASSWORD, "SHIFTGUARD_SCHEMA": schema,
                "SHIFTGUARD_IAM_USER": self.iam_user, "SHIFTGUARD_IAM_GROUP": self.builders,
                "DBT_READER_USER": self.reader, "DBT_READER_GROUP": self.group, "DBT_READER_ROLE": self.role,
                "SSL_CERT_FILE": str(Path(self.proxy.config.data_dir) / "tls" / "server.crt"),
                "AWS_ACCESS_KEY_ID": KEY, "AWS_SECRET_ACCESS_KEY": SECRET, "AWS_DEFAULT_REGION": "us-east-1",
                "AWS_ENDPOINT_URL_REDSHIFT": f"http://127.0.0.1:{self.proxy.api_port}",
                "AWS_CONFIG_FILE": os.devnull, "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
                "DBT_TARGET_PATH": str(self.workdir / schema / "target"),
                "DBT_LOG_PATH": str(self.workdir / schema / "logs"),
                "DBT_SEND_ANONYMOUS_USAGE_STATS": "false", "DBT_USE_COLORS": "false"}

    def run(self, schema: str, *command: str, target: str = "database") -> tuple[str, dict]:
        """dbt COMMAND against the proxy; asserts it exits 0, returns its output and run_results."""
        done = subprocess.run(
            [str(self.dbt), *command, "--project-dir", str(PROJECT), "--profiles-dir", str(PROJECT),
             "--target", target], env=self.env(schema), capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, f"dbt {' '.join(command)} exited {done.returncode}:\n{done.stdout}{done.stderr}"
        results = self.artifact(schema, "run_results.json")
        return done.stdout, results

    def artifact(self, schema: str, name: str) -> dict:
        path = self.workdir / schema / "target" / name
        return json.loads(path.read_text()) if path.exists() else {}

    def rows(self, sql: str, user: str = ADMIN, password: str = ADMIN_PASSWORD) -> list[tuple]:
        with self.proxy.connect(user, password) as conn:
            return conn.execute(sql).fetchall()


@pytest.fixture(scope="module")
def shop(postgres, dbt, tmp_path_factory):
    iam = Iam(users=[IamUser("dbt-ci", [AccessKey(KEY, SECRET)], policies=[DBT_POLICY])])
    proxy = RunningProxy(proxy_config(tmp_path_factory.mktemp("dbt-proxy"), iam=iam), postgres.target).start()
    shop = Shop(proxy, dbt, tmp_path_factory.mktemp("dbt"))
    with proxy.connect() as admin:
        for user in (shop.reader, shop.group_member, shop.role_member, shop.outsider):
            admin.execute(f"CREATE USER {user} PASSWORD '{USER_PASSWORD}'")
        admin.execute(f"CREATE GROUP {shop.group} WITH USER {shop.group_member}")
        admin.execute(f"CREATE ROLE {shop.role}")
        admin.execute(f"GRANT ROLE {shop.role} TO {shop.role_member}")
        admin.execute(f"CREATE GROUP {shop.builders}")
        admin.execute(f"GRANT CREATE ON DATABASE dev TO GROUP {shop.builders}")
    yield shop
    with proxy.connect() as admin:
        for schema in shop.schemas:
            admin.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        admin.execute(f"REVOKE CREATE ON DATABASE dev FROM GROUP {shop.builders}")
        for user in (shop.reader, shop.group_member, shop.role_member, shop.outsider, shop.iam_user):
            admin.execute(f"DROP USER IF EXISTS {user}")
        admin.execute(f"DROP GROUP {shop.group}")
        admin.execute(f"DROP GROUP {shop.builders}")
        admin.execute(f"DROP ROLE {shop.role}")
    proxy.stop()


def test_a_project_from_debug_to_docs_with_a_password(shop):
    schema = shop.schema()
    out, _ = shop.run(schema, "debug")
    assert "All checks passed!" in out

    _, seeded = shop.run(schema, "seed")
    assert {r["unique_id"] for r in seeded["results"] if r["status"] == "success"} >= {
        "seed.jaffle_shop.raw_customers", "seed.jaffle_shop.raw_orders", "seed.jaffle_shop.raw_payments"}
    assert shop.rows(f"SELECT count(*) FROM {schema}.raw_orders") == [(6,)]

    _, first = shop.run(schema, "run")
    assert all(r["status"] == "success" for r in first["results"])
    merged_at = dict(shop.rows(f"SELECT order_id, loaded_at FROM {schema}.orders_merged"))
    # the materialized view holds what its query returns
    totals = f"SELECT customer_id, number_of_orders, amount_cents FROM {schema}.order_totals ORDER BY 1"
    totals_query = (f"SELECT o.user_id, count(DISTINCT o.id), sum(p.amount) FROM {schema}.raw_orders o "
                    f"JOIN {schema}.raw_payments p ON p.order_id = o.id GROUP BY 1 ORDER BY 1")
    assert shop.rows(totals) == shop.rows(totals_query) and len(shop.rows(totals)) == 5
    mv_info = f"SELECT name, is_stale, autorefresh FROM svv_mv_info WHERE schema_name = '{schema}'"
    assert shop.rows(mv_info) == [("order_totals", "f", "f")]
    shop.run(schema, "snapshot")

    # The shop moves on: order 5 ships, order 7 comes in; the incremental models pick it up.
    utc_now = "SELECT clock_timestamp() AT TIME ZONE 'UTC'"
    moving_on = shop.rows(utc_now)[0][0]
    with shop.proxy.connect() as admin:
        admin.execute(f"UPDATE {schema}.raw_orders SET status = 'shipped', updated_at = '2018-01-10 09:00' WHERE id = 5")
        admin.execute(f"INSERT INTO {schema}.raw_orders VALUES (7, 2, '2018-01-09', 'placed', '2018-01-10 10:00')")
        admin.execute(f"INSERT INTO {schema}.raw_payments VALUES (8, 7, 'credit_card', 1500)")
    moved_on = shop.rows(utc_now)[0][0]
    assert shop.rows(mv_info) == [("order_totals", "t", "f")]  # its base tables changed
    shop.run(schema, "run")
    # the second run refreshed the materialized view: order 7 counts for customer 2
    assert shop.rows(totals) == shop.rows(totals_query)
    assert shop.rows(f"{totals.replace('ORDER BY 1', '')} WHERE customer_id = 2") == [(2, 2, 2800)]
    assert shop.rows(mv_info) == [("order_totals", "f", "f")]
    # a changed auto_refresh is altered in place
    shop.run(schema, "run", "--select", "order_totals", "--vars", "{order_totals_auto_refresh: true}")
    assert shop.rows(mv_info) == [("order_totals", "f", "t")]
    statuses = f"SELECT order_id, status FROM {schema}.%s ORDER BY order_id"
    before = [(1, "returned"), (2, "completed"), (3, "completed"), (4, "completed")]
    # append: only the new order; order 5 keeps the status it was loaded with
    assert shop.rows(statuses % "orders_appended") == [*before, (5, "placed"), (6, "shipped"), (7, "placed")]
    # delete+insert and merge: order 5 replaced, order 7 added, no order twice
    for model in ("orders_delete_insert", "orders_merged"):
        assert shop.rows(statuses % model) == [*before, (5, "shipped"), (6, "shipped"), (7, "placed")], model
    # merge updates only merge_update_columns of the rows it matched: the others keep their load time
    merged_again = dict(shop.rows(f"SELECT order_id, loaded_at FROM {schema}.orders_merged"))
    assert {k: v for k, v in merged_again.items() if k != 7} == merged_at
    # the tables are rebuilt whole, through the ephemeral payments model
    assert shop.rows(f"SELECT order_id, amount FROM {schema}.orders WHERE order_id IN (3, 7) ORDER BY 1") == [
        (3, 13), (7, 15)]
    assert shop.rows(f"SELECT customer_id, number_of_orders FROM {schema}.customers ORDER BY 1") == [
        (1, 2), (2, 2), (3, 1), (4, 1), (5, 1)]
    # the late-binding view (bind=False) over it reads the rebuilt table
    assert shop.rows(f"SELECT customer_id, customer_lifetime_value FROM {schema}.customer_values "
                     "WHERE customer_id = 2") == [(2, 28)]

    # snapshots: order 5's old status closed, its new one current
    shop.run(schema, "snapshot")
    for snapshot in ("orders_status_history", "orders_history"):
        assert shop.rows(f"SELECT status, dbt_valid_to IS NULL FROM {schema}.{snapshot} WHERE id = 5 "
                         "ORDER BY dbt_valid_from") == [("placed", False), ("shipped", True)], snapshot
        assert shop.rows(f"SELECT count(*) FROM {schema}.{snapshot}") == [(8,)]

    _, tested = shop.run(schema, "test")
    tests = [r for r in tested["results"] if r["unique_id"].startswith(("test.", "unit_test."))]
    assert {r["status"] for r in tests} == {"pass"}
    names = {r["unique_id"] for r in tests}
    assert len(names) == 17 and {"test.jaffle_shop.assert_payments_match_orders",
                                 "unit_test.jaffle_shop.customers.a_customer_counts_each_order_once"} <= names

    # dist and sort as the models asked, after dbt's create-then-rename
    assert shop.rows(f"SELECT \"table\", diststyle, sortkey1 FROM svv_table_info WHERE schema = '{schema}' "
                     "AND \"table\" IN ('orders', 'customers', 'order_totals') ORDER BY 1") == [
        ("customers", "ALL", "customer_id"), ("order_totals", "KEY(customer_id)", "customer_id"),
        ("orders", "KEY(order_id)", "order_date")]

    # grants: the user, the group's member and the role's holder read customers; nobody else
    for user in (shop.reader, shop.group_member, shop.role_member):
        assert shop.rows(f"SELECT count(*) FROM {schema}.customers", user, USER_PASSWORD) == [(5,)]
    assert shop.rows(f"SELECT count(*) FROM {schema}.order_totals", shop.reader, USER_PASSWORD) == [(5,)]
    # an incremental model's grants, read back (svv_relation_privileges) and kept by the second run
    for user in (shop.reader, shop.group_member):
        assert shop.rows(f"SELECT count(*) FROM {schema}.orders_merged", user, USER_PASSWORD) == [(7,)]
    assert shop.rows(f"SELECT identity_name, identity_type, privilege_type FROM svv_relation_privileges "
                     f"WHERE namespace_name = '{schema}' AND relation_name = 'orders_merged' "
                     "AND identity_name <> current_user ORDER BY 1") == sorted(
        [(shop.reader, "user", "SELECT"), (shop.group, "group", "SELECT")])
    with shop.proxy.connect() as admin:
        admin.execute(f"GRANT USAGE ON SCHEMA {schema} TO {shop.outsider}")  # so only the table refuses
    with pytest.raises(psycopg.errors.InsufficientPrivilege, match="customers"):
        shop.rows(f"SELECT count(*) FROM {schema}.customers", shop.outsider, USER_PASSWORD)

    # persist_docs: the descriptions are the relation's and its columns' comments
    assert shop.rows(f"SELECT obj_description('{schema}.customers'::regclass, 'pg_class'), "
                     f"col_description('{schema}.customers'::regclass, 1)") == [
        ("One row per customer, with their order history.", "The customer's id in the shop.")]

    shop.run(schema, "docs", "generate")
    catalog = shop.artifact(schema, "catalog.json")
    assert not catalog.get("errors")
    customers = catalog["nodes"]["model.jaffle_shop.customers"]
    assert list(customers["columns"]) == ["customer_id", "first_name", "last_name", "first_order",
                                          "most_recent_order", "number_of_orders", "customer_lifetime_value"]
    assert customers["metadata"]["comment"] == "One row per customer, with their order history."
    assert customers["columns"]["first_order"]["comment"] == "Date of the customer's first order."
    assert customers["stats"]["diststyle"]["value"] == "ALL"
    assert catalog["nodes"]["model.jaffle_shop.stg_orders"]["metadata"]["type"] == "VIEW"
    totals_node = catalog["nodes"]["model.jaffle_shop.order_totals"]
    assert totals_node["metadata"]["type"] == "MATERIALIZED VIEW"
    assert list(totals_node["columns"]) == ["customer_id", "number_of_orders", "amount_cents"]
    assert list(catalog["nodes"]["model.jaffle_shop.customer_values"]["columns"]) == [
        "customer_id", "customer_lifetime_value"]  # a late-binding view's, from pg_get_late_binding_view_cols

    shop.run(schema, "source", "freshness")
    sources = {r["unique_id"].split(".")[-1]: r for r in shop.artifact(schema, "sources.json")["results"]}
    assert {name: r["status"] for name, r in sources.items()} == {
        "raw_orders": "pass", "raw_customers": "warn", "raw_payments": "pass"}
    # raw_payments has no loaded_at_field: its freshness is when it was last written (sys_query_detail)
    loaded = datetime.datetime.fromisoformat(sources["raw_payments"]["max_loaded_at"]).replace(tzinfo=None)
    assert moving_on <= loaded <= moved_on


def test_dbt_build_through_an_iam_profile(shop):
    """dbt's IAM profile gets a temporary password from GetClusterCredentials (auto-creating the
    database user in the profile's group) and builds everything as that user; with datasharing:
    true, dbt creates the schema as "dev"."schema" and finds relations with SHOW commands."""
    schema = shop.schema()
    _, built = shop.run(schema, "build", target="iam")
    kinds = {}
    for result in built["results"]:
        assert result["status"] in ("success", "pass"), result
        kinds[result["unique_id"].split(".")[0]] = kinds.get(result["unique_id"].split(".")[0], 0) + 1
    assert kinds == {"seed": 3, "model": 10, "snapshot": 2, "test": 16, "unit_test": 1, "operation": 1}
    assert shop.rows(f"SELECT DISTINCT tableowner FROM pg_tables WHERE schemaname = '{schema}'") == [(shop.iam_user,)]
    assert shop.rows(f"SELECT count(*) FROM {schema}.customers", shop.reader, USER_PASSWORD) == [(5,)]
    shop.run(schema, "docs", "generate", target="iam")  # its catalog from svv_redshift_columns
    columns = shop.artifact(schema, "catalog.json")["nodes"]["model.jaffle_shop.customers"]["columns"]
    assert columns["customer_id"]["comment"] == "The customer's id in the shop."
