"""Column types as Redshift gives them where PostgreSQL would give others, found in PostgreSQL's
own parse tree of a statement's PostgreSQL form (after dialect.py's other rewrites) and written
at the scanner tokens the tree locates. Pure; values never change, only declared types.

- TEXT, and VARCHAR (CHARACTER VARYING) without a length, is VARCHAR(256) as a column's type, and
  BPCHAR is CHAR(256) (CREATE TABLE, ALTER TABLE ADD COLUMN / ALTER COLUMN TYPE): Redshift's
  "Character types" ("TEXT: converted to VARCHAR(256)"; VARCHAR without a length in CREATE TABLE:
  256). PostgreSQL would make columns of unlimited length, which Redshift has none of.
- A column that CREATE VIEW, CREATE TABLE AS (or MATERIALIZED VIEW) or SELECT INTO makes from a
  literal in the top-level select list has the literal's size: 'abc' is VARCHAR(3), 1.23
  NUMERIC(3,2), and a string literal cast to TEXT or VARCHAR without a length VARCHAR of the
  literal's length (Redshift: "if used in an expression, the size of the output is determined
  using the input expression"). PostgreSQL makes them text and numeric without a precision,
  which dbt (get_columns_in_relation) and drivers read back as types Redshift never reports.
  Deeper select lists (subqueries, CTEs, set operations) keep PostgreSQL's types.
"""

from __future__ import annotations

import json
from typing import NamedTuple

from pglast import parser

from .tokens import GrammarError, Token, quote_ident, scan

# Redshift's limits (Character types, Numeric types): VARCHAR up to 65535 bytes, DECIMAL up to
# 38 digits. A literal beyond them keeps PostgreSQL's type: what Redshift does with one is
# UNVERIFIED.
_MAX_VARCHAR = 65535
_MAX_PRECISION = 38
_INT8 = 1 << 63

# A column type written without a length, and what Redshift makes of it.
_COLUMN_DEFAULTS = {"text": "varchar(256)", "varchar": "varchar(256)", "bpchar": "char(256)"}


def may_retype(words: list[str]) -> bool:
    """Might the statement (its tokens' words) declare a column type: CREATE, ALTER, or a
    SELECT ... INTO? A shortcut only: edits decides."""
    return words[0] in ("CREATE", "ALTER") or ("INTO" in words and words[0] in ("SELECT", "WITH", ""))


class _Change(NamedTuple):
    location: int            # byte offset of the constant, or of the type name to replace
    typed: str               # the type to write
    constant: bool           # the constant itself is cast (else its type name is replaced)
    name: str | None = None  # the column's name to keep, when the select list gives it none
    cast: int | None = None  # byte offset of the cast (CAST or ::) whose type name is replaced


def edits(sql: str) -> list[tuple[int, int, str]]:
    """The (start, end, replacement) character spans of sql to write for Redshift's column types;
    none when PostgreSQL cannot parse sql (it answers with its own error)."""
    try:
        statements = json.loads(parser.parse_sql_json(sql))["stmts"]
    except (parser.ParseError, ValueError):
        return []
    if len(statements) != 1:
        return []
    ((kind, node),) = statements[0]["stmt"].items()
    changes = [_Change(type_name["location"], _COLUMN_DEFAULTS[_unsized(type_name)], False)
               for type_name in _column_types(kind, node) if _unsized(type_name) in _COLUMN_DEFAULTS]
    changes += [change for target in _select_list(kind, node) if (change := _literal(target)) is not None]
    if not changes:
        return []
    try:
        tokens = scan(sql)
    except GrammarError:
        return []
    at = {token.start: index for index, token in enumerate(tokens)}
    encoded = None if sql.isascii() else sql.encode()

    def token_at(location: int) -> int | None:
        return at.get(location if encoded is None else len(encoded[:location].decode()))

    result = []
    for change in changes:
        index = token_at(change.location)
        span = None if index is None else (_constant_span if change.constant else _type_span)(tokens, index)
        if span is None:
            continue  # not where the tree says: left as written
        start, end = span
        alias = "" if change.name is None else f" AS {quote_ident(change.name)}"
        if change.constant:
            result.append((start, end, f"CAST({sql[start:end]} AS {change.typed}){alias}"))
            continue
        result.append((start, end, change.typed))
        cast = None if change.cast is None else token_at(change.cast)
        if alias and cast is not None and tokens[cast].word == "CAST":
            close = next((token for token in tokens[index:] if token.start >= end), None)  # CAST(x AS t)'s ")"
            if close is not None and close.text == ")":
                result.append((close.end, close.end, alias))
        elif alias:
            result.append((end, end, alias))  # x::t
    return result


def _column_types(kind: str, node: dict) -> list[dict]:
    """The TypeNames of the columns a CREATE TABLE or ALTER TABLE declares."""
    if kind == "CreateStmt":
        columns = [item["ColumnDef"] for item in node.get("tableElts", ()) if "ColumnDef" in item]
    elif kind == "AlterTableStmt" and node.get("objtype") == "OBJECT_TABLE":
        commands = [command.get("AlterTableCmd", {}) for command in node.get("cmds", ())]
        columns = [command["def"]["ColumnDef"] for command in commands
                   if command.get("subtype") in ("AT_AddColumn", "AT_AlterColumnType")
                   and "ColumnDef" in command.get("def", {})]
    else:
        return []
    return [column["typeName"] for column in columns if "typeName" in column]


