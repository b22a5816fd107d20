"""Statement classification: which statements of a Query or Parse the proxy owns, and what each
becomes. Pure: SQL in, a Plan out; no I/O, no session state.

Statements are cut with PostgreSQL's own scanner (pglast). The proxy owns:
- Redshift's CREATE/ALTER/DROP USER and GROUP (policy/users.py, policy/groups.py), which become
  calls of the private schema's procedures, so PostgreSQL checks the caller inside the same
  transaction, and GROUP grantees of GRANT/REVOKE, which name the groups' roles;
- Redshift's RBAC statements (policy/roles.py): CREATE/ALTER/DROP ROLE, GRANT/REVOKE ROLE;
  PostgreSQL's role-attribute syntax (ALTER ROLE ... PASSWORD, CREATE ROLE ... LOGIN) is not
  their grammar and is refused: it would open a way into the backend the proxy does not control;
- references to Redshift's user catalog views (pg_user, pg_user_info, pg_group,
  svl_user_info, svv_user_info), pointed at the private schema's versions in the parse tree;
- EXPLAIN, which becomes a call of shiftguard.explain (catalog/explain.sql): RLS SecureScan
  nodes and no policy or masking expressions for users lacking EXPLAIN RLS / EXPLAIN MASKING.
Everything else is forwarded unchanged (ALTER TABLE and CREATE INDEX with a comment that marks
whether they evaluate expressions over a table's rows, for the backend's guard: see "code over
protected rows"): the session's role is the user's own, so PostgreSQL enforces its privileges. SQL that does not scan or parse is forwarded too and PostgreSQL
rejects it with its own error.
"""

from __future__ import annotations

import copy
import json
import logging
import re
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass, replace

import pglast
from pglast import parser, visitors

from ..protocol import sqlstate
from .tokens import (CALLER_SEARCH_PATH, SECRET_WORDS, Cursor, GrammarError, as_ascii, as_read, is_number_junk,
                     may_run_into_name, parse_tree, printed, scan, separate_numbers, split_statements, sql_literal)
from . import dialect
from .groups import (changes_json, parse_alter_group, parse_create_group, parse_drop_group,
                     rewrite_grant)
from .roles import as_json as roles_json
from .roles import (parse_alter_role, parse_create_role, parse_drop_role, parse_role_grant,
                    parse_system_grant)
from .users import parse_alter_user, parse_create_user, parse_drop_user
from . import encoding, identifiers, idp, masking, privileges, rls, s3, sealing, signing
from .identifiers import IdentifierCase


@dataclass(frozen=True, slots=True)
class Denial:
    sqlstate: str
    message: str
    detail: str | None = None
    hint: str | None = None


@dataclass(frozen=True, slots=True)
class Action:
    """Statement `index`, characters [start, end) of the SQL text, becomes `sql` (command tag
    `tag`, None: PostgreSQL's own) or is denied."""

    index: int
    start: int
    end: int
    sql: str | None = None
    tag: bytes | None = None
    denial: Denial | None = None


@dataclass(frozen=True, slots=True)
class Plan:
    actions: tuple[Action, ...] = ()
    # False when the plan must not be kept in a cache (it holds password hashes or fresh salts).
    cacheable: bool = True
    # The SQL to send instead of the client's, which the actions' spans then refer to: the
    # client's as PostgreSQL reads it, written to read the same whatever standard_conforming_strings
    # says (tokens.as_read). None: the client's own.
    text: str | None = None
    # The session's enable_case_sensitive_identifier after this SQL, when it changes it.
    identifier_case: IdentifierCase | None = None
    # The SQL may rename, move, alter or drop relations, columns, schemas or domains: what the
    # proxy knows of result columns' sources (catalog/sources.py) is forgotten when it runs.
    alters: bool = False
    # The names of 64 to 127 bytes the SQL holds, sent as their short names: the map back
    # (catalog/long_names.sql) is told of them before the SQL runs.
    long_names: frozenset[str] = frozenset()


PASS = Plan()


class Translator:
    """What statement handlers need from outside: a role's backend password verifier, whether
    Redshift's SQL dialect is translated (its functions are installed in the backend) and
    whether PostgreSQL-only features are refused (strict_redshift)."""

    def __init__(self, backend_verifier: Callable[[str], str], dialect: bool = False, strict: bool = False,
                 s3=None, sign: signing.Signer = signing.unsigned, seal: sealing.Sealer = sealing.unsealable,
                 s3_access=None):
        self.backend_verifier = backend_verifier
        self.dialect = dialect
        self.strict = strict
        self.s3 = s3  # proxy.s3.LocalS3: COPY/UNLOAD with S3 locations (see _s3_statement)
        self.s3_access = s3_access  # proxy.iam.s3access.S3Access: whose credentials they name, and what they allow
        self._sign = sign  # signs what procedures turn into SQL (policy/signing.py)
        # How many answers it gave that must not be kept (signatures expire; what COPY and UNLOAD
        # are refused for, missing files, credentials, changes): a plan holding one is not cached.
        self.volatile = 0
        self.seal = seal  # seals the secrets a statement hands a procedure (policy/sealing.py)
        self.masked = masking.MaskedTables()  # replaced when masking attachments change (server.py)
        # The session's enable_case_sensitive_identifier (policy/identifiers.py).
        self.identifier_case = IdentifierCase()

    def with_identifier_case(self, case: IdentifierCase) -> "Translator":
        """The same translator for a session whose enable_case_sensitive_identifier is case."""
        if case == self.identifier_case:
            return self
        other = copy.copy(self)
        other.identifier_case = case
        return other

    def in_database(self, masked: masking.MaskedTables) -> "Translator":
        """The same translator for a database whose masked tables and tables with RLS on these are."""
        other = copy.copy(self)
        other.masked = masked
        return other

    def sign(self, purpose: str, payload: str) -> str:
        self.volatile += 1
        return self._sign(purpose, payload)


# Every statement the proxy owns contains one of these words. PostgreSQL's keywords are ASCII
# and case-insensitive and cannot be escaped or split, and the catalog views' ("user",
# "group", "privileges"), set_config's and client_encoding's names (SET NAMES: "names") contain them, so SQL whose ASCII-lowered bytes contain none of them holds nothing the
# proxy owns and needs no parse. Only a shortcut: a hit means "scan and look", never a decision.
# Function names are identifiers, which U&"..." can spell with escapes: SQL holding a Unicode
# escape is always parsed.
_TRIGGER_WORDS = (b"user", b"role", b"group", b"privileges", b"stl_", b"stv_", b"sys_", b"svv_", b"pg_table_def",
                  b"pg_proc_info", b"discard", b"system", b"extension", b"copy",
                  b"policy", b"language", b"load", b"set_config", b"authorization", b"grant",
                  b"revoke", b"security", b"analy", b"explain", b"drop", b"rename", b"truncate", b"schema", b"cancel",
                  b"u&", b"identity", b"create", b"vacuum", b"operator", b"search", b"inherit", b"attach",
                  b"detach", b"encoding", b"names", b"alter", b"no-row-code")

# Redshift catalog views PostgreSQL lacks (or has with other columns), and where ours live.
CATALOG_VIEWS = {name: name for name in (
    "pg_user", "pg_user_info", "pg_group", "svl_user_info", "svv_user_info", "svv_relation_privileges",
    "svv_column_privileges",
    "svv_schema_privileges", "svv_database_privileges", "svv_roles", "svv_user_grants", "svv_role_grants",
    "svv_system_privileges", "stl_connection_log", "sys_connection_log", "stl_userlog", "stl_query",
    "sys_query_history", "svv_table_info", "pg_table_def", "svv_external_schemas", "svv_external_tables",
    "svv_external_columns", "svv_rls_policy", "svv_rls_relation", "svv_rls_attached_policy", "svv_masking_policy", "svv_attached_masking_policy",
    "svv_default_privileges", "svv_iam_privileges", "svv_identity_providers", "svv_all_schemas", "svv_all_tables",
    "svv_all_columns", "svv_tables", "svv_columns", "svv_redshift_tables", "svv_redshift_columns", "pg_proc_info",
    "stl_undone", "svv_mv_info", "stv_mv_info", "sys_query_detail")}
# PostgreSQL catalogs read through views adding Redshift's columns (or, pg_views, its materialized
# views), when the dialect is on.
DIALECT_CATALOGS = ("pg_class", "pg_attribute", "pg_attrdef", "pg_views")
# information_schema's views read through ours when the dialect is on: views lists materialized
# views, as Redshift's does (catalog/materialized_views.sql); both name names of 64 to 127 bytes
# whole (catalog/schema.sql long_name); columns leaves out late-binding views' columns, as Redshift's
# does.
DIALECT_INFORMATION_SCHEMA = {"views": "information_schema_views", "tables": "information_schema_tables",
                              "columns": "information_schema_columns"}
PRIVATE_SCHEMA = "shiftguard"
PRIVATE_ROWS_SCHEMA = "shiftguard_rows"  # shiftguard's tables, which no user may look into

log = logging.getLogger(__name__)


def _any_of(words) -> re.Pattern:
    """A search for any of these literal byte strings, in one pass (the same answer as
    `any(w in text for w in words)`, several times faster on the hot path). Literals only: no
    pattern syntax, so it is only ever a substring test. The alternatives share their prefixes
    (a(?:naly|uthorization)|c(?:...)...): at each position of the text the search tries one
    branch, not every word, so a word more costs the hot path next to nothing."""
    return re.compile(_prefix_tree(sorted(set(words))))


def _prefix_tree(words: list[bytes]) -> bytes:
    if b"" in words:
        return b""  # a word ends here: for a search, the longer ones add nothing
    branches: dict[bytes, list[bytes]] = {}
    for word in words:
        branches.setdefault(word[:1], []).append(word[1:])
    alternatives = [re.escape(first) + _prefix_tree(rest) for first, rest in branches.items()]
    return alternatives[0] if len(alternatives) == 1 else b"(?:" + b"|".join(alternatives) + b")"


_TRIGGER = _any_of(_TRIGGER_WORDS)
_DIALECT_TRIGGER = _any_of(dialect.TRIGGER_WORDS + tuple(w.encode() for w in DIALECT_CATALOGS)
                           + (b"information_schema",))


def may_need_plan(sql: bytes, translator: Translator | None = None) -> bool:
    """False when sql certainly holds no statement the proxy owns (no parse needed; with
    strict_redshift every statement is read all the same, may_need_reading)."""
    if not sql.isascii():
        return True  # the proxy sends PostgreSQL only ASCII SQL (tokens.as_ascii)
    lowered = sql.lower()
    if b"\\" in sql:
        return True  # a backslash may mean another reading (tokens.as_read)
    if may_run_into_name(sql):
        return True  # THEN 1WHEN: Redshift reads 1 WHEN (tokens.separate_numbers)
    if _TRIGGER.search(lowered):
        return True
    if translator is not None and translator.masked.views and masking.mentions(lowered, translator.masked):
        return True
    return translator is not None and translator.dialect and (
        _DIALECT_TRIGGER.search(lowered) is not None or dialect.may_rewrite(lowered))


