"""Redshift row-level security statements (reference §5): pure grammar. The private schema's
procedures (catalog/rls.sql) check who may, and turn policies into PostgreSQL row security.

    CREATE RLS POLICY p [WITH (col type, ...) [[AS] alias]] USING (predicate)
    ALTER RLS POLICY [db.]p USING (predicate)
    DROP RLS POLICY [IF EXISTS] p [CASCADE | RESTRICT]
    ATTACH RLS POLICY p ON [TABLE] t [, ...] TO {user | ROLE r | PUBLIC} [, ...]
    DETACH RLS POLICY p ON [TABLE] t [, ...] FROM {user | ROLE r | PUBLIC} [, ...]
    ALTER TABLE t ROW LEVEL SECURITY {ON | OFF} [CONJUNCTION TYPE {AND | OR}]

A predicate must be one expression; it is parsed by PostgreSQL's parser and printed back, so
what reaches the backend is exactly one expression whatever the text held.
"""

from __future__ import annotations

from dataclasses import dataclass

from pglast import ast, enums, parser, visitors

from ..protocol import sqlstate
from .tokens import Cursor, GrammarError, Token, parse_tree, printed, quoted_name

# Every spelling of the querying user. Redshift has no SET ROLE, and SET SESSION AUTHORIZATION
# changes both, so they name the same user there; here code of one role can run in another's
# session (an admin's ANALYZE runs a table owner's index expressions as the owner), where
# session_user is not the reader: a policy takes all of them for the reader.
_READER = (enums.SQLValueFunctionOp.SVFOP_CURRENT_USER, enums.SQLValueFunctionOp.SVFOP_USER,
           enums.SQLValueFunctionOp.SVFOP_CURRENT_ROLE, enums.SQLValueFunctionOp.SVFOP_SESSION_USER)


@dataclass(frozen=True)
class Predicate:
    written: str          # as PostgreSQL's parser reads it (svv_rls_policy.polqual)
    expression: str       # what the policy function evaluates
    lookups: list[str]    # the tables it reads
    # When it reads no table (no subquery): the expression over bare column names, for a
    # function PostgreSQL inlines into the query (alias.col written as col).
    inline: str | None


# Characters of a policy's expressions (RLS and masking) the proxy reads at most. Reading one
# walks and prints its parse tree on the event loop, the dearest reading there is (about 165
# function calls a byte: bench/classify_scaling.py), so it is bounded well below
# limits.max_checked_statement_size; real policies are a few hundred characters.
POLICY_BODY_LIMIT = 16_384


def check_body_size(text: str, what: str) -> None:
    if len(text) > POLICY_BODY_LIMIT:
        raise GrammarError(f"{what} too long for shiftguard: {len(text)} characters (at most {POLICY_BODY_LIMIT})",
                           sqlstate.PROGRAM_LIMIT_EXCEEDED)


def parse_predicate(text: str) -> Predicate:
    """One boolean expression. The form without lookups (inline) is evaluated in the reader's
    query, where current_user is the reader. The form that reads lookup tables is evaluated in a
    function running as another role, which takes the reader as its first parameter: the
    querying user is written $1 there."""
    check_body_size(text, "RLS policy predicate")
    try:
        tree = parse_tree(f"SELECT ({text}\n)")
    except parser.ParseError as exc:
        raise GrammarError(f"RLS policy predicate: {exc}") from None
    select = tree[0].stmt if len(tree) == 1 else None
    if (not isinstance(select, ast.SelectStmt) or len(select.targetList or ()) != 1 or select.fromClause
            or select.whereClause or select.groupClause or select.havingClause or select.withClause
            or select.sortClause or select.limitCount or select.distinctClause):
        raise GrammarError("an RLS policy predicate must be one expression")
    expression = select.targetList[0].val
    written = printed(expression)
    lookups = _Lookups()
    lookups(expression)
    if lookups.parameters:
        raise GrammarError("an RLS policy predicate cannot have parameters ($n)")
    inline = None
    if not lookups.names and not lookups.subqueries:
        bare = parse_tree(f"SELECT ({text}\n)")[0].stmt.targetList[0].val
        _BareColumns()(bare)
        reader_as_current_user(bare)
        inline = printed(bare)
    _Reader(ast.ParamRef(number=1))(expression)
    rewritten = printed(expression)
    return Predicate(written, rewritten, lookups.names, inline)


