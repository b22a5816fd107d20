"""Generated SQL for the classifier fuzz test: statements of the corpus (sql_corpus.txt, taken
from the suite's own statements and Redshift's documentation) cut into tokens and mutated, and
shapes that stress a parser's walkers (long operator chains, deep nesting).

Hypothesis strategies, so that a failure shrinks to a short statement. Most mutated statements
are not valid SQL: that is the point (PostgreSQL answers those with a syntax error, and the
proxy must let it, or refuse with a real SQLSTATE, never fail inside itself).
"""

from __future__ import annotations

import re
from pathlib import Path

from hypothesis import strategies as st

CORPUS = [line for line in (Path(__file__).with_name("sql_corpus.txt").read_text().splitlines()) if line.strip()]

# Words the proxy's grammars look at, and some that PostgreSQL reads in odd places.
WORDS = [
    "CREATE", "ALTER", "DROP", "USER", "GROUP", "ROLE", "TABLE", "TEMP", "IF", "NOT", "EXISTS", "GRANT",
    "REVOKE", "ON", "TO", "FROM", "IN", "SCHEMA", "ALL", "TABLES", "WITH", "OPTION", "ADMIN", "PASSWORD",
    "DISABLE", "VALID", "UNTIL", "CONNECTION", "LIMIT", "UNLIMITED", "SESSION", "TIMEOUT", "RENAME",
    "SELECT", "INSERT", "UPDATE", "DELETE", "WHERE", "JOIN", "USING", "AS", "LATERAL", "UNION", "VALUES",
    "DISTKEY", "SORTKEY", "COMPOUND", "INTERLEAVED", "ENCODE", "DISTSTYLE", "BACKUP", "EVEN", "KEY", "AUTO",
    "MASKING", "RLS", "POLICY", "ATTACH", "DETACH", "PRIORITY", "PUBLIC", "ROW", "LEVEL", "SECURITY",
    "CONJUNCTION", "TYPE", "IDENTITY", "PROVIDER", "PARAMETERS", "NAMESPACE", "EXPLAIN", "VACUUM", "FULL",
    "COPY", "UNLOAD", "IAM_ROLE", "CSV", "ESCAPE", "CANCEL", "SET", "RESET", "AUTHORIZATION", "DEFAULT",
    "PRIVILEGES", "FOR", "EXECUTE", "FUNCTION", "PROCEDURE", "LANGUAGE", "OPERATOR", "CASE", "WHEN",
    "THEN", "ELSE", "END", "NULL", "pg_user", "pg_group", "svv_user_grants", "stl_query", "pg_table_def",
    "set_config", "GETDATE", "LISTAGG", "NVL", "DECODE", "cards", "t1", "public", "shiftguard",
]
PUNCTUATION = ["(", ")", ",", ";", ".", "'", '"', "$$", "$a$", "::", "=", "*", "||", "[", "]", "\\",
               "E'", "U&'", 'U&"', "--", "/*", "*/", "\n", "$1", "%", "?"]
ODD = ["é", "\u00a0", "ß", "'a\\b'", "E'\\''", "'\\\\'", "U&\"\\0061\"", "0x1F", "1e309", "-", "+"]

_TOKEN = re.compile(r"\s+|[A-Za-z_][A-Za-z_0-9$]*|\d+(?:\.\d+)?|'(?:[^']|'')*'|\"(?:[^\"]|\"\")*\"|\$\$|::|\|\||.",
                    re.S)


def tokens(text: str) -> list[str]:
    return _TOKEN.findall(text)


@st.composite
def mutated(draw) -> str:
    """A corpus statement with a few token-level mutations."""
    pieces = tokens(draw(st.sampled_from(CORPUS)))
    for _ in range(draw(st.integers(0, 4))):
        if not pieces:
            break
        at = draw(st.integers(0, len(pieces) - 1))
        op = draw(st.sampled_from(["delete", "duplicate", "word", "punctuation", "odd", "swap", "truncate",
                                   "splice"]))
        if op == "delete":
            del pieces[at:at + draw(st.integers(1, 3))]
        elif op == "duplicate":
            pieces[at:at] = pieces[at:at + draw(st.integers(1, 4))]
        elif op == "word":
            pieces.insert(at, f" {draw(st.sampled_from(WORDS))} ")
        elif op == "punctuation":
            pieces.insert(at, draw(st.sampled_from(PUNCTUATION)))
        elif op == "odd":
            pieces.insert(at, draw(st.sampled_from(ODD)))
        elif op == "swap" and at + 1 < len(pieces):
            pieces[at], pieces[at + 1] = pieces[at + 1], pieces[at]
        elif op == "truncate":
            del pieces[at:]
        elif op == "splice":
            other = tokens(draw(st.sampled_from(CORPUS)))
            cut = draw(st.integers(0, len(other)))
            pieces[at:] = other[cut:]
    return "".join(pieces)


@st.composite
def deep(draw) -> str:
    """Long chains and deep nesting around a corpus statement's reads (valid SQL, mostly)."""
    n = draw(st.sampled_from([50, 200, 400, 1000, 3000]))
    shape = draw(st.sampled_from(["concat", "plus", "and", "parens", "subselect", "case", "array", "not"]))
    term = draw(st.sampled_from(["'a'", "a", "c.card", "1", "current_user", "NULL"]))
    if shape == "concat":
        expression = " || ".join([term] * n)
    elif shape == "plus":
        expression = " + ".join(["1"] * n)
    elif shape == "and":
        expression = " AND ".join([f"{term} IS NOT NULL"] * n)
    elif shape == "parens":
        expression = "(" * n + term + ")" * n
    elif shape == "subselect":
        n = min(n, 200)
        expression = "(SELECT " * n + term + ")" * n
    elif shape == "case":
        expression = "CASE WHEN true THEN " * n + term + " END" * n
    elif shape == "array":
        expression = "ARRAY[" * n + term + "]" * n
    else:
        expression = "NOT " * n + "true"
    table = draw(st.sampled_from(["t1", "cards c", "pg_user", "public.cards", "svv_user_grants"]))
    template = draw(st.sampled_from([
        "SELECT {e} FROM {t}",
        "SELECT * FROM {t} WHERE {e} IS NOT NULL",
        "UPDATE cards SET card = {e}",
        "CREATE TABLE t9 DISTKEY(a) AS SELECT {e} AS a FROM {t}",
        "EXPLAIN SELECT {e} FROM {t}",
        "CREATE MASKING POLICY p9 WITH (c text) USING ({e})",
        "CREATE RLS POLICY p9 WITH (a int) USING ({e} IS NOT NULL)",
        "INSERT INTO cards VALUES ({e})",
        "WITH x AS (SELECT {e} FROM {t}) SELECT * FROM x",
    ]))
    return template.format(e=expression, t=table)


def statements():
    return st.one_of(mutated(), mutated(), mutated(), deep(), st.sampled_from(CORPUS))