def may_need_names(sql: bytes, translator: Translator) -> bool:
    """False when sql certainly holds nothing Redshift's names change (policy/identifiers.py):
    no quoted name to fold, no name too long, no enable_case_sensitive_identifier. Apart from
    may_need_plan because a quoted capital and a 64-character run are common inside string
    constants (JSON, hex): see may_need_reading."""
    return translator.dialect and identifiers.may_rewrite(sql, sql.lower(), translator.identifier_case)


def may_need_reading(sql: bytes, translator: Translator) -> bool:
    """What only Redshift's names (may_need_names) or strict_redshift, which looks at every
    statement, would have the proxy read; SQL above limits.max_checked_statement_size that
    only this asks to read is sent as written (cache.Classifier) rather than refused."""
    return translator.strict or may_need_names(sql, translator)


def classify(sql: bytes, translator: Translator, standard_strings: bool = True, user: str | None = None) -> Plan:
    """The plan for one Query or Parse SQL string, read as PostgreSQL reads it in a session
    whose standard_conforming_strings is standard_strings, of the user `user` (whom the plans
    that hold a ticket for that user's session only, S3's, are for; never cached).

    What reaches PostgreSQL is ASCII only (DESIGN principle 8): PASS only for ASCII SQL;
    otherwise Plan.text is the SQL written in ASCII (tokens.as_ascii), which reads the same in
    every client encoding, so that no change of the session's client_encoding (which the proxy
    may learn of only after the next message is on its way) changes what runs."""
    if not may_need_plan(sql, translator) and not may_need_reading(sql, translator):
        return PASS
    try:
        plan = _classify_text(sql, translator, standard_strings, user)
    except RecursionError:
        # pglast builds, walks and prints parse trees recursively, and json reads its output
        # so: a chain of a few hundred `||` or nested ARRAY[...] is deeper than Python's
        # default limit, yet PostgreSQL runs it (up to about 4,500 levels with its default
        # max_stack_depth of 2 MB). Such a statement is classified again on a thread of its
        # own with room for it; what is too deep even there is refused as PostgreSQL refuses
        # what is too deep for it.
        plan = _with_deep_stack(_classify_text, sql, translator, standard_strings, user)
    return replace(plan, alters=True) if alters_relations(sql) else plan


_DATABASE_WORD = re.compile(rb"database", re.IGNORECASE)
_VACATE_SCAN_LIMIT = 64 << 10  # bytes: a DROP DATABASE is short; a large script is not read for one


def databases_to_vacate(sql: bytes) -> frozenset[str]:
    """The databases a Query or Parse needs no other session in: the one DROP DATABASE or ALTER
    DATABASE ... RENAME TO names, and the template CREATE DATABASE copies (template1 unless
    named). PostgreSQL refuses these while another session is there, so the proxy first ends
    the idle backend sessions it keeps there (backend/pool.py close_database). Not a decision:
    nothing is allowed or refused by it, and SQL it cannot read names none."""
    if len(sql) > _VACATE_SCAN_LIMIT or not _DATABASE_WORD.search(sql):
        return frozenset()
    try:
        statements = parser.parse_sql(sql.decode("utf-8"))
    except (UnicodeDecodeError, parser.ParseError, RecursionError):
        return frozenset()
    names = set()
    for raw in statements:
        stmt = raw.stmt
        if isinstance(stmt, pglast.ast.DropdbStmt):
            names.add(stmt.dbname)
        elif isinstance(stmt, pglast.ast.RenameStmt) and stmt.renameType == pglast.enums.ObjectType.OBJECT_DATABASE:
            names.add(stmt.subname)
        elif isinstance(stmt, pglast.ast.CreatedbStmt):
            template = [o.arg for o in stmt.options or () if o.defname == "template"]
            # TEMPLATE x or 'x' is a String; TEMPLATE DEFAULT none (template1, as without one)
            names.add(template[0].sval if template and template[0] is not None else "template1")
    return frozenset(names)


_ALTER_WORD = re.compile(rb"alter|drop|rename", re.IGNORECASE)
_ALTERING = (pglast.ast.AlterTableStmt, pglast.ast.RenameStmt, pglast.ast.AlterObjectSchemaStmt, pglast.ast.DropStmt,
             pglast.ast.AlterDomainStmt)


def alters_relations(sql: bytes) -> bool:
    """Might sql rename, move, alter or drop a relation, column, schema or domain (so that a
    result column's schema, table or column name, NOT NULL or identity may be another after
    it)? Not a decision: read once per SQL text, with its plan; SQL it cannot read alters none
    (PostgreSQL refuses it too). DDL that runs inside a function or DO block is not seen."""
    if not _ALTER_WORD.search(sql):
        return False
    try:
        statements = parser.parse_sql(sql.decode("utf-8"))
    except (UnicodeDecodeError, parser.ParseError, RecursionError):
        return False
    return any(isinstance(raw.stmt, _ALTERING) for raw in statements)


# Room for the parse trees libpg_query accepts at all (its own stack check stops at about 16,000
# levels of `||`, which need some 100,000 Python frames and 128 MB of C stack to print back).
_DEEP_RECURSION_LIMIT = 200_000
_DEEP_STACK_BYTES = 256 << 20  # reserved address space; only the pages used are committed
_deep_lock = threading.Lock()


def _with_deep_stack(function, sql: bytes, translator: Translator, standard_strings: bool, user: str | None) -> Plan:
    """function(sql, translator, standard_strings, user) on a thread with a deep stack and recursion
    limit (the caller waits: a classification is synchronous). One at a time, since the
    recursion limit is the interpreter's."""
    result: list = []

    def run() -> None:
        try:
            result.append(function(sql, translator, standard_strings, user))
        except RecursionError:
            pass
        except Exception as exc:  # a bug of ours: refuse, as classify_statement's callers do
            result.append(exc)

    with _deep_lock:
        limit = sys.getrecursionlimit()
        stack = threading.stack_size()
        try:
            sys.setrecursionlimit(max(limit, _DEEP_RECURSION_LIMIT))
            threading.stack_size(_DEEP_STACK_BYTES)
            worker = threading.Thread(target=run, name="shiftguard-deep-classify")
            worker.start()
        finally:
            threading.stack_size(stack)
        worker.join()
        sys.setrecursionlimit(limit)
    if result and isinstance(result[0], Plan):
        return result[0]
    if result:
        log.error("could not classify a deeply nested statement", exc_info=result[0])
        return _refused(Denial(sqlstate.INTERNAL_ERROR, "shiftguard could not process this statement",
                               hint="This is a bug in shiftguard; the statement was not run."))
    # PostgreSQL's own words for what is too deep for it (check_stack_depth).
    return _refused(Denial(sqlstate.STATEMENT_TOO_COMPLEX, "stack depth limit exceeded",
                           hint="The statement nests expressions too deeply for shiftguard to check it; "
                                "write it with fewer levels."))


def _classify_text(sql: bytes, translator: Translator, standard_strings: bool, user: str | None = None,
                   apart: bool = False) -> Plan:
    try:
        original = sql.decode("utf-8")
    except UnicodeDecodeError as exc:  # fail closed: what the proxy cannot read never runs
        return _refused(Denial(sqlstate.CHARACTER_NOT_IN_REPERTOIRE, _invalid_utf8(sql, exc.start)))
    try:
        # as PostgreSQL reads it (standard_conforming_strings), then in ASCII
        text = as_ascii(as_read(original, standard_strings))
    except GrammarError as exc:  # not even where PostgreSQL's reading of it ends is certain
        if not apart and is_number_junk(exc):
            return _numbers_apart(original, translator, standard_strings, user)
        return _refused(Denial(exc.sqlstate, str(exc), hint=exc.hint))
    rewritten = None if text == original else text
    if NO_ROW_CODE_MARK_WORD in original.lower() or NO_ROW_CODE_MARK_WORD in text.lower():
        # The backend trusts the proxy's mark (catalog/row_code.sql): no client writes it.
        return Plan((Action(0, 0, len(original), denial=Denial(
            sqlstate.FEATURE_NOT_SUPPORTED, f"SQL holding the text {NO_ROW_CODE_MARK_WORD!r} is not accepted",
            hint="shiftguard marks the statements it has judged with it.")),))
    try:
        spans = split_statements(text)
    except GrammarError as exc:
        if not apart and is_number_junk(exc):
            return _numbers_apart(original, translator, standard_strings, user)
        if any(word in text.lower() for word in SECRET_WORDS):
            # PostgreSQL would refuse it too, and log it with its error: refused here, the
            # password (an identity provider's secret, AWS credentials) is in no log.
            return Plan((Action(0, 0, len(text), denial=Denial(sqlstate.SYNTAX_ERROR, str(exc))),), True, rewritten)
        return Plan(text=rewritten) if rewritten else PASS  # PostgreSQL will refuse it with its own error
    actions = []
    cacheable = True
    case_after = None
    long_names: set[str] = set()
    for index, (start, end) in enumerate(spans):
        volatile = translator.volatile
        try:
            result = None
            setting = identifiers.setting(text[start:end], translator.identifier_case) if translator.dialect else None
            if setting is not None:
                case_after, replacement, tag = setting
                translator = translator.with_identifier_case(case_after)  # for the statements after it
                result = (replacement, tag, True) if replacement is not None else None
            if result is None:
                result = classify_statement(text[start:end], translator, standard_strings, user, long_names)
        except GrammarError as exc:  # from a rewrite's parse (tokens.parse_tree: its budget)
            result = Denial(exc.sqlstate, str(exc), hint=exc.hint)
        except RecursionError:
            raise  # classify tries again with room for it
        except Exception:  # a bug of ours: refuse the statement, keep the session
            log.exception("could not classify a statement")
            result = Denial(sqlstate.INTERNAL_ERROR, "shiftguard could not process this statement",
                            hint="This is a bug in shiftguard; the statement was not run.")
        if result is None:
            continue
        if not isinstance(result, Denial):
            replacement, tag, keep = result
            try:
                sent = as_printed(replacement)
            except GrammarError as exc:
                result = Denial(exc.sqlstate, str(exc), hint=exc.hint)
        cacheable = cacheable and translator.volatile == volatile
        if isinstance(result, Denial):
            actions.append(Action(index, start, end, denial=result))
        else:
            actions.append(Action(index, start, end, sql=sent, tag=tag))
            cacheable = cacheable and keep
    if case_after is not None or long_names:
        return Plan(tuple(actions), cacheable, rewritten, case_after, long_names=frozenset(long_names))
    return Plan(tuple(actions), cacheable, rewritten) if actions or rewritten else PASS


