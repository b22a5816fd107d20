"""Redshift's metadata discovery commands, which PostgreSQL lacks, as SELECTs over the functions
of catalog/show.sql. Pure; reads PostgreSQL's own scanner tokens.

    SHOW DATABASES [LIKE 'p']
    SHOW SCHEMAS FROM DATABASE d [LIKE 'p']
    SHOW TABLES FROM SCHEMA [d.]s [LIKE 'p']
    SHOW COLUMNS FROM TABLE [d.]s.t [LIKE 'p']
    SHOW CONSTRAINTS {PRIMARY KEYS | FOREIGN KEYS [EXPORTED]} FROM TABLE [d.]s.t
    SHOW GRANTS ON {DATABASE d | SCHEMA [d.]s | TABLE [d.]s.t} [FOR {user | ROLE r | PUBLIC}]
    SHOW COLUMN GRANTS ON TABLE [d.]s.t [LIKE 'p']
    SHOW {PROCEDURES | FUNCTIONS} FROM SCHEMA [d.]s [LIKE 'p']
    SHOW PARAMETERS OF {PROCEDURE | FUNCTION} [d.]s.name(type, ...) [LIKE 'p']
    SHOW {TABLES | COLUMNS | GRANTS ON TABLES} FROM DATABASE d [DRIVER_TOKEN 'token']
        [WHERE {SCHEMA_NAME | TABLE_NAME | COLUMN_NAME} LIKE 'p' [AND ...]]

each with an optional LIMIT n. The last are the batch forms of show_discovery 5, which
redshift_connector uses for get_tables, get_columns and get_table_privileges: one statement for
every schema of the database (the token, which Redshift issues at login to let a driver use
them, is accepted and not checked: shiftguard issues none, and the driver then sends none).

The SELECT runs as the user's own role, and the functions list only what it may see. A name or
pattern reaches them as a literal (tokens.sql_literal) or as the client's own bind parameter:
redshift_connector prepares "SHOW TABLES FROM SCHEMA $1.$2 LIKE $3". The result columns are
Redshift's (names, order, types), which the driver reads by name.
"""

from __future__ import annotations

from ..protocol import sqlstate
from .tokens import Cursor, GrammarError, Token, sql_literal, string_value

# SHOW <word> that is Redshift's discovery, not a PostgreSQL setting.
COMMANDS = frozenset({"DATABASES", "SCHEMAS", "TABLES", "COLUMNS", "CONSTRAINTS", "GRANTS", "COLUMN",
                      "PROCEDURES", "FUNCTIONS", "PARAMETERS"})


def rewrite(tokens: list[Token]) -> str | None:
    """The SELECT for a SHOW discovery command, or None when the statement is none (SHOW
    search_path is PostgreSQL's). A malformed one is a GrammarError, as Redshift refuses it."""
    while tokens and _symbol(tokens[-1], ";"):
        tokens = tokens[:-1]
    if len(tokens) < 2 or tokens[0].word != "SHOW" or tokens[1].word not in COMMANDS:
        return None
    if len(tokens) == 2 and tokens[1].word not in ("DATABASES", "GRANTS"):
        return None  # SHOW columns: a setting's name, PostgreSQL's "unrecognized configuration parameter"
    cursor = Cursor(tokens[2:])
    what = tokens[1].word
    if what == "DATABASES":
        call = f"shiftguard.show_databases({_pattern(cursor)})"
    elif what == "SCHEMAS":
        cursor.expect("FROM", "DATABASE")
        call = f"shiftguard.show_schemas({_database(_value(cursor))}, {_pattern(cursor)})"
    elif what == "TABLES" and cursor.accept("FROM", "DATABASE"):
        call = _batch(cursor, "show_tables({}, NULL, NULL)", {"SCHEMA_NAME": "schema_name", "TABLE_NAME": "table_name"})
    elif what == "TABLES":
        cursor.expect("FROM", "SCHEMA")
        call = f"shiftguard.show_tables({_names(cursor, 2)}, {_pattern(cursor)})"
    elif what == "COLUMNS" and cursor.accept("FROM", "DATABASE"):
        call = _batch(cursor, "show_columns({}, NULL, NULL, NULL)", {
            "SCHEMA_NAME": "schema_name", "TABLE_NAME": "table_name", "COLUMN_NAME": "column_name"})
    elif what == "COLUMNS":
        cursor.expect("FROM", "TABLE")
        call = f"shiftguard.show_columns({_names(cursor, 3)}, {_pattern(cursor)})"
    elif what == "CONSTRAINTS":
        call = _constraints(cursor)
    elif what in ("GRANTS", "COLUMN"):
        call = _grants(cursor, what == "COLUMN")
    elif what in ("PROCEDURES", "FUNCTIONS"):
        cursor.expect("FROM", "SCHEMA")
        kind = "p" if what == "PROCEDURES" else "f"
        call = (f"shiftguard.show_routines('{kind}', {_names(cursor, 2)}, {_pattern(cursor)}) AS r "
                f"(database_name, schema_name, {_ROUTINE[kind]}_name, return_type, argument_list)")
    else:
        call = _parameters(cursor)
    limit = _limit(cursor)
    cursor.end()
    return f"SELECT * FROM {call}{limit}"


