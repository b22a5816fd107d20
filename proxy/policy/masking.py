"""Redshift dynamic data masking (reference §6): the statements' grammar, and the rewrite that
makes a user's statements read masked tables through their masking views (catalog/masking.sql).

    CREATE MASKING POLICY [IF NOT EXISTS] p WITH (col type, ...) USING (expr [, ...])
    ALTER MASKING POLICY p USING (expr [, ...])
    DROP MASKING POLICY [IF EXISTS] p
    ATTACH MASKING POLICY p ON t (col, ...) [USING (col, ...)] TO {user | ROLE r | PUBLIC} [PRIORITY n]
    DETACH MASKING POLICY p ON t (col, ...) FROM {user | ROLE r | PUBLIC}

The rewrite is on PostgreSQL's parse tree: every table a statement reads (FROM items of every
SELECT, UPDATE ... FROM, DELETE ... USING) that is masked becomes its view, under the name the
statement used. What the rewrite misses fails closed in PostgreSQL (shiftguard.mask_guard).
Unqualified names are matched against the schema public (where PostgreSQL's default search_path
finds tables); a table found elsewhere through another search_path is read directly, and the
guard refuses it to users it masks.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass, field

from pglast import ast, parser, visitors

from ..protocol import sqlstate
from .rls import _columns, _parenthesized, check_body_size, reader_as_current_user, table_name
from .tokens import Cursor, GrammarError, parse_tree, printed


@dataclass(frozen=True)
class MaskedTables:
    """The masked tables as last read from the backing database: (schema, table) -> view; and
    the tables with Redshift RLS on, read with them (statements.py keeps both out of table
    inheritance and partitioning)."""
    version: int = 0
    views: dict[tuple[str, str], str] = field(default_factory=dict)
    row_security: frozenset[tuple[str, str]] = frozenset()

    @functools.cached_property
    def prefilter(self) -> re.Pattern:
        """The byte-level prefilter of every statement: one pass for any of the tables' names
        (literal words, no pattern syntax; made once)."""
        names = sorted({table.lower().encode() for _, table in self.views})
        return re.compile(b"|".join(re.escape(name) for name in names) or b"(?!)")

    def view(self, schema: str | None, table: str) -> str | None:
        return self.views.get((schema or "public", table))

    def protection(self, schema: str | None, table: str) -> str | None:
        """Why the table must stay out of inheritance and partitioning, or None."""
        if (schema or "public", table) in self.row_security:
            return "row-level security on"
        if self.view(schema, table) is not None:
            return "a masking policy attached"
        return None


def _expressions(text: str) -> tuple[list[str], list[str]]:
    """(as written, as the functions evaluate them): one expression each, reading no table."""
    check_body_size(text, "masking expressions")
    try:
        tree = parse_tree(f"SELECT {text}\n")
    except parser.ParseError as exc:
        raise GrammarError(f"masking expression: {exc}") from None
    select = tree[0].stmt if len(tree) == 1 else None
    if (not isinstance(select, ast.SelectStmt) or select.fromClause or select.whereClause or select.groupClause
            or select.havingClause or select.withClause or select.sortClause or select.limitCount
            or select.distinctClause or not select.targetList):
        raise GrammarError("masking expressions must be expressions")
    written, evaluated = [], []
    for target in select.targetList:
        if target.name:
            raise GrammarError("masking expressions take no AS name")
        finder = _Subqueries()
        finder(target.val)
        if finder.found:
            raise GrammarError("masking expressions that read tables are not supported by shiftguard",
                               sqlstate.FEATURE_NOT_SUPPORTED)
        written.append(printed(target.val))
        # The expression's function is an invoker one, inlined into the reader's query, where
        # current_user is the reader; session_user, too, is taken for the reader (rls._Reader).
        reader_as_current_user(target.val)
        evaluated.append(printed(target.val))
    return written, evaluated


class _Subqueries(visitors.Visitor):
    def __init__(self):
        super().__init__()
        self.found = False

    def visit_SubLink(self, parent, node):
        self.found = True


def parse_create(cursor: Cursor, text: str) -> dict:
    """CREATE MASKING POLICY consumed."""
    if_not_exists = cursor.accept("IF", "NOT", "EXISTS")
    name = cursor.name("policy name")
    cursor.expect("WITH")
    columns = _columns(cursor, text)
    cursor.expect("USING")
    written, evaluated = _expressions(_parenthesized(cursor, text, "masking expression"))
    cursor.end()
    return {"name": name, "columns": columns, "written": written, "expressions": evaluated,
            "if_not_exists": if_not_exists, "altering": False}


def parse_alter(cursor: Cursor, text: str) -> dict:
    """ALTER MASKING POLICY consumed: only USING changes."""
    name = cursor.name("policy name")
    cursor.expect("USING")
    written, evaluated = _expressions(_parenthesized(cursor, text, "masking expression"))
    cursor.end()
    return {"name": name, "columns": [], "written": written, "expressions": evaluated,
            "if_not_exists": False, "altering": True}


def parse_drop(cursor: Cursor) -> tuple[str, bool]:
    missing_ok = cursor.accept("IF", "EXISTS")
    name = cursor.name("policy name")
    cursor.end()
    return name, missing_ok


def _column_list(cursor: Cursor) -> list[str]:
    if not cursor.accept_symbol("("):
        raise GrammarError("syntax error: expected ( and the column names")
    names = [cursor.name("column name")]
    while cursor.accept_symbol(","):
        names.append(cursor.name("column name"))
    if not cursor.accept_symbol(")"):
        raise GrammarError("syntax error: expected ) after the column names")
    return names


def parse_attach(cursor: Cursor, attaching: bool) -> tuple[dict, str]:
    """ATTACH / DETACH MASKING POLICY consumed: (spec, the table's name for a regclass literal)."""
    policy = cursor.name("policy name")
    cursor.expect("ON")
    table = table_name(cursor)
    out_columns = _column_list(cursor)
    in_columns = _column_list(cursor) if attaching and cursor.accept("USING") else []
    cursor.expect("TO" if attaching else "FROM")
    if cursor.accept("PUBLIC"):
        kind, grantee = "public", ""
    elif cursor.accept("ROLE"):
        kind, grantee = "role", cursor.name("role name")
    else:
        kind, grantee = "user", cursor.name("user name")
    if cursor.accept_symbol(","):
        raise GrammarError("a masking policy is attached to one user, role or PUBLIC at a time")
    priority = 0
    if attaching and cursor.accept("PRIORITY"):
        priority = cursor.integer("priority")
    cursor.end()
    return ({"policy": policy, "out_columns": out_columns, "in_columns": in_columns, "grantee_kind": kind,
             "grantee": grantee, "priority": priority, "attach": attaching}, table)


# --------------------------------------------------------------------------- the rewrite


def mentions(lowered: bytes, masked: MaskedTables) -> bool:
    return masked.prefilter.search(lowered) is not None


def rewrite(statement: str, masked: MaskedTables) -> str | None:
    """The statement reading masked tables through their views, or None when it reads none."""
    try:
        tree = parse_tree(statement)
    except parser.ParseError:
        return None
    ctes = _CteNames()
    ctes(tree)
    swap = _ReadThroughViews(masked, ctes.names)
    swap(tree)
    return printed(tree) if swap.changed else None


class _CteNames(visitors.Visitor):
    def __init__(self):
        super().__init__()
        self.names: set[str] = set()

    def visit_CommonTableExpr(self, parent, node):
        self.names.add(node.ctename)


class _ReadThroughViews(visitors.Visitor):
    """A name that is also a WITH query's is left alone (it may mean the WITH query; if it means
    the table, the guard refuses the read)."""

    def __init__(self, masked: MaskedTables, ctes: set[str]):
        super().__init__()
        self.masked = masked
        self.ctes = ctes
        self.changed = False

    def visit_SelectStmt(self, parent, node):
        if node.fromClause:
            node.fromClause = tuple(self._item(item) for item in node.fromClause)

    def visit_UpdateStmt(self, parent, node):
        if node.fromClause:
            node.fromClause = tuple(self._item(item) for item in node.fromClause)

    def visit_DeleteStmt(self, parent, node):
        if node.usingClause:
            node.usingClause = tuple(self._item(item) for item in node.usingClause)

    def _item(self, item):
        if isinstance(item, ast.JoinExpr):
            item.larg = self._item(item.larg)
            item.rarg = self._item(item.rarg)
            return item
        if not isinstance(item, ast.RangeVar) or item.catalogname or (
                item.schemaname is None and item.relname in self.ctes):
            return item
        view = self.masked.view(item.schemaname, item.relname)
        if view is None:
            return item
        self.changed = True
        alias = item.alias or ast.Alias(aliasname=item.relname)
        return ast.RangeVar(schemaname="shiftguard", relname=view, inh=True, relpersistence="p", alias=alias)