def _numbers_apart(original: str, translator: Translator, standard_strings: bool, user: str | None) -> Plan:
    """The plan for the client's SQL with each number run into a name read apart, as Redshift
    reads it (tokens.separate_numbers): that SQL is what is judged and what is sent."""
    separated = separate_numbers(original, standard_strings)
    plan = _classify_text(separated.encode(), translator, standard_strings, user, apart=True)
    return plan if plan.text is not None else replace(plan, text=separated)


def as_printed(sql: str) -> str:
    """SQL the proxy wrote, as it is sent: read as it was written (pglast's printer, RawStream,
    writes its constants for standard_conforming_strings on: '\\' is one backslash) and
    written to read the same whatever standard_conforming_strings and the client encoding say.
    Without this a Redshift session (standard_conforming_strings off) would read a printed
    '\\' as the start of a constant that ends elsewhere."""
    if sql.isascii() and "\\" not in sql:
        return sql
    return as_ascii(as_read(sql, True))


def _refused(denial: Denial) -> Plan:
    """The whole message refused: none of its text is sent (it may be unreadable)."""
    return Plan((Action(0, 0, 0, denial=denial),), text="")


def _invalid_utf8(sql: bytes, at: int) -> str:
    """PostgreSQL's message for invalid UTF-8 (report_invalid_encoding): the bytes of the
    sequence the lead byte announces, as far as there are any."""
    lead = sql[at]
    length = 2 if lead & 0xE0 == 0xC0 else 3 if lead & 0xF0 == 0xE0 else 4 if lead & 0xF8 == 0xF0 else 1
    shown = " ".join(f"0x{byte:02x}" for byte in sql[at:at + length])
    return f'invalid byte sequence for encoding "UTF8": {shown}'


# A statement handler's answer: None (forward unchanged), a Denial, or (replacement SQL,
# command tag or None, whether the replacement may be cached).
Result = Denial | tuple[str, bytes | None, bool] | None


def classify_statement(statement: str, translator: Translator, standard_strings: bool = True,
                       user: str | None = None, long_names: set[str] | None = None) -> Result:
    """Redshift's names first (quoted names folded unless enable_case_sensitive_identifier is
    on, names of 64 to 127 bytes written as their short names and added to long_names, longer
    ones refused: policy/identifiers.py), then Redshift's dialect (so the decisions below see
    what will execute), then the rules.
    standard_strings: the session's standard_conforming_strings (statement itself is written to
    read the same under either; a string value read as SQL, UNLOAD's query, is not)."""
    if translator.dialect:
        try:
            folded = identifiers.as_redshift_reads(statement, translator.identifier_case, long_names)
        except GrammarError as exc:
            return Denial(exc.sqlstate, str(exc), hint=exc.hint)
        if folded is not None:
            result = _classify_redshift(folded, translator, standard_strings, user,
                                        frozenset(long_names) if long_names else frozenset())
            return (folded, None, True) if result is None else result
    return _classify_redshift(statement, translator, standard_strings, user)


def _classify_redshift(statement: str, translator: Translator, standard_strings: bool, user: str | None,
                       long_names: frozenset[str] = frozenset()) -> Result:
    if statement[:6].lower() == "vacuum":  # a shortcut only: the grammar is in privileges.vacuum_call
        try:
            vacuum = privileges.vacuum_call(scan(statement))
        except GrammarError as exc:
            return Denial(exc.sqlstate, str(exc), hint=exc.hint)
        if vacuum is not None:
            return vacuum
    s3_result = _s3_statement(statement, translator, standard_strings, user)
    if s3_result is not None:
        return s3_result
    idp_result = _identity_provider_statement(statement, translator)
    if idp_result is not None:
        return idp_result
    if translator.dialect:
        try:
            rewritten = dialect.rewrite(statement)
        except GrammarError as exc:
            return Denial(exc.sqlstate, str(exc), hint=exc.hint)
        if rewritten is not None:
            return _dialect_result(rewritten, translator)
    return _classify(statement, translator, long_names)


def _dialect_result(rewritten: dialect.Rewritten, translator: Translator) -> Result:
    table = rewritten.table
    if rewritten.refresh is not None:
        # Command tags of the materialized-view statements: UNVERIFIED (Redshift does not
        # document them); these name the statement, as PostgreSQL's REFRESH does.
        return (f"CALL shiftguard.refresh_materialized_view({sql_literal(rewritten.refresh)}, {CALLER_SEARCH_PATH})",
                b"REFRESH MATERIALIZED VIEW", True)
    if rewritten.view_comment is not None:
        view, comment = rewritten.view_comment
        return (f"CALL shiftguard.comment_on_view({sql_literal(view)}, "
                f"{'NULL' if comment is None else sql_literal(comment)}, {CALLER_SEARCH_PATH})", b"COMMENT", True)
    if rewritten.alter_only:
        attrs = json.dumps(table.as_dict(), separators=(",", ":"))
        procedure, tag = ("alter_materialized_view", b"ALTER MATERIALIZED VIEW") if rewritten.materialized_view \
            else ("alter_table_attributes", b"ALTER TABLE")
        return (f"CALL shiftguard.{procedure}({sql_literal(table.table)}, "
                f"{sql_literal(attrs)}::pg_catalog.jsonb, {CALLER_SEARCH_PATH})", tag, True)
    inner = _classify(rewritten.sql, translator)
    if isinstance(inner, Denial):
        return inner
    if rewritten.materialized_view is not None:
        creating = inner[0] if inner is not None else rewritten.sql  # the view as judged
        attrs = json.dumps(table.as_dict(), separators=(",", ":"))
        return (f"CALL shiftguard.create_materialized_view({sql_literal(creating)}, {sql_literal(table.table)}, "
                f"{sql_literal(attrs)}::pg_catalog.jsonb, {sql_literal(rewritten.materialized_view)}, "
                f"{CALLER_SEARCH_PATH})", b"CREATE MATERIALIZED VIEW", True)
    if table is not None:
        # What creates the table: the PostgreSQL DDL, or the call that runs it with CREATE lent
        # (the CREATE TABLE permission, privileges.lend_call); then its attributes are recorded.
        creating = inner[0] if inner is not None else rewritten.sql
        attrs = json.dumps(table.as_dict(), separators=(",", ":"))
        return (f"CALL shiftguard.create_table({sql_literal(creating)}, {sql_literal(table.table)}, "
                f"{sql_literal(attrs)}::pg_catalog.jsonb, {CALLER_SEARCH_PATH})", b"CREATE TABLE", True)
    if rewritten.late_view is not None:
        creating = inner[0] if inner is not None else rewritten.sql  # the view as judged
        query, empty = _late_binding_parts(creating, translator)
        return (f"CALL shiftguard.create_late_binding_view({sql_literal(creating)}, "
                f"{sql_literal(rewritten.late_view)}, {'NULL' if query is None else sql_literal(query)}, "
                f"{'NULL' if empty is None else sql_literal(empty)}, {CALLER_SEARCH_PATH})", b"CREATE VIEW", True)
    if rewritten.database is not None:
        running = inner[0] if inner is not None else rewritten.sql  # the statement as judged
        return (f"CALL shiftguard.in_database({sql_literal(rewritten.database)}, {sql_literal(running)}, "
                f"{CALLER_SEARCH_PATH})", rewritten.tag, True)
    if inner is not None:
        return inner[0], inner[1], inner[2]
    return rewritten.sql, rewritten.tag, True


def _late_binding_parts(creating: str, translator: Translator) -> tuple[str, str] | tuple[None, None]:
    """For CREATE VIEW ... WITH NO SCHEMA BINDING as judged (creating: the view's statement, or the
    call that runs it with CREATE lent, privileges.lend_call): its query alone, which a view made
    before its tables exist runs once they do, and the statement, judged alike, that makes that
    view with no columns meanwhile. (None, None) for a view with a column list (whose names the
    query alone would lose)."""
    view = _statement_of(creating)
    if isinstance(view, pglast.ast.CallStmt) and [n.sval for n in view.funccall.funcname] == ["shiftguard", "create_lent"]:
        view = _statement_of(json.loads(view.funccall.args[0].val.sval)["statement"])
    if not isinstance(view, pglast.ast.ViewStmt) or view.aliases:
        return None, None
    query = printed(view.query)
    view.query = _statement_of("SELECT WHERE false")
    empty = printed(view)
    judged = _classify(empty, translator)
    if isinstance(judged, Denial):
        return None, None
    return query, judged[0] if judged is not None else empty


def _statement_of(sql: str):
    try:
        return parser.parse_sql(sql)[0].stmt
    except parser.ParseError:
        return None