_ROUTINE = {"p": "procedure", "f": "function"}


def _constraints(cursor: Cursor) -> str:
    if cursor.accept("PRIMARY", "KEYS"):
        cursor.expect("FROM", "TABLE")
        return f"shiftguard.show_primary_keys({_names(cursor, 3)})"
    cursor.expect("FOREIGN", "KEYS")
    exported = cursor.accept("EXPORTED")
    cursor.expect("FROM", "TABLE")
    return f"shiftguard.show_foreign_keys({_names(cursor, 3)}, {'true' if exported else 'false'})"


def _batch(cursor: Cursor, call: str, columns: dict[str, str]) -> str:
    """A batch form after FROM DATABASE: the call for every schema, then the WHERE filters (on
    the result's columns: the function has listed only what the user may see)."""
    call = "shiftguard." + call.format(_database(_value(cursor)))
    if cursor.accept("DRIVER_TOKEN"):
        cursor.string("driver token")
    filters = []
    if cursor.accept("WHERE"):
        while not filters or cursor.accept("AND"):
            token = cursor.next()
            if token.word not in columns:
                raise GrammarError(f'syntax error at or near "{token.text}": expected one of {", ".join(columns)}')
            cursor.expect("LIKE")
            filters.append(f"shiftguard.show_matches({columns[token.word]}, {_like_value(cursor)})")
    return f"{call} WHERE {' AND '.join(filters)}" if filters else call


def _grants(cursor: Cursor, columns: bool) -> str:
    if columns:
        cursor.expect("GRANTS", "ON", "TABLE")
        return f"shiftguard.show_column_grants({_names(cursor, 3)}, {_pattern(cursor)})"
    if cursor.accept("ON", "TABLES", "FROM", "DATABASE"):
        return _batch(cursor, "show_table_grants({}, NULL, NULL)", {"SCHEMA_NAME": "schema_name",
                                                                    "TABLE_NAME": "object_name"})
    if cursor.accept("ON", "TABLE"):
        call = f"shiftguard.show_table_grants({_names(cursor, 3)})"
    elif cursor.accept("ON", "SCHEMA"):
        call = f"shiftguard.show_schema_grants({_names(cursor, 2)})"
    elif cursor.accept("ON", "DATABASE"):
        # pg_database's ACLs are the cluster's: any database's grants can be shown.
        call = f"shiftguard.show_database_grants({_value(cursor)})"
    else:
        raise GrammarError("this form of SHOW GRANTS is not supported by shiftguard",
                           sqlstate.FEATURE_NOT_SUPPORTED,
                           hint="SHOW GRANTS ON {DATABASE | SCHEMA | TABLE[S]} and SHOW COLUMN GRANTS ON TABLE are; "
                                "the grants of a user or role are in svv_relation_privileges and the other "
                                "svv_*_privileges views.")
    return call + _grantee(cursor)


