"""smoke"""
from __future__ import annotations
import redshift_connector
from ..conftest import ADMIN, ADMIN_PASSWORD, unique


def test_smoke(proxy):
    for version in (0, 1, 2):
        with redshift_connector.connect(host=proxy.host, port=proxy.port, database="dev", user=ADMIN,
                                        password=ADMIN_PASSWORD, timeout=20, ssl=False,
                                        client_protocol_version=version) as conn:
            print(version, conn._client_protocol_version, [p for p in conn.parameter_statuses if p[0] == b"server_protocol_version"])
            conn.autocommit = True
            cur = conn.cursor()
            name = unique("t")
            cur.execute(f"CREATE TABLE {name} (id int identity(1,1), n numeric(18,8) not null, u numeric, d date, t time, a int[], x varchar(10)[])")
            cur.execute(f"INSERT INTO {name} (n, u, d, t, a, x) VALUES (-12345.67891, 1.5, '2020-01-06', '12:30:10', '{{1,2}}', '{{a,b}}')")
            cur.execute(f"SELECT id, n, u, d, t, a, x, 1+1 AS two FROM {name}")
            print(cur.fetchall())
            for f in cur.ps["row_desc"]:
                print({k: f.get(k) for k in ("label", "schema_name", "table_name", "column_name", "catalog_name", "nullable", "autoincrement", "read_only", "searchable", "type_modifier")})
            cur.execute(f"ALTER TABLE {name} RENAME COLUMN x TO y")
            cur.execute(f"SELECT y FROM {name}")
            print([(f.get("column_name")) for f in cur.ps["row_desc"]])
            cur.execute(f"DROP TABLE {name}")