def _classify(statement: str, translator: Translator, long_names: frozenset[str] = frozenset()) -> Result:
    try:
        tokens = scan(statement)
        words = [t.word for t in tokens[:2]]
        if words[1:2] == ["USER"] and words[0] in _USER_STATEMENTS:
            return _USER_STATEMENTS[words[0]](Cursor(tokens[2:]), translator, long_names)
        if words[1:2] == ["GROUP"] and words[0] in _GROUP_STATEMENTS:
            return _GROUP_STATEMENTS[words[0]](Cursor(tokens[2:]))
        if words[1:2] == ["ROLE"] and words[0] in _ROLE_STATEMENTS:
            return _ROLE_STATEMENTS[words[0]](Cursor(tokens[2:]))
        if words[:1] == ["CANCEL"]:
            return _cancel(Cursor(tokens[1:]))
        if words[1:2] == ["MASKING"] and words[0] in _MASKING_STATEMENTS and [t.word for t in tokens[2:3]] == ["POLICY"]:
            return _MASKING_STATEMENTS[words[0]](Cursor(tokens[3:]), statement, translator)
        if words[1:2] == ["RLS"] and words[0] in _RLS_STATEMENTS and [t.word for t in tokens[2:3]] == ["POLICY"]:
            return _RLS_STATEMENTS[words[0]](Cursor(tokens[3:]), statement, translator)
        if words == ["ALTER", "TABLE"]:
            table_rls = rls.parse_table_rls(Cursor(tokens[2:]))
            if table_rls is not None:
                table, enabled, conjunction = table_rls
                return (f"CALL shiftguard.set_table_rls({sql_literal(table)}::regclass, {str(enabled).lower()}, "
                        f"{sql_literal(conjunction) if conjunction else 'NULL'})", b"ALTER TABLE", True)
        if words in (["GRANT", "ROLE"], ["REVOKE", "ROLE"], ["REVOKE", "ADMIN"]):
            return _role_grant(Cursor(tokens[1:]), granting=words[0] == "GRANT")
        if words[:1] in (["GRANT"], ["REVOKE"]) and words[1:2] == ["ASSUMEROLE"]:
            return (*privileges.assumerole_call(privileges.parse_assumerole(Cursor(tokens[2:]), words[0] == "GRANT")),
                    True)
        if words[:1] in (["GRANT"], ["REVOKE"]):
            system = parse_system_grant(Cursor(tokens[1:]), granting=words[0] == "GRANT")
            if system is not None:
                procedure = "grant_system" if words[0] == "GRANT" else "revoke_system"
                return (f"CALL shiftguard.{procedure}({sql_literal(roles_json(system))}::jsonb)",
                        words[0].encode(), True)
        if words == ["ALTER", "DEFAULT"]:
            return _grant_to_groups(statement, b"ALTER DEFAULT PRIVILEGES", translator)
        if words[:1] in (["GRANT"], ["REVOKE"]):
            return _grant_to_groups(statement, words[0].encode(), translator)
    except GrammarError as exc:
        return Denial(exc.sqlstate, str(exc), hint=exc.hint)
    lowered = statement.lower()
    catalog_rewrite = None
    if any(name in lowered for name in CATALOG_VIEWS) or (translator.dialect and (
            any(name in lowered for name in DIALECT_CATALOGS) or "information_schema" in lowered)):
        catalog_rewrite = _point_at_catalog_views(statement, translator.dialect)
        if catalog_rewrite is not None:
            statement = catalog_rewrite[0]  # the rules below judge what will execute
    # A name holding non-ASCII characters arrives here as U&"..." (tokens.as_ascii), which the
    # byte prefilter cannot match: such statements are always looked at.
    if translator.masked.views and (masking.mentions(lowered.encode(), translator.masked) or "u&" in lowered):
        masked = masking.rewrite(statement, translator.masked)
        if masked is not None:
            statement = masked
            catalog_rewrite = (masked, None, True)
    try:
        (raw,) = json.loads(parser.parse_sql_json(statement))["stmts"]
    except parser.ParseError as exc:
        if "memory exhausted" in str(exc) or "stack depth" in str(exc):
            # Too deep for the parser the proxy reads with, which a backend with a larger stack
            # might still run: refused, never forwarded unread (fail closed).
            return Denial(sqlstate.STATEMENT_TOO_COMPLEX, "stack depth limit exceeded",
                          hint="The statement nests expressions too deeply for shiftguard to check it; "
                               "write it with fewer levels.")
        return None  # PostgreSQL refuses it with its own syntax error
    except ValueError:
        return None
    ((kind, node),) = raw["stmt"].items()
    try:
        result = _judge(kind, node, raw, statement, words, lowered, translator)
    except GrammarError as exc:
        return Denial(exc.sqlstate, str(exc), hint=exc.hint)
    return _marked(kind, node, statement, result if result is not None else catalog_rewrite)


def _judge(kind: str, node: dict, raw: dict, statement: str, words: list[str], lowered: str,
           translator: Translator) -> Result:
    """The rules for one parsed statement, in order."""
    if kind in ("AlterTableStmt", "CreateStmt", "CreateForeignTableStmt"):
        refusal = _inheritance(kind, node, translator)
        if refusal is not None:
            return refusal
    refusal = _row_code(kind, node, translator)
    if refusal is not None:
        return refusal
    result = privileges.permission_call(kind, node, statement)
    if result is None and kind == "ExplainStmt":
        result = _explain(node, statement, translator)
    elif result is None:
        handler = _AST_HANDLERS.get(kind)
        result = handler(node, words) if handler else None
    if result is None:
        result = _trusted_only(kind, node, statement)
    if result is None and translator.strict:
        result = _strict_refusal(kind, node)
    elif result is None and translator.dialect:
        result = _unsupported_column(kind, node, _PSEUDO_TYPES.__contains__)
    if result is None and kind in _SETS_IN_CLAUSES:  # a function's, role's or database's SET
        result = _client_encoding_set(raw)
    if result is None and ("set_config" in lowered or "u&" in lowered):  # U&"set\005fconfig"
        result = _set_config_refusal(raw)
    if result is None:  # the CREATE system permissions: last, after every refusal above
        result = privileges.lend_call(kind, node, statement, translator.sign)
    return result


# --------------------------------------------------------------------------- S3: COPY / UNLOAD
# One hook, apart from the rest: the grammar and the calls are in policy/s3.py. It runs before
# the dialect and before _copy, which refuses every other COPY naming a server file.


def _s3_statement(statement: str, translator: Translator, standard_strings: bool, user: str | None) -> Result:
    """COPY ... FROM 's3://...' or UNLOAD, or None for every other statement."""
    if not statement[:6].lower().startswith(("copy", "unload")):
        return None  # a shortcut only: anything that is not COPY or UNLOAD is judged below
    try:
        tokens = scan(statement)
        if not (s3.is_s3_copy(tokens) or s3.is_unload(tokens)):
            return None
        translator.volatile += 1  # refused or not, the answer holds for this time only
        return s3.plan(statement, tokens, translator.s3, translator.dialect,
                       lambda query: classify_statement(query, translator, standard_strings), standard_strings,
                       translator.s3_access, user)
    except GrammarError as exc:
        return Denial(exc.sqlstate, str(exc), hint=exc.hint)


# --------------------------------------------------------------------------- identity providers
# One hook, apart from the rest: the grammar is in policy/idp.py, the procedures in catalog/idp.sql.


def _identity_provider_statement(statement: str, translator: Translator) -> Result:
    """CREATE / ALTER / DROP IDENTITY PROVIDER, or None for every other statement. The secrets
    of PARAMETERS are sealed (policy/sealing.py): the CALL's text never holds them."""
    if "identity" not in statement.lower():
        return None  # a shortcut only: the words are checked below
    try:
        tokens = scan(statement)
        words = [t.word for t in tokens[:3]]
        if words[1:] != ["IDENTITY", "PROVIDER"] or words[0] not in ("CREATE", "ALTER", "DROP"):
            return None
        cursor = Cursor(tokens[3:])
        if words[0] == "DROP":
            name, cascade = idp.parse_drop(cursor)
            return (f"CALL shiftguard.drop_identity_provider({sql_literal(name)}, {str(cascade).lower()})",
                    b"DROP IDENTITY PROVIDER", True)
        spec = idp.parse_create(cursor) if words[0] == "CREATE" else idp.parse_alter(cursor)
        idp.seal_secrets(spec, translator.seal)
        procedure = "create_identity_provider" if words[0] == "CREATE" else "alter_identity_provider"
        # Not cacheable: a sealed secret is sealed anew each time (and the plan would keep it).
        return (f"CALL shiftguard.{procedure}({sql_literal(idp.as_json(spec))}::jsonb)",
                f"{words[0]} IDENTITY PROVIDER".encode(), False)
    except GrammarError as exc:
        return Denial(exc.sqlstate, str(exc), hint=exc.hint)


# --------------------------------------------------------------------------- helpers


# --------------------------------------------------------------------------- Redshift users


def _create_user(cursor: Cursor, translator: Translator, long_names: frozenset[str]) -> Result:
    name, spec = parse_create_user(cursor, long_names)
    options = spec.as_json(translator.backend_verifier, name, creating=True)
    return (f"CALL shiftguard.create_user({sql_literal(name)}, {sql_literal(options)}::jsonb)",
            b"CREATE USER", False)


def _alter_user(cursor: Cursor, translator: Translator, long_names: frozenset[str]) -> Result:
    name, spec = parse_alter_user(cursor, long_names)
    changes = spec.as_json(translator.backend_verifier, name, creating=False)
    return (f"CALL shiftguard.alter_user({sql_literal(name)}, {sql_literal(changes)}::jsonb)",
            b"ALTER USER", False)


def _drop_user(cursor: Cursor, translator: Translator, long_names: frozenset[str]) -> Result:
    names, missing_ok = parse_drop_user(cursor)
    array = ", ".join(sql_literal(n) for n in names)
    return (f"CALL shiftguard.drop_users(ARRAY[{array}]::text[], {'true' if missing_ok else 'false'})",
            b"DROP USER", True)


_USER_STATEMENTS = {"CREATE": _create_user, "ALTER": _alter_user, "DROP": _drop_user}


# --------------------------------------------------------------------------- Redshift groups


def _create_group(cursor: Cursor) -> Result:
    name, users = parse_create_group(cursor)
    array = ", ".join(sql_literal(u) for u in users)
    return (f"CALL shiftguard.create_group({sql_literal(name)}, ARRAY[{array}]::text[])", b"CREATE GROUP", True)


def _alter_group(cursor: Cursor) -> Result:
    name, change = parse_alter_group(cursor)
    return (f"CALL shiftguard.alter_group({sql_literal(name)}, {sql_literal(changes_json(change))}::jsonb)",
            b"ALTER GROUP", True)


def _drop_group(cursor: Cursor) -> Result:
    return (f"CALL shiftguard.drop_group({sql_literal(parse_drop_group(cursor))})", b"DROP GROUP", True)


_GROUP_STATEMENTS = {"CREATE": _create_group, "ALTER": _alter_group, "DROP": _drop_group}


def _grant_to_groups(statement: str, verb: bytes, translator: Translator) -> Result:
    try:
        rewritten, broken = rewrite_grant(statement, translator.sign)
    except parser.ParseError:
        return None  # PostgreSQL refuses it with its own error
    if broken is not None:
        return Denial(broken.sqlstate, str(broken), hint=broken.hint)
    if rewritten is None:
        return None
    return rewritten, (verb if rewritten.startswith("CALL ") else None), True


# --------------------------------------------------------------------------- catalog views