class _BareColumns(visitors.Visitor):
    """alias.col -> col, in an expression without subqueries (every column is the table's)."""

    def visit_ColumnRef(self, parent, node):
        fields = node.fields or ()
        if len(fields) > 1 and isinstance(fields[-1], ast.String):
            return ast.ColumnRef(fields=(fields[-1],))
        return None


def reader_as_current_user(expression: ast.Node) -> None:
    _Reader(ast.SQLValueFunction(op=enums.SQLValueFunctionOp.SVFOP_CURRENT_USER, typmod=-1))(expression)


class _Reader(visitors.Visitor):
    """Every spelling of the querying user becomes the given node."""

    def __init__(self, reader: ast.Node):
        super().__init__()
        self.reader = reader

    def visit_SQLValueFunction(self, parent, node):
        return self.reader if node.op in _READER else None

    def visit_FuncCall(self, parent, node):
        """The same as functions: "current_user"(), pg_catalog.session_user(), getpgusername()."""
        names = [n.sval for n in node.funcname]
        if (not node.args and not node.agg_star and node.over is None and len(names) <= 2
                and names[:-1] in ([], ["pg_catalog"])
                and names[-1] in ("current_user", "session_user", "current_role", "user", "getpgusername")):
            return self.reader
        return None


class _Lookups(visitors.Visitor):
    """The tables a predicate reads (common table expressions excluded)."""

    def __init__(self):
        super().__init__()
        self.names: list[str] = []
        self.ctes: set[str] = set()
        self.subqueries = False
        self.parameters = False

    def visit_ParamRef(self, parent, node):
        self.parameters = True

    def visit_SubLink(self, parent, node):
        self.subqueries = True

    def visit_CommonTableExpr(self, parent, node):
        self.ctes.add(node.ctename)

    def visit_RangeVar(self, parent, node):
        if node.schemaname is None and node.relname in self.ctes:
            return
        name = quoted_name(node.relname) if node.schemaname is None else f"{quoted_name(node.schemaname)}.{quoted_name(node.relname)}"
        if name not in self.names:
            self.names.append(name)


def _parenthesized(cursor: Cursor, text: str, what: str) -> str:
    """The source text between '(' and its matching ')'."""
    if not cursor.accept_symbol("("):
        raise GrammarError(f"syntax error: expected ( before the {what}")
    start = cursor.pos
    depth = 1
    while depth:
        token = cursor.next()
        if _symbol(token, "("):
            depth += 1
        elif _symbol(token, ")"):
            depth -= 1
    body = cursor.tokens[start:cursor.pos - 1]
    if not body:
        raise GrammarError(f"the {what} is empty")
    return text[body[0].start:body[-1].end]


def _symbol(token: Token, symbol: str) -> bool:
    return token.kind == "NO_KEYWORD" and token.text == symbol


def _type_name(text: str) -> str:
    """A column type, checked by PostgreSQL's parser and printed back."""
    try:
        tree = parse_tree(f"SELECT NULL::{text}\n")
    except parser.ParseError:
        raise GrammarError(f'type "{text}" is not a type name') from None
    value = tree[0].stmt.targetList[0].val if len(tree) == 1 else None
    if not isinstance(value, ast.TypeCast) or len(tree[0].stmt.targetList) != 1 or tree[0].stmt.fromClause:
        raise GrammarError(f'type "{text}" is not a type name')
    return printed(value.typeName)


def _columns(cursor: Cursor, text: str) -> list[dict]:
    """WITH ( col type [, ...] ), WITH consumed."""
    if not cursor.accept_symbol("("):
        raise GrammarError("syntax error: expected ( after WITH")
    columns = []
    while True:
        name = cursor.name("column name")
        start = cursor.peek()
        depth = 0
        while True:
            token = cursor.peek()
            if token is None:
                raise GrammarError("unexpected end of statement in WITH (...)")
            if depth == 0 and (_symbol(token, ",") or _symbol(token, ")")):
                break
            depth += _symbol(token, "(") - _symbol(token, ")")
            cursor.next()
        if start is token:
            raise GrammarError(f'column "{name}" needs a type')
        if any(c["colname"] == name for c in columns):
            raise GrammarError(f'column "{name}" is declared twice', sqlstate.DUPLICATE_COLUMN)
        columns.append({"colname": name, "type": _type_name(text[start.start:cursor.tokens[cursor.pos - 1].end])})
        if cursor.accept_symbol(")"):
            return columns
        cursor.accept_symbol(",")