def _grantee(cursor: Cursor) -> str:
    """FOR {username | ROLE role_name | PUBLIC}: the rows of that identity only."""
    if not cursor.accept("FOR"):
        return ""
    if cursor.accept("PUBLIC"):
        return " WHERE identity_type = 'public'"
    kind = "role" if cursor.accept("ROLE") else "user"
    return f" WHERE identity_type = '{kind}' AND identity_name = {_value(cursor)}"


def _parameters(cursor: Cursor) -> str:
    cursor.expect("OF")
    kind = "p" if cursor.accept("PROCEDURE") else "f"
    if kind == "f":
        cursor.expect("FUNCTION")
    names = _names(cursor, 3)
    if not cursor.accept_symbol("("):
        raise GrammarError("syntax error: expected the argument types in parentheses")
    types: list[str] = []
    while not cursor.accept_symbol(")"):
        if types and not cursor.accept_symbol(","):
            raise GrammarError(f'syntax error at or near "{cursor.next().text}"')
        types.append(_type(cursor))
    return (f"shiftguard.show_parameters('{kind}', {names}, ARRAY[{', '.join(types)}]::pg_catalog.text[], "
            f"{_pattern(cursor)}) AS r "
            f"(database_name, schema_name, {_ROUTINE[kind]}_name, parameter_name, ordinal_position, parameter_type, "
            "data_type, character_maximum_length, numeric_precision, numeric_scale, remarks)")


def _type(cursor: Cursor) -> str:
    """One argument type, as written (character varying(10), "char") or a bind parameter."""
    if (bound := _parameter(cursor, "text")) is not None:
        return bound
    tokens, depth = [], 0
    while (token := cursor.peek()) is not None and (depth or not (_symbol(token, ",") or _symbol(token, ")"))):
        depth += _symbol(token, "(") - _symbol(token, ")")
        tokens.append(cursor.next())
    if not tokens:
        raise GrammarError("syntax error: expected an argument type")
    return sql_literal(" ".join(t.text for t in tokens))


def _names(cursor: Cursor, parts: int) -> str:
    """[database.]schema[.object]: the arguments (database, schema[, object]); a database not
    written is the current one."""
    values = [_value(cursor)]
    while cursor.accept_symbol("."):
        values.append(_value(cursor))
    if len(values) == parts - 1:
        values.insert(0, "NULL")
    if len(values) != parts:
        raise GrammarError(f"syntax error: expected a name of {parts} parts (database.schema"
                           f"{'.name' if parts == 3 else ''})")
    return ", ".join([_database(values[0]), *values[1:]])


def _database(value: str) -> str:
    """The database argument: checked first (catalog/show.sql show_database), so that another
    database is refused even where nothing would be listed."""
    return f"shiftguard.show_database({value})"


def _parameter(cursor: Cursor, cast: str) -> str | None:
    """The client's bind parameter ($n) if one comes next, cast to the argument's type."""
    token = cursor.peek()
    if token is None or token.name != "PARAM":
        return None
    cursor.next()
    return f"{token.text}::{cast}"


def _value(cursor: Cursor) -> str:
    return _parameter(cursor, "text") or sql_literal(cursor.name())


def _pattern(cursor: Cursor) -> str:
    return _like_value(cursor) if cursor.accept("LIKE") else "NULL"


def _like_value(cursor: Cursor) -> str:
    if (bound := _parameter(cursor, "text")) is not None:
        return bound
    token = cursor.next()
    if token.name != "SCONST":
        raise GrammarError(f'syntax error at or near "{token.text}": expected a pattern in quotes')
    return sql_literal(string_value(token))


def _limit(cursor: Cursor) -> str:
    """LIMIT row_limit: Redshift takes 0 to 10000."""
    if not cursor.accept("LIMIT"):
        return ""
    if (bound := _parameter(cursor, "integer")) is not None:
        return f" LIMIT {bound}"
    token = cursor.next()
    if token.name != "ICONST" or not 0 <= int(token.text) <= 10_000:
        raise GrammarError(f'LIMIT must be a number from 0 to 10000, not "{token.text}"',
                           sqlstate.INVALID_PARAMETER_VALUE)
    return f" LIMIT {token.text}"


def _symbol(token: Token, text: str) -> bool:
    return token.kind == "NO_KEYWORD" and token.text == text