class _CatalogViews(visitors.Visitor):
    def __init__(self, dialect: bool):
        super().__init__()
        self.dialect = dialect
        self.names = set(CATALOG_VIEWS) | (set(DIALECT_CATALOGS) if dialect else set())

    def visit_RangeVar(self, parent, node):
        if self.dialect and node.schemaname == "information_schema" and node.relname in DIALECT_INFORMATION_SCHEMA:
            if node.alias is None:
                node.alias = pglast.ast.Alias(aliasname=node.relname)
            node.schemaname = PRIVATE_SCHEMA
            node.relname = DIALECT_INFORMATION_SCHEMA[node.relname]
        elif node.schemaname in (None, "pg_catalog") and node.relname in self.names:
            if node.alias is None:
                # Keep the name that column references use (pg_catalog.pg_class.relname too).
                node.alias = pglast.ast.Alias(aliasname=node.relname)
            node.schemaname = PRIVATE_SCHEMA
            node.relname = CATALOG_VIEWS.get(node.relname, node.relname)

    def visit_ColumnRef(self, parent, node):
        fields = node.fields or ()
        if len(fields) == 3 and getattr(fields[0], "sval", None) == "pg_catalog" \
                and getattr(fields[1], "sval", None) in self.names:
            node.fields = fields[1:]

    def visit_FuncCall(self, parent, node):
        """has_table_privilege(current_user, 'svv_table_info', 'SELECT') (dbt's docs generate asks
        before reading it): the name in the string is resolved as PostgreSQL resolves it, so it
        must name our view as a FROM clause would."""
        name = node.funcname[-1].sval if node.funcname else None
        args = node.args or ()
        if name in _TABLE_ARGUMENT and (len(node.funcname) == 1 or node.funcname[0].sval == "pg_catalog"):
            position = _TABLE_ARGUMENT[name].get(len(args))
            if position is not None:
                self._name_in_string(args[position])

    def _name_in_string(self, node):
        if not (isinstance(node, pglast.ast.A_Const) and isinstance(node.val, pglast.ast.String)) or '"' in node.val.sval:
            return
        schema, _, relname = node.val.sval.lower().rpartition(".")
        if schema in ("", "pg_catalog") and relname in CATALOG_VIEWS:
            node.val.sval = f"{PRIVATE_SCHEMA}.{CATALOG_VIEWS[relname]}"


# The functions that take a relation's name as text, and where (by argument count).
_TABLE_ARGUMENT = {"has_table_privilege": {2: 0, 3: 1}, "has_any_column_privilege": {2: 0, 3: 1},
                   "has_column_privilege": {3: 0, 4: 1}, "to_regclass": {1: 0}}


def _is_catalog_relation(schema: str | None, name: str) -> bool:
    """Whether a relation is a system table or view (Redshift runs such queries on its leader node)."""
    return schema in ("pg_catalog", "information_schema", PRIVATE_SCHEMA, PRIVATE_ROWS_SCHEMA) or (
        schema is None and name.startswith(("pg_", "svv_", "stl_", "svl_", "sys_", "stv_")))


class _UserTables(visitors.Visitor):
    """Finds whether a parse tree reads any relation outside the catalogs."""

    def __init__(self):
        super().__init__()
        self.found = False

    def visit_RangeVar(self, parent, node):
        if not _is_catalog_relation(node.schemaname, node.relname):
            self.found = True


class _LateralAliases(visitors.Visitor):
    """Redshift lets WHERE name an output column alias of the same SELECT (sqlalchemy-redshift's
    reflection does: WHERE ... AND schema = 'public'). Applied to catalog-only queries, where an
    alias is never a different column of the same name."""

    def visit_SelectStmt(self, parent, node):
        if node.whereClause is None or not node.targetList:
            return None
        aliases = {t.name: t.val for t in node.targetList if getattr(t, "name", None)}
        if aliases:
            node.whereClause = _Substitute(aliases)(node.whereClause)
        return None


class _Substitute(visitors.Visitor):
    def __init__(self, aliases: dict):
        super().__init__()
        self.aliases = aliases

    def visit_ColumnRef(self, parent, node):
        fields = node.fields or ()
        if len(fields) == 1 and getattr(fields[0], "sval", None) in self.aliases:
            return self.aliases[fields[0].sval]
        return None

    def visit_SelectStmt(self, parent, node):
        return visitors.Skip  # a subquery's names are its own


def _point_at_catalog_views(statement: str, dialect: bool = False) -> Result:
    """Redshift's pg_user & co. read from the private schema's views (same columns as Redshift)."""
    try:
        tree = parse_tree(statement)
    except parser.ParseError:
        return None
    before = printed(tree)
    _CatalogViews(dialect)(tree)
    if dialect:
        user_tables = _UserTables()
        user_tables(tree)
        if not user_tables.found:
            _LateralAliases()(tree)
    after = printed(tree)
    return None if after == before else (after, None, True)


# --------------------------------------------------------------------------- Redshift roles


def _create_rbac_role(cursor: Cursor) -> Result:
    name, external_id = parse_create_role(cursor)
    return (f"CALL shiftguard.create_role({sql_literal(name)}, "
            f"{sql_literal(external_id) if external_id is not None else 'NULL'})", b"CREATE ROLE", True)


def _alter_rbac_role(cursor: Cursor) -> Result:
    name, changes = parse_alter_role(cursor)
    return (f"CALL shiftguard.alter_role({sql_literal(name)}, {sql_literal(roles_json(changes))}::jsonb)",
            b"ALTER ROLE", True)


def _drop_rbac_role(cursor: Cursor) -> Result:
    name, force = parse_drop_role(cursor)
    return (f"CALL shiftguard.drop_role({sql_literal(name)}, {'true' if force else 'false'})", b"DROP ROLE", True)


_ROLE_STATEMENTS = {"CREATE": _create_rbac_role, "ALTER": _alter_rbac_role, "DROP": _drop_rbac_role}


def _role_grant(cursor: Cursor, granting: bool) -> Result:
    grant = parse_role_grant(cursor, granting)
    procedure = "grant_roles" if granting else "revoke_roles"
    return (f"CALL shiftguard.{procedure}({sql_literal(roles_json(grant))}::jsonb)",
            b"GRANT" if granting else b"REVOKE", True)


# --------------------------------------------------------------------------- RLS policies

# Command tags: UNVERIFIED (Redshift's are not documented); these name the statement.
def _create_rls(cursor: Cursor, statement: str, translator: Translator) -> Result:
    return _signed_rls_call("create_rls_policy", rls.parse_create(cursor, statement), translator,
                            b"CREATE RLS POLICY")


def _alter_rls(cursor: Cursor, statement: str, translator: Translator) -> Result:
    return _signed_rls_call("alter_rls_policy", rls.parse_alter(cursor, statement), translator,
                            b"ALTER RLS POLICY")


def _signed_rls_call(procedure: str, policy: dict, translator: Translator, tag: bytes) -> Result:
    """The policy's SQL comes from PostgreSQL's parser, printed back; signed so that the
    procedure takes no other (catalog/rls.sql)."""
    payload = roles_json(policy)
    return (f"CALL shiftguard.{procedure}({sql_literal(payload)}, {sql_literal(translator.sign('rls', payload))}, "
            f"{CALLER_SEARCH_PATH})", tag, True)


def _drop_rls(cursor: Cursor, statement: str, translator: Translator) -> Result:
    name, missing_ok, cascade = rls.parse_drop(cursor)
    return (f"CALL shiftguard.drop_rls_policy({sql_literal(name)}, {str(missing_ok).lower()}, "
            f"{str(cascade).lower()})", b"DROP RLS POLICY", True)


def _attach_rls(cursor: Cursor, statement: str, translator: Translator, attaching: bool = True) -> Result:
    name, tables, grantees = rls.parse_attach(cursor, attaching)
    relations = ", ".join(f"{sql_literal(t)}::regclass" for t in tables)
    return (f"CALL shiftguard.attach_rls_policy({sql_literal(name)}, ARRAY[{relations}]::oid[], "
            f"{sql_literal(roles_json(grantees))}::jsonb, {str(attaching).lower()})",
            b"ATTACH RLS POLICY" if attaching else b"DETACH RLS POLICY", True)


_RLS_STATEMENTS = {"CREATE": _create_rls, "ALTER": _alter_rls, "DROP": _drop_rls, "ATTACH": _attach_rls,
                   "DETACH": lambda cursor, statement, translator: _attach_rls(cursor, statement, translator,
                                                                                 attaching=False)}

def _cancel(cursor: Cursor) -> Result:
    """CANCEL process_id ['message'] (Redshift's; PostgreSQL has pg_cancel_backend)."""
    pid = cursor.integer("process id")
    message = cursor.string("message") if not cursor.at_end() else None
    cursor.end()
    return (f"CALL shiftguard.cancel({pid}, {sql_literal(message) if message is not None else 'NULL'})",
            b"CANCEL", True)


def _create_masking(cursor: Cursor, statement: str, translator: Translator) -> Result:
    return _signed_masking_call(masking.parse_create(cursor, statement), translator, b"CREATE MASKING POLICY")


def _alter_masking(cursor: Cursor, statement: str, translator: Translator) -> Result:
    return _signed_masking_call(masking.parse_alter(cursor, statement), translator, b"ALTER MASKING POLICY")


def _signed_masking_call(policy: dict, translator: Translator, tag: bytes) -> Result:
    payload = roles_json(policy)
    return (f"CALL shiftguard.create_masking_policy({sql_literal(payload)}, "
            f"{sql_literal(translator.sign('masking', payload))}, {CALLER_SEARCH_PATH})",
            tag, True)


def _drop_masking(cursor: Cursor, statement: str, translator: Translator) -> Result:
    name, missing_ok = masking.parse_drop(cursor)
    return (f"CALL shiftguard.drop_masking_policy({sql_literal(name)}, {str(missing_ok).lower()})",
            b"DROP MASKING POLICY", True)


def _attach_masking(cursor: Cursor, statement: str, translator: Translator, attaching: bool = True) -> Result:
    spec, table = masking.parse_attach(cursor, attaching)
    return (f"CALL shiftguard.attach_masking_policy({sql_literal(roles_json(spec))}::jsonb, "
            f"{sql_literal(table)}::regclass)", b"ATTACH MASKING POLICY" if attaching else b"DETACH MASKING POLICY",
            True)


_MASKING_STATEMENTS = {
    "CREATE": _create_masking, "ALTER": _alter_masking, "DROP": _drop_masking, "ATTACH": _attach_masking,
    "DETACH": lambda cursor, statement, translator: _attach_masking(cursor, statement, translator, attaching=False)}

# The command tags of the statements above that may change which tables are masked or have RLS
# on (Translator.masked), and of ALTER TABLE and DROP TABLE as the proxy rewrites them (ROW LEVEL
# SECURITY, a protected table's RENAME or DROP): the relay has the proxy read that state again
# before the client learns that such a statement's transaction ended (relay._ready_held).
PROTECTION_TAGS = frozenset(
    [f"{verb} {kind} POLICY".encode() for verb in _MASKING_STATEMENTS for kind in ("MASKING", "RLS")]
    + [b"ALTER TABLE", b"DROP TABLE"])

_ROW_SECURITY_COMMANDS = ("AT_EnableRowSecurity", "AT_DisableRowSecurity", "AT_ForceRowSecurity",
                          "AT_NoForceRowSecurity")