def parse_create(cursor: Cursor, text: str) -> dict:
    """CREATE RLS POLICY consumed."""
    name = cursor.name("policy name")
    columns, alias = [], None
    if cursor.accept("WITH"):
        columns = _columns(cursor, text)
        if cursor.accept("AS") or (cursor.peek() is not None and cursor.peek().word != "USING"):
            alias = cursor.name("relation alias")
    cursor.expect("USING")
    predicate = parse_predicate(_parenthesized(cursor, text, "predicate"))
    cursor.end()
    return {"name": name, "alias": alias, "columns": columns, "predicate": predicate.written,
            "expression": predicate.expression, "lookups": predicate.lookups, "inline": predicate.inline}


def parse_alter(cursor: Cursor, text: str) -> dict:
    """ALTER RLS POLICY consumed; only USING can change."""
    name = _policy_name(cursor)
    cursor.expect("USING")
    predicate = parse_predicate(_parenthesized(cursor, text, "predicate"))
    cursor.end()
    return {"name": name, "predicate": predicate.written, "expression": predicate.expression,
            "lookups": predicate.lookups, "inline": predicate.inline}


def parse_drop(cursor: Cursor) -> tuple[str, bool, bool]:
    """DROP RLS POLICY consumed: (name, IF EXISTS, CASCADE)."""
    missing_ok = cursor.accept("IF", "EXISTS")
    name = _policy_name(cursor)
    cascade = cursor.accept("CASCADE")
    if not cascade:
        cursor.accept("RESTRICT")
    cursor.end()
    return name, missing_ok, cascade


def parse_attach(cursor: Cursor, attaching: bool) -> tuple[str, list[str], list[dict]]:
    """ATTACH / DETACH RLS POLICY consumed: (policy, tables, grantees)."""
    name = _policy_name(cursor)
    cursor.expect("ON")
    cursor.accept("TABLE")
    tables = [table_name(cursor)]
    while cursor.accept_symbol(","):
        tables.append(table_name(cursor))
    cursor.expect("TO" if attaching else "FROM")
    grantees = []
    while True:
        if cursor.accept("PUBLIC"):
            grantees.append({"kind": "public", "name": ""})
        elif cursor.accept("ROLE"):
            grantees.append({"kind": "role", "name": cursor.name("role name")})
        else:
            grantees.append({"kind": "user", "name": cursor.name("user name")})
        if not cursor.accept_symbol(","):
            break
    cursor.end()
    return name, tables, grantees


def parse_table_rls(cursor: Cursor) -> tuple[str, bool, str | None] | None:
    """ALTER TABLE t ROW LEVEL SECURITY {ON | OFF} [CONJUNCTION TYPE {AND | OR}] (ALTER TABLE
    consumed); None when the statement is another ALTER TABLE."""
    table = table_name(cursor)
    if not cursor.accept("ROW", "LEVEL", "SECURITY"):
        return None
    if cursor.accept("ON"):
        enabled = True
    elif cursor.accept("OFF"):
        enabled = False
    else:
        raise GrammarError("syntax error: expected ON or OFF after ROW LEVEL SECURITY")
    conjunction = None
    if cursor.accept("CONJUNCTION", "TYPE"):
        if cursor.accept("AND"):
            conjunction = "and"
        elif cursor.accept("OR"):
            conjunction = "or"
        else:
            raise GrammarError("syntax error: expected AND or OR after CONJUNCTION TYPE")
    if cursor.accept("FOR", "DATASHARES"):
        raise GrammarError("datashares are not supported", sqlstate.FEATURE_NOT_SUPPORTED)
    cursor.end()
    return table, enabled, conjunction


def table_name(cursor: Cursor) -> str:
    """[schema.]table, quoted for a regclass literal."""
    name = quoted_name(cursor.name("table name"))
    if cursor.accept_symbol("."):
        name += "." + quoted_name(cursor.name("table name"))
    return name


def _policy_name(cursor: Cursor) -> str:
    name = cursor.name("policy name")
    if cursor.accept_symbol("."):  # database_name.policy: this database is the only one
        name = cursor.name("policy name")
    return name