def _unsized(type_name: dict) -> str | None:
    """The name of a built-in type written without a modifier or array bounds, else None."""
    if type_name.get("typmods") or type_name.get("arrayBounds") or type_name.get("setof"):
        return None
    names = [name["String"]["sval"] for name in type_name.get("names", ())]
    if len(names) == 1 or len(names) == 2 and names[0] == "pg_catalog":
        return names[-1]
    return None


def _select_list(kind: str, node: dict) -> list[dict]:
    """The items (ResTarget) of the top-level select list of a statement that makes a relation from a
    query: CREATE VIEW, CREATE TABLE AS (and MATERIALIZED VIEW, made the same way: UNVERIFIED
    whether Redshift types its literals alike), SELECT INTO."""
    if kind in ("ViewStmt", "CreateTableAsStmt"):
        query = node.get("query", {}).get("SelectStmt")
    elif kind == "SelectStmt" and "intoClause" in node:
        query = node
    else:
        return []
    if query is None or query.get("op") != "SETOP_NONE":
        return []  # a set operation: its columns' types come from all its arms
    return [target["ResTarget"] for target in query.get("targetList", ()) if "ResTarget" in target]


def _literal(target: dict) -> _Change | None:
    """The change for one select-list item that is a literal, or a string literal cast to TEXT
    or VARCHAR without a length. An item without a name keeps the one PostgreSQL gives it as
    written (?column?, or the cast's type name)."""
    value = target.get("val", {})
    unnamed = "name" not in target
    if "TypeCast" in value:
        cast = value["TypeCast"]
        text = cast.get("arg", {}).get("A_Const", {}).get("sval", {}).get("sval")
        type_name = _unsized(cast.get("typeName", {}))
        typed = _varchar(text) if text is not None and type_name in ("text", "varchar") else None
        return None if typed is None else _Change(cast["typeName"]["location"], typed, False,
                                                  type_name if unnamed else None, cast.get("location"))
    constant = value.get("A_Const", {})
    typed = _varchar(constant["sval"]["sval"]) if "sval" in constant else \
        _numeric(constant["fval"]["fval"]) if "fval" in constant else None
    return None if typed is None else _Change(constant["location"], typed, True, "?column?" if unnamed else None)


def _varchar(text: str) -> str | None:
    """VARCHAR of the literal's length in bytes, as Redshift measures VARCHAR (UTF-8); at least 1
    (PostgreSQL has no VARCHAR(0); what Redshift types '' as is UNVERIFIED)."""
    size = len(text.encode())
    return f"varchar({max(size, 1)})" if size <= _MAX_VARCHAR else None


def _numeric(literal: str) -> str | None:
    """NUMERIC(precision, scale) of a decimal literal as written (-1.23: 3 digits, 2 after the
    point; leading zeros do not count: 0.5 is NUMERIC(1,1), UNVERIFIED), or of an integer literal
    too large for BIGINT (NUMERIC(p,0), UNVERIFIED); None for one with an exponent (2.0e19: what
    Redshift types it as is UNVERIFIED, PostgreSQL's numeric is kept) and for one BIGINT holds
    (PostgreSQL's bigint is Redshift's)."""
    digits = literal.lstrip("+-")
    if not digits or not all(c.isdigit() or c == "." for c in digits) or digits.count(".") > 1:
        return None
    whole, _, fraction = digits.partition(".")
    if "." not in digits and -_INT8 <= int(literal) < _INT8:
        return None
    precision = max(len(whole.lstrip("0")) + len(fraction), 1)
    return f"numeric({precision},{len(fraction)})" if precision <= _MAX_PRECISION else None


def _constant_span(tokens: list[Token], index: int) -> tuple[int, int] | None:
    """The characters of a constant, its sign included (PostgreSQL folds -1.23 into one
    constant, located at the sign: a cast of the bare number would be negated after it, losing
    the precision)."""
    last = index + 1 if tokens[index].text in ("-", "+") and tokens[index].kind == "NO_KEYWORD" else index
    if last >= len(tokens) or tokens[last].name not in ("SCONST", "FCONST", "ICONST"):
        return None
    return tokens[index].start, tokens[last].end


def _type_span(tokens: list[Token], index: int) -> tuple[int, int] | None:
    """The characters of a type name without modifiers at tokens[index]: CHARACTER VARYING and
    its spellings (up to VARYING), else a name and its qualification (pg_catalog.text)."""
    if tokens[index].word in ("CHARACTER", "CHAR", "NATIONAL", "NCHAR"):
        for last in range(index, min(index + 3, len(tokens))):
            if tokens[last].word == "VARYING":
                return tokens[index].start, tokens[last].end
        return None  # CHARACTER without VARYING is PostgreSQL's char(1), as Redshift's
    last = index
    while last + 2 < len(tokens) and tokens[last + 1].text == "." and tokens[last + 1].kind == "NO_KEYWORD":
        last += 2
    return tokens[index].start, tokens[last].end