def _alter_table(node: dict, words: list[str]) -> Result:
    for command in node.get("cmds", ()):
        if command.get("AlterTableCmd", {}).get("subtype") in _ROW_SECURITY_COMMANDS:
            return _escape("PostgreSQL's ALTER TABLE ... ROW LEVEL SECURITY (use ALTER TABLE t ROW LEVEL "
                           "SECURITY ON | OFF)")
    return None


_INHERITANCE_COMMANDS = ("AT_AddInherit", "AT_DropInherit", "AT_AttachPartition", "AT_DetachPartition",
                         "AT_DetachPartitionFinalize")


def _inheritance(kind: str, node: dict, translator: Translator) -> Denial | None:
    """INHERIT, NO INHERIT, ATTACH / DETACH PARTITION and CREATE TABLE ... INHERITS | PARTITION OF
    naming a table with Redshift RLS on or masking attached, as parent or as child: refused.
    PostgreSQL applies the row security of the table a query names, so rows read through a
    parent escape the child's policies (and masking), and a partition read directly escapes
    the parent's. Unqualified names are looked up in public, as the masking rewrite does; the
    event trigger shiftguard.guard_inheritance (catalog/rls.sql) holds wherever this misses
    (another schema on the search_path, DO blocks, function bodies)."""
    named = []
    if kind in ("CreateStmt", "CreateForeignTableStmt"):
        base = node.get("base", node)  # the new table itself has no protection yet
        named = [item["RangeVar"] for item in base.get("inhRelations") or () if "RangeVar" in item]
    elif node.get("objtype") in ("OBJECT_TABLE", "OBJECT_FOREIGN_TABLE"):
        for command in node.get("cmds", ()):
            command = command.get("AlterTableCmd", {})
            if command.get("subtype") not in _INHERITANCE_COMMANDS:
                continue
            other = command.get("def", {})
            named += [node["relation"], other["PartitionCmd"]["name"] if "PartitionCmd" in other
                      else other.get("RangeVar", {})]
    for relation in named:
        if not relation.get("relname"):
            continue
        protection = translator.masked.protection(relation.get("schemaname"), relation["relname"])
        if protection is not None:
            return Denial(sqlstate.FEATURE_NOT_SUPPORTED,
                          f'table "{relation["relname"]}" has {protection}: it cannot take part in table '
                          "inheritance or partitioning",
                          detail="Rows read through a parent table, or a partition read directly, would escape its "
                                 "row-level security and masking.",
                          hint="Amazon Redshift has no table inheritance or partitioning.")
    return None


# --------------------------------------------------------------------------- code over protected rows

# PostgreSQL applies row security to queries, not to what it evaluates over a table's rows by
# itself: index expressions and predicates over every row when the index is built, CHECK,
# foreign key and exclusion constraints when they are validated, triggers and rules on the rows
# other users write (catalog/row_code.sql says all of it). A function of the table's owner there
# sees the rows RLS hides from the owner and the raw values of columns masked for it. Amazon
# Redshift has none of these features; on a table with RLS on or masking attached they are
# refused. Here for the statements the proxy sees, with a clear error; the backend's guards hold
# wherever this misses (a name on another schema of the search_path, a list of protected tables
# a moment old, DO blocks and function bodies).

# Marks on each ALTER TABLE and CREATE INDEX forwarded: whether PostgreSQL will evaluate anything
# over a table's rows while it runs (then the backend holds protected tables off, whatever this
# found). The backend believes the first only at the top level, in a message without the second,
# and the proxy refuses client SQL holding it (classify).
NO_ROW_CODE_MARK_WORD = "shiftguard:no-row-code"
NO_ROW_CODE_MARK = f"/*{NO_ROW_CODE_MARK_WORD}*/"
ROW_CODE_MARK = "/*shiftguard:row-code*/"

_TRIGGER_SWITCHES = ("AT_EnableTrig", "AT_EnableAlwaysTrig", "AT_EnableReplicaTrig", "AT_DisableTrig",
                     "AT_EnableTrigAll", "AT_DisableTrigAll", "AT_EnableTrigUser", "AT_DisableTrigUser",
                     "AT_EnableRule", "AT_EnableAlwaysRule", "AT_EnableReplicaRule", "AT_DisableRule")
_VALIDATED = {"CONSTR_CHECK": "CHECK constraints", "CONSTR_EXCLUSION": "exclusion constraints",
              "CONSTR_FOREIGN": "foreign keys, to or from it"}


def _row_code_uses(kind: str, node: dict) -> list[tuple[dict, str, bool]]:
    """(a relation the statement names, what it would give that relation, whether PostgreSQL
    evaluates it over the relation's rows while the statement runs)."""
    uses = []
    if kind == "IndexStmt":
        if node.get("whereClause") or any(elem.get("IndexElem", {}).get("expr") for elem in node.get("indexParams", ())):
            uses.append((node["relation"], "indexes on expressions or with a WHERE clause", True))
    elif kind == "CreateTrigStmt":
        uses.append((node["relation"], "triggers", False))
    elif kind == "RuleStmt":
        uses.append((node["relation"], "rules", False))
    elif kind == "CreateStatsStmt" and any(elem.get("StatsElem", {}).get("expr") for elem in node.get("exprs", ())):
        uses += [(item["RangeVar"], "statistics on expressions", False)
                 for item in node.get("relations", ()) if "RangeVar" in item]
    elif kind == "CreateStmt":
        constraints = [item["Constraint"] for item in node.get("tableElts", ()) if "Constraint" in item]
        for item in node.get("tableElts", ()):
            constraints += [c["Constraint"] for c in item.get("ColumnDef", {}).get("constraints", ())]
        uses += [(c["pktable"], _VALIDATED["CONSTR_FOREIGN"], False)
                 for c in constraints if c.get("contype") == "CONSTR_FOREIGN" and c.get("pktable")]
    elif kind == "AlterTableStmt" and node.get("objtype") == "OBJECT_TABLE":
        relation = node["relation"]
        for command in node.get("cmds", ()):
            command = command.get("AlterTableCmd", {})
            subtype, definition = command.get("subtype"), command.get("def", {})
            constraints = []
            if subtype == "AT_AddConstraint" and "Constraint" in definition:
                constraints = [definition["Constraint"]]
            elif subtype == "AT_AddColumn":
                constraints = [c["Constraint"] for c in definition.get("ColumnDef", {}).get("constraints", ())]
            for constraint in constraints:
                contype = constraint.get("contype")
                if contype in _VALIDATED:
                    uses.append((relation, _VALIDATED[contype], True))
                    if constraint.get("pktable"):
                        uses.append((constraint["pktable"], _VALIDATED[contype], True))
                elif contype == "CONSTR_GENERATED":
                    uses.append((relation, "generated columns", False))
            if subtype == "AT_ValidateConstraint":
                uses.append((relation, "constraints to validate", True))
            elif subtype == "AT_AttachPartition":
                uses.append((definition.get("PartitionCmd", {}).get("name", {}), "partitions", True))
            elif subtype == "AT_AlterColumnType" and definition.get("ColumnDef", {}).get("raw_default"):
                uses.append((relation, "a column's type changed USING an expression", False))
            elif subtype == "AT_SetExpression":
                uses.append((relation, "generated columns", False))
            elif subtype in _TRIGGER_SWITCHES:
                uses.append((relation, "triggers or rules enabled or disabled", False))
    return uses


def _row_code(kind: str, node: dict, translator: Translator) -> Denial | None:
    """What would make PostgreSQL run code over the rows of a table with Redshift RLS on or
    masking attached: refused. Unqualified names are looked up in public, as the masking
    rewrite does (the backend decides exactly)."""
    for relation, what, _ in _row_code_uses(kind, node):
        if not relation.get("relname"):
            continue
        protection = translator.masked.protection(relation.get("schemaname"), relation["relname"])
        if protection is not None:
            return Denial(sqlstate.FEATURE_NOT_SUPPORTED,
                          f'table "{relation["relname"]}" has {protection}: it cannot have {what}',
                          detail="PostgreSQL would run them over every row of the table, or over the rows other "
                                 "users write, whatever row-level security and masking hide from their owner.",
                          hint="Amazon Redshift has no triggers, rules, CHECK or foreign key constraints (enforced), "
                               "indexes, generated columns or user-defined types.")
    return None


def _marked(kind: str, node: dict, statement: str, result: Result) -> Result:
    """An ALTER TABLE or CREATE INDEX forwarded as PostgreSQL's own, with its mark (above)."""
    if not (kind in ("IndexStmt", "RenameStmt", "AlterObjectSchemaStmt")
            or (kind == "AlterTableStmt" and node.get("objtype") == "OBJECT_TABLE")):
        return result
    if isinstance(result, Denial) or (result is not None and result[1] is not None):
        return result  # refused, or a call of ours
    sql, keep = (statement, True) if result is None else (result[0], result[2])
    evaluates = any(during for _, _, during in _row_code_uses(kind, node))
    return f"{ROW_CODE_MARK if evaluates else NO_ROW_CODE_MARK} {sql}", None, keep


# --------------------------------------------------------------------------- EXPLAIN

_EXPLAIN_PARAMETERS_CTE = '"shiftguard explain parameters"'


def _explain(node: dict, statement: str, translator: Translator) -> Result:
    """EXPLAIN [VERBOSE] query and EXPLAIN (options) query become a call of shiftguard.explain
    (catalog/explain.sql), which shows RLS SecureScan nodes and hides policy and masking
    expressions from users lacking EXPLAIN RLS / EXPLAIN MASKING, as Redshift does. Same result
    column ("QUERY PLAN", text) and command tag as PostgreSQL's EXPLAIN.

    Parameters ($1, ...; extended protocol only) are passed along as text with their types
    (pg_typeof) and explained as EXECUTE of a prepared statement with those values, the custom
    plan PostgreSQL's own EXPLAIN would show. For a SELECT, the query is also written as an
    unreferenced WITH query (parsed, never planned or run), so PostgreSQL infers the
    parameters' types from it exactly as for the EXPLAIN itself, and clients that let the
    server type them (asyncpg) bind the same types. Other statements (EXPLAIN INSERT / UPDATE /
    DELETE with parameters) cannot be written that way, since a data-modifying WITH query runs:
    their parameters are typed as the client declares them in Parse, and as text when it does
    not."""
    options = {}
    for option in node.get("options", ()):
        elem = option["DefElem"]
        name = elem["defname"]
        if name == "analyze":
            # Redshift's EXPLAIN has no ANALYZE; PostgreSQL's would count the rows that row-level
            # security hides ("Rows Removed by Filter").
            return _escape("EXPLAIN ANALYZE")
        options[name] = _option_value(elem.get("arg"))
    if translator.strict:
        refusal = _strict_refusal("ExplainStmt", node)
        if refusal is not None:
            return refusal
    query = _explained_query(statement)
    if query is None:  # fail closed: PostgreSQL's EXPLAIN would show what this hides
        return Denial(sqlstate.INTERNAL_ERROR, "shiftguard could not read this EXPLAIN statement",
                      hint="This is a bug in shiftguard; the statement was not run.")
    arguments = (f"{sql_literal(query)}, {sql_literal(json.dumps(options, sort_keys=True))}::pg_catalog.jsonb, "
                 f"{CALLER_SEARCH_PATH}")
    prefix = ""
    count = _parameter_count(node.get("query"))
    if count:
        numbers = range(1, count + 1)
        arguments += (f", ARRAY[{', '.join(f'${n}::pg_catalog.text' for n in numbers)}]::pg_catalog.text[]"
                      f", ARRAY[{', '.join(f'pg_catalog.pg_typeof(${n})' for n in numbers)}]::pg_catalog.regtype[]")
        if "SelectStmt" in node.get("query", {}):
            prefix = f"WITH {_EXPLAIN_PARAMETERS_CTE} AS ({query}\n) "
    return f'{prefix}SELECT "QUERY PLAN" FROM shiftguard.explain({arguments})', b"EXPLAIN", True


