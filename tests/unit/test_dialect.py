"""Redshift SQL rewritten to PostgreSQL's (policy/dialect.py): what the rewrite makes of a
statement, and that the proxy's shortcut sends every such statement to it."""

from __future__ import annotations

import pytest

from proxy.policy import dialect
from proxy.policy.statements import Translator, classify

DIALECT = Translator(lambda role: "V", dialect=True)


def rewritten(sql: str) -> str | None:
    result = dialect.rewrite(sql)
    return result.sql if result else None


@pytest.mark.parametrize("sql, expected", [
    ("SELECT 1 WHERE 1", "SELECT 1 WHERE true"),
    ("SELECT 1 WHERE 0", "SELECT 1 WHERE false"),
    ("SELECT a FROM t WHERE 1 AND a > 2", "SELECT a FROM t WHERE true AND a > 2"),
    ("SELECT a FROM t WHERE 0 OR a > 2 ORDER BY a", "SELECT a FROM t WHERE false OR a > 2 ORDER BY a"),
    ("SELECT a FROM t WHERE 1 GROUP BY a HAVING 1", "SELECT a FROM t WHERE true GROUP BY a HAVING true"),
    ("SELECT * FROM (SELECT a FROM t WHERE 1) s", "SELECT * FROM (SELECT a FROM t WHERE true) s"),
    ("SELECT * FROM t JOIN u ON 1 WHERE 0", "SELECT * FROM t JOIN u ON true WHERE false"),
    ("SELECT * FROM t JOIN u ON 1 LEFT JOIN v ON 0", "SELECT * FROM t JOIN u ON true LEFT JOIN v ON false"),
    ("UPDATE t SET a = 2 WHERE 1 RETURNING a", "UPDATE t SET a = 2 WHERE true RETURNING a"),
    ("DELETE FROM t WHERE 0", "DELETE FROM t WHERE false"),
    ("SELECT 1 WHERE 1 UNION SELECT 2 WHERE 0 LIMIT 1", "SELECT 1 WHERE true UNION SELECT 2 WHERE false LIMIT 1"),
    ("SELECT a FROM t WHERE 1 FOR UPDATE", "SELECT a FROM t WHERE true FOR UPDATE"),
    # The integer is an operand of a larger expression: PostgreSQL reads it as Redshift does.
    ("SELECT a FROM t WHERE 1 = 1 AND a > 2", None),
    ("SELECT a FROM t WHERE 0 = 1", None),
    ("SELECT a FROM t WHERE 1 + 1 = 2", None),
    ("SELECT a FROM t WHERE 1 <> a", None),
    ("SELECT a FROM t WHERE 1 IS NOT NULL", None),
    ("SELECT a FROM t WHERE 1 BETWEEN 0 AND 2", None),
    ("SELECT a FROM t WHERE 1 NOT BETWEEN 0 AND 2", None),
    ("SELECT a FROM t WHERE 1 IN (1)", None),
    ("SELECT a FROM t WHERE 1 LIKE '1'", None),
    ("SELECT a FROM t WHERE 1::boolean", None),
    ("SELECT a FROM t WHERE 1 ISNULL", None),
    ("SELECT a FROM t GROUP BY a HAVING 1 = 1", None),
    ("SELECT * FROM t JOIN u ON 1 = 1", None),
    ("SELECT a FROM t WHERE a BETWEEN 0 AND 1", None),  # after AND, not after WHERE
    ("SELECT a FROM t WHERE 10", None),
    ("SELECT a FROM t WHERE 1.0", None),
    ("SELECT a FROM t WHERE '1'", None),
    ("SELECT a FROM t ORDER BY 1", None),
    ("SELECT a FROM t LIMIT 1", None),
])
def test_a_bare_integer_is_a_condition_only_when_it_is_the_whole_condition(sql, expected):
    assert rewritten(sql) == expected


@pytest.mark.parametrize("sql", ["select 1 where 1", "SELECT a FROM t WHERE\n\t0", "select 1 having 1",
                                 "select * from t join u on 1"])
def test_bare_conditions_reach_the_rewrite(sql):
    """The proxy's shortcut (statements.may_need_plan) lets no bare condition pass unread."""
    (action,) = classify(sql.encode(), DIALECT).actions
    assert action.sql is not None and ("true" in action.sql or "false" in action.sql)