def _option_value(arg: dict | None) -> str:
    """An EXPLAIN option's value as text (EXPLAIN VERBOSE, (VERBOSE): true)."""
    if arg is None:
        return "true"
    ((kind, value),) = arg.items()
    if kind == "String":
        return value.get("sval", "")
    if kind == "Integer":
        return str(value.get("ival", 0))
    if kind == "Float":
        return value.get("fval", "0")
    if kind == "Boolean":
        return "true" if value.get("boolval") else "false"
    raise GrammarError("unrecognized EXPLAIN option value")


def _explained_query(statement: str) -> str | None:
    """The text after EXPLAIN and its options: ( ... ) or the old keywords ANALYZE and VERBOSE."""
    tokens = scan(statement)
    if not tokens or tokens[0].word != "EXPLAIN":
        return None
    index = 1
    if index < len(tokens) and tokens[index].text == "(":
        depth = 0
        while index < len(tokens):
            depth += {"(": 1, ")": -1}.get(tokens[index].text, 0)
            index += 1
            if depth == 0:
                break
    else:
        while index < len(tokens) and tokens[index].word in ("ANALYZE", "ANALYSE", "VERBOSE"):
            index += 1
    if index >= len(tokens):
        return None
    return statement[tokens[index].start:].rstrip().rstrip(";")


def _parameter_count(tree) -> int:
    """The highest $n in a parse tree (0: none)."""
    return max((node["ParamRef"].get("number", 0) for node in _nodes(tree) if "ParamRef" in node), default=0)


def _nodes(tree):
    """Every node (dict) of a parse tree as pglast's JSON, depth first."""
    stack = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            yield node
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)


def _drop(node: dict, words: list[str]) -> Result:
    if node.get("removeType") == "OBJECT_POLICY":
        return _escape("PostgreSQL's DROP POLICY (use DROP RLS POLICY)")
    call = privileges.drop_call(node)  # Redshift's DROP privilege and DROP system permissions
    return (call[0], call[1], True) if call else None


def _rename(node: dict, words: list[str]) -> Result:
    call = privileges.rename_call(node)  # Redshift's ALTER privilege and ALTER TABLE permission
    return (call[0], call[1], True) if call else None


# --------------------------------------------------------------------------- escapes

# PostgreSQL features that would let a session escape the model (change who it is, reach the
# server's files or programs, load code, or set policies the proxy does not know), refused for
# everyone (DESIGN principle 2). Redshift has none of them.
_UNTRUSTED_LANGUAGES = frozenset({"c", "internal", "plpythonu", "plpython2u", "plpython3u", "plperlu",
                                  "pltclu", "plsh", "plv8u"})


def _escape(what: str) -> Denial:
    return Denial(sqlstate.FEATURE_NOT_SUPPORTED, f"{what} is not supported",
                  hint="Amazon Redshift has no such feature; shiftguard refuses it so that every "
                       "session stays the user it logged in as")


def _variable_set(node: dict, words: list[str]) -> Result:
    # SET ROLE / RESET ROLE / SET LOCAL role. SET SESSION AUTHORIZATION is Redshift's way for a
    # superuser to test access and PostgreSQL allows it to superusers only: it passes.
    if node.get("name") == "role":
        return _escape("SET ROLE")
    return _client_encoding_set({"VariableSetStmt": node})


# Statements whose clauses hold SET name = value (VariableSetStmt): CREATE / ALTER FUNCTION and
# PROCEDURE ... SET, ALTER ROLE | USER ... SET, ALTER DATABASE ... SET.
_SETS_IN_CLAUSES = frozenset(("CreateFunctionStmt", "AlterFunctionStmt", "AlterRoleSetStmt",
                              "AlterDatabaseSetStmt"))


def _client_encoding_set(tree) -> Result:
    """SET client_encoding, SET NAMES (and the same in a function's, role's or database's SET
    clause) to anything but UTF8, or FROM CURRENT (which could capture another). SET ... TO
    DEFAULT and RESET pass: they return to the session's startup value, which is UTF8
    (frontend/connection.py opens every backend session with client_encoding=UTF8)."""
    for node in _nodes(tree):
        # wrapped as a node, or bare where a field holds one (AlterRoleSetStmt's setstmt)
        setting = node.get("VariableSetStmt", node if str(node.get("kind", "")).startswith("VAR_") else None)
        if not isinstance(setting, dict) or str(setting.get("name", "")).lower() != "client_encoding":
            continue  # GUC names are case-insensitive; SET NAMES is client_encoding in the tree
        kind = setting.get("kind")
        if kind == "VAR_SET_VALUE":
            values = [_constant_text(arg) for arg in setting.get("args", ())]
            value = values[0] if len(values) == 1 else None
            if value is None or not encoding.is_utf8(value):
                return _encoding_refusal(value if len(values) == 1 else None)
        elif kind == "VAR_SET_CURRENT":
            return _encoding_refusal(None)
    return None


def _constant_text(node: dict) -> str | None:
    """A constant's text as SET reads it (SET x = sjis, = 'SJIS', = 932), or None."""
    const = node.get("A_Const", {})
    for key, field_name in (("sval", "sval"), ("ival", "ival"), ("fval", "fval")):
        if key in const:
            return str(const[key].get(field_name, 0 if key == "ival" else ""))
    return None


def _encoding_refusal(value: str | None) -> Denial:
    return Denial(sqlstate.FEATURE_NOT_SUPPORTED, encoding.refusal(value), hint=encoding.HINT)


def _copy(node: dict, words: list[str]) -> Result:
    if node.get("is_program"):
        return _escape("COPY ... PROGRAM")
    if node.get("filename"):
        return _escape("COPY to or from a file on the database server")
    return None


def _with_language(node: dict, key: str) -> Result:
    for option in node.get(key, ()):
        elem = option["DefElem"]
        if elem["defname"] == "language":
            language = elem.get("arg", {}).get("String", {}).get("sval", "").lower()
            if language in _UNTRUSTED_LANGUAGES:
                return _escape(f"the untrusted language {language}")
    return None


def _set_config_calls(tree):
    """Each set_config(setting, value, ...) call in the parse tree: (the setting's name, None
    when computed; its value as a constant's text, None when computed)."""
    for node in _nodes(tree):
        call = node.get("FuncCall")
        if call is not None:
            name = call.get("funcname", [])[-1:]
            if name and name[0].get("String", {}).get("sval") == "set_config":
                args = call.get("args") or []
                setting = args[0].get("A_Const", {}).get("sval", {}).get("sval") if args else None
                yield setting, _constant_text(args[1]) if len(args) > 1 else None


def _set_config_refusal(tree) -> Result:
    """set_config() on role or session_authorization (or on a name it computes, which could be
    either), or on client_encoding to anything but UTF8."""
    for setting, value in _set_config_calls(tree):
        if setting is None or setting.lower() in ("role", "session_authorization"):
            return _escape("set_config('role' | 'session_authorization', ...)")
        if setting.lower() == "client_encoding" and (value is None or not encoding.is_utf8(value)):
            return _encoding_refusal(value)
    return None


# Statements that change what everyone's SQL resolves to (an operator public.= (varchar,
# varchar) is preferred to the built-in text = text; a cast, a conversion or a text search
# object likewise), which Redshift does not have: only trusted roles (superusers) may, so they
# become a call that checks the caller (catalog/schema.sql shiftguard.trusted_ddl; an event
# trigger refuses them from function bodies and DO blocks too).
_TRUSTED_ONLY = {
    "CreateOpClassStmt": "CREATE OPERATOR CLASS", "CreateOpFamilyStmt": "CREATE OPERATOR FAMILY",
    "AlterOpFamilyStmt": "ALTER OPERATOR FAMILY", "AlterOperatorStmt": "ALTER OPERATOR",
    "CreateCastStmt": "CREATE CAST", "CreateConversionStmt": "CREATE CONVERSION",
    "AlterTSConfigurationStmt": "ALTER TEXT SEARCH CONFIGURATION",
    "AlterTSDictionaryStmt": "ALTER TEXT SEARCH DICTIONARY",
}
_TRUSTED_ONLY_DEFINITIONS = {
    "OBJECT_OPERATOR": "CREATE OPERATOR", "OBJECT_TSPARSER": "CREATE TEXT SEARCH PARSER",
    "OBJECT_TSDICTIONARY": "CREATE TEXT SEARCH DICTIONARY", "OBJECT_TSTEMPLATE": "CREATE TEXT SEARCH TEMPLATE",
    "OBJECT_TSCONFIGURATION": "CREATE TEXT SEARCH CONFIGURATION",
}


def _trusted_only(kind: str, node: dict, statement: str) -> Result:
    what = _TRUSTED_ONLY.get(kind) or (_TRUSTED_ONLY_DEFINITIONS.get(node.get("kind")) if kind == "DefineStmt" else None)
    if what is None:
        return None
    return (f"CALL shiftguard.trusted_ddl({sql_literal(what)}, {sql_literal(statement)}, {CALLER_SEARCH_PATH})",
            what.encode(), True)


# --------------------------------------------------------------------------- strict_redshift

# Statements Amazon Redshift does not have (reference §9). Its exact errors are UNVERIFIED;
# ours say what is refused and why, with SQLSTATE 0A000.
_NOT_IN_REDSHIFT = {
    "IndexStmt": "CREATE INDEX", "CreateSeqStmt": "CREATE SEQUENCE", "AlterSeqStmt": "ALTER SEQUENCE",
    "CreateTrigStmt": "CREATE TRIGGER", "CreateEventTrigStmt": "CREATE EVENT TRIGGER",
    "ListenStmt": "LISTEN", "NotifyStmt": "NOTIFY", "UnlistenStmt": "UNLISTEN",
    "CompositeTypeStmt": "CREATE TYPE", "CreateEnumStmt": "CREATE TYPE", "CreateRangeStmt": "CREATE TYPE",
    "CreateDomainStmt": "CREATE DOMAIN", "ReassignOwnedStmt": "REASSIGN OWNED", "DropOwnedStmt": "DROP OWNED",
    "ClusterStmt": "CLUSTER", "ReindexStmt": "REINDEX", "CheckPointStmt": "CHECKPOINT",
    "CreateTableSpaceStmt": "CREATE TABLESPACE", "CreateFdwStmt": "CREATE FOREIGN DATA WRAPPER",
    "CreateForeignServerStmt": "CREATE SERVER", "CreateForeignTableStmt": "CREATE FOREIGN TABLE",
    "CreateUserMappingStmt": "CREATE USER MAPPING", "CreatePublicationStmt": "CREATE PUBLICATION",
    "CreateSubscriptionStmt": "CREATE SUBSCRIPTION", "CreateStatsStmt": "CREATE STATISTICS",
    "RuleStmt": "CREATE RULE", "CreateConversionStmt": "CREATE CONVERSION", "CreateCastStmt": "CREATE CAST",
    "DefineStmt": "CREATE AGGREGATE / OPERATOR / TYPE", "CreateOpClassStmt": "CREATE OPERATOR CLASS",
}

# Expression and clause nodes for features Redshift lacks.
_NOT_IN_REDSHIFT_NODES = {
    "A_ArrayExpr": "array constructors", "CollateClause": "COLLATE", "PartitionSpec": "table partitioning",
}


# Amazon Redshift's column types (Database Developer Guide, "Data types"), by the name
# PostgreSQL's grammar gives each spelling: int is pg_catalog.int4, nchar is bpchar, &c.
# This sees the statement after dialect.py: where shiftguard's types are installed, VARBINARY
# and BINARY VARYING are varbyte here, INTERVAL YEAR TO MONTH and DAY TO SECOND intervaly2m and
# intervald2s; elsewhere INTERVAL counts only as those two (its range mask in the first typmod).
_REDSHIFT_COLUMN_TYPES = frozenset({
    "int2", "int4", "int8", "numeric", "float4", "float8", "bool", "bpchar", "varchar",
    "nvarchar", "text", "date", "timestamp", "timestamptz", "time", "timetz", "geometry",
    "geography", "hllsketch", "super", "varbyte", "varbinary", "intervaly2m", "intervald2s",
})
_INTERVAL_RANGES = {6, 7176}  # YEAR TO MONTH, DAY TO SECOND (INTERVAL_MASK in PostgreSQL's datetime.h)


# PostgreSQL's pseudo-types: no column can have one in PostgreSQL either, so without
# strict_redshift too they are refused in Redshift's words rather than PostgreSQL's ("column "a"
# has pseudo-type anyelement").
_PSEUDO_TYPES = frozenset({
    "any", "anyelement", "anyarray", "anynonarray", "anyenum", "anyrange", "anymultirange",
    "anycompatible", "anycompatiblearray", "anycompatiblenonarray", "anycompatiblerange",
    "anycompatiblemultirange", "cstring", "internal", "language_handler", "fdw_handler",
    "table_am_handler", "index_am_handler", "tsm_handler", "record", "trigger", "event_trigger",
    "pg_ddl_command", "void", "unknown",
})


def _unsupported_column(kind: str, node: dict, refused=None) -> Denial | None:
    """Redshift's refusal of a column whose type it does not have (bytea, json, uuid, serial,
    arrays, pseudo-types, ...; refused: only the type names it says), in its words: Column
    "t1.a" has unsupported type "bytea". The SQLSTATE is UNVERIFIED: 0A000, as for the other
    features Redshift lacks."""
    if kind == "CreateStmt":
        columns = [(item["ColumnDef"].get("colname", ""), item["ColumnDef"])
                   for item in node.get("tableElts", ()) if "ColumnDef" in item]
    elif kind == "AlterTableStmt":
        commands = [command.get("AlterTableCmd", {}) for command in node.get("cmds", ())]
        columns = [(command.get("name") or command["def"]["ColumnDef"].get("colname", ""), command["def"]["ColumnDef"])
                   for command in commands if command.get("subtype") in ("AT_AddColumn", "AT_AlterColumnType")
                   and "ColumnDef" in command.get("def", {})]
    else:
        return None
    for column_name, column in columns:
        type_name = column.get("typeName", {})
        names = [name["String"]["sval"] for name in type_name.get("names", ())]
        name = names[-1] if names and len(names) <= 2 and names[0] in (names[-1], "pg_catalog") else ".".join(names)
        if refused is not None:
            if not refused(name):
                continue
        elif name == "interval":
            mask = type_name.get("typmods", [{}])[0].get("A_Const", {}).get("ival", {}).get("ival")
            if mask in _INTERVAL_RANGES and not type_name.get("arrayBounds") and not type_name.get("setof"):
                continue
        elif name in _REDSHIFT_COLUMN_TYPES and not type_name.get("arrayBounds") and not type_name.get("setof"):
            continue
        shown = name + "[]" * len(type_name.get("arrayBounds", ()))
        return Denial(sqlstate.FEATURE_NOT_SUPPORTED,
                      f'Column "{node["relation"].get("relname", "")}.{column_name}" has unsupported type "{shown}".',
                      hint="Redshift would refuse it too" if refused is not None else
                      "shiftguard refuses it because strict_redshift is on; Redshift would refuse it too")
    return None


def _strict_refusal(kind: str, node: dict) -> Denial | None:
    refusal = _unsupported_column(kind, node)
    if refusal is not None:
        return refusal
    feature = _NOT_IN_REDSHIFT.get(kind)
    if feature is None and kind == "CreateStmt":
        if node.get("partspec"):
            feature = "table partitioning"
        elif node.get("inhRelations"):
            feature = "table inheritance (INHERITS)"
        elif node.get("tablespacename"):
            feature = "tablespaces"
    if feature is None and kind == "RefreshMatViewStmt" and (node.get("concurrent") or node.get("skipData")):
        feature = "REFRESH MATERIALIZED VIEW CONCURRENTLY or WITH NO DATA"
    elif feature is None and kind == "CreateTableAsStmt" and node.get("into", {}).get("skipData"):
        feature = "WITH NO DATA"
    if feature is None and _values_as_table(node):
        feature = "VALUES as a table"
    if feature is None and (kind in ("CreateStmt", "AlterTableStmt") or _touches_user_tables(node)):
        # Catalog-only queries run on Redshift's leader node, a PostgreSQL 8 that has arrays &c
        # (SQLAlchemy's reflection uses = ANY (ARRAY[...])); user tables do not.
        feature = _unsupported_node({kind: node})
    if feature is None:
        return None
    return Denial(sqlstate.FEATURE_NOT_SUPPORTED, f"Amazon Redshift does not support {feature}",
                  hint="shiftguard refuses it because strict_redshift is on; Redshift would refuse it too")


def _touches_user_tables(tree) -> bool:
    return any("RangeVar" in node and not _is_catalog_relation(node["RangeVar"].get("schemaname"),
                                                               node["RangeVar"].get("relname", ""))
               for node in _nodes(tree))


def _values_as_table(tree) -> bool:
    """FROM (VALUES ...): Redshift takes VALUES lists in INSERT only (leader node included)."""
    return any("RangeSubselect" in node
               and node["RangeSubselect"].get("subquery", {}).get("SelectStmt", {}).get("valuesLists")
               for node in _nodes(tree))


def _unsupported_node(tree) -> str | None:
    for node in _nodes(tree):
        for key, value in node.items():
            if key in _NOT_IN_REDSHIFT_NODES:
                return _NOT_IN_REDSHIFT_NODES[key]
            # A subscript (doc[0]) is SUPER navigation on Redshift, which a super column (jsonb)
            # answers; a slice (a[1:2]) is PostgreSQL's arrays' only.
            if key == "A_Indirection" and any(i.get("A_Indices", {}).get("is_slice")
                                              for i in value.get("indirection", ())):
                return "array slices"
            if key in ("TypeName", "typeName") and isinstance(value, dict) and value.get("arrayBounds"):
                return "array types"
            if key == "Constraint" and value.get("contype") in ("CONSTR_CHECK", "CONSTR_EXCLUSION"):
                return "CHECK and EXCLUDE constraints"
    return None


def _create_database(node: dict, words: list[str]) -> Result:
    """CREATE DATABASE copies template1, where shiftguard is installed (catalog/store.py); from
    another template (template0, or a database of the user's) it would make one without the
    private schema, where its owner could plant objects of those names. Redshift's CREATE
    DATABASE has no TEMPLATE option."""
    for option in node.get("options", ()):
        elem = option["DefElem"]
        if elem["defname"] == "template" and elem.get("arg", {}).get("String", {}).get("sval") not in (None, "template1"):
            return Denial(sqlstate.FEATURE_NOT_SUPPORTED, "CREATE DATABASE ... TEMPLATE is not supported",
                          hint="Amazon Redshift has no TEMPLATE option: every database is made alike.")
    return None


_AST_HANDLERS: dict[str, Callable[[dict, list[str]], Result]] = {
    "VariableSetStmt": _variable_set,
    "DiscardStmt": lambda node, words: _escape("DISCARD"),
    "AlterSystemStmt": lambda node, words: _escape("ALTER SYSTEM"),
    "CreateExtensionStmt": lambda node, words: _escape("CREATE EXTENSION"),
    "AlterExtensionStmt": lambda node, words: _escape("ALTER EXTENSION"),
    "CreatePLangStmt": lambda node, words: _escape("CREATE LANGUAGE"),
    "CopyStmt": _copy,
    "CreatedbStmt": _create_database,
    "CreatePolicyStmt": lambda node, words: _escape("PostgreSQL's CREATE POLICY (use CREATE RLS POLICY)"),
    "AlterPolicyStmt": lambda node, words: _escape("PostgreSQL's ALTER POLICY (use ALTER RLS POLICY)"),
    "LoadStmt": lambda node, words: _escape("LOAD"),
    "AlterTableStmt": _alter_table,
    "DropStmt": _drop,
    "RenameStmt": _rename,
    "CreateFunctionStmt": lambda node, words: _with_language(node, "options"),
    "DoStmt": lambda node, words: _with_language(node, "args"),
}
