"""Redshift's rules for names, on PostgreSQL's own scanner tokens (never on raw text; string
constants are never touched). Pure: a statement in, the statement as Redshift reads it out.

- enable_case_sensitive_identifier: off (Redshift's default), Redshift folds quoted names to
  lower case too ("MyTable" is mytable); on, quoted names keep their case. PostgreSQL always
  keeps it, so with the setting off every quoted name is written in lower case before the
  statement is judged and sent. A name only ever becomes another name the user could have
  written (PostgreSQL checks the privileges on whatever it names), and result columns come
  back named as Redshift names them ("Foo" is foo). User, group and role names are the
  exception Redshift documents: "The case of a username enclosed in double quotation marks is
  always preserved"; groups and roles are kept alike (UNVERIFIED: they are principals in the
  same places of the grammar).
- SET / RESET / SHOW enable_case_sensitive_identifier: kept by the proxy for the session (the
  relay), starting from the cluster's parameter group; RESET ALL returns to it too.
- Names of 64 to 127 bytes: Redshift keeps 127 bytes, PostgreSQL (NAMEDATALEN) cuts every name
  to 63, so two long names that start alike would silently be one object. Each long name (as
  Redshift folds it) is sent as its short name instead: a prefix of it, '#' and 24 hex digits
  of the SHA-256 of the whole name (short_name). The way in needs no lookup, and a short name
  names one long name only (finding another with the same 96 bits is not feasible), so the
  map back (catalog/schema.sql long_names: what the proxy saw, recorded before the statement
  runs, catalog/long_names.py) holds only true pairs whoever writes it. The SHOW commands, the
  catalog views built on them, logins and the result columns a session names show and match
  the long names (relay.py); PostgreSQL's own catalogs and error messages show the short
  ones. A routine's or DO block's body holding a long name is read so too. Longer than 127
  bytes: refused, SQLSTATE 42622.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass

from pglast import parser

from ..protocol import sqlstate
from .tokens import GrammarError, Token, fold_identifier, quote_ident, quoted_name, scan, sql_literal, string_value

SETTING = "enable_case_sensitive_identifier"
# PostgreSQL's NAMEDATALEN - 1: the bytes of a name it keeps (it cuts the rest with a NOTICE).
MAX_NAME_BYTES = 63
# Redshift's: longer names are refused.
MAX_REDSHIFT_NAME_BYTES = 127
NAME_TOO_LONG = "42622"
# A short name: the long one's first characters (up to _PREFIX_BYTES of UTF-8), the marker and
# _HASH_DIGITS hex digits of the SHA-256 of the long name's UTF-8 (catalog/schema.sql short_name
# computes the same).
_HASH_DIGITS = 24
SHORT_NAME_MARKER = "#"
_PREFIX_BYTES = MAX_NAME_BYTES - len(SHORT_NAME_MARKER) - _HASH_DIGITS


def short_name(name: str) -> str:
    """The PostgreSQL name of a name of 64 to 127 bytes (the name itself when it fits)."""
    raw = name.encode("utf-8")
    if len(raw) <= MAX_NAME_BYTES:
        return name
    prefix = raw[:_PREFIX_BYTES].decode("utf-8", "ignore")  # a character cut in two is left out
    return prefix + SHORT_NAME_MARKER + hashlib.sha256(raw).hexdigest()[:_HASH_DIGITS]


# The end of a short name: the marker and the hash's digits.
_SHORT_END = re.compile(re.escape(SHORT_NAME_MARKER) + "[0-9a-f]{%d}\\Z" % _HASH_DIGITS)


def spelled_short(name: str) -> bool:
    """name, of at most 63 bytes, ends as a short name does: taken as it is, it would be the
    role or object of the long name whose short name it is (a login's name must not be)."""
    return len(name.encode("utf-8")) <= MAX_NAME_BYTES and _SHORT_END.search(name) is not None


@dataclass(frozen=True, slots=True)
class IdentifierCase:
    """A session's enable_case_sensitive_identifier: in force now, and what RESET returns to
    (the cluster parameter group's value when the session started)."""

    sensitive: bool = False
    default: bool = False


# Shortcuts only (a hit means "scan and look"; the scanner decides): a quoted name holding a
# capital letter or an escape (U&"\0041"), a run of 64 characters that names are made of (every
# byte of those turned into 'a', the rest into ' ': faster than a pattern) or a quoted one, the
# setting's name, RESET (ALL).
_QUOTED_CAPITAL = re.compile(rb'"[^"]*[A-Z\\]')
_NAME_CHARACTERS = bytes(0x61 if chr(b).isascii() and (chr(b).isalnum() or chr(b) in "_$") or b >= 0x80 else 0x20
                         for b in range(256))
_LONG_RUN = b"a" * (MAX_NAME_BYTES + 1)
_LONG_QUOTED = re.compile(rb'"[^"]{%d}' % (MAX_NAME_BYTES + 1))
# The same where a quote in a name is written "": each pair read as two bytes \x01, which may
# take the opening quote in (""" starts a name with a quote): a run from either, one shorter.
_LONG_QUOTED_ESCAPED = re.compile(rb'[\x01"][^"]{%d}' % MAX_NAME_BYTES)


def _long_quoted_with_quotes(sql: bytes) -> bool:
    return _LONG_QUOTED_ESCAPED.search(sql.replace(b'""', b"\x01\x01")) is not None


def may_rewrite(sql: bytes, lowered: bytes, case: IdentifierCase) -> bool:
    """Might sql hold something this module changes or answers?"""
    return (b"enable_case_sensitive_identifier" in lowered or b"reset" in lowered
            or (not case.sensitive and _QUOTED_CAPITAL.search(sql) is not None)
            or _LONG_RUN in sql.translate(_NAME_CHARACTERS) or _LONG_QUOTED.search(sql) is not None
            or b'""' in sql and _long_quoted_with_quotes(sql))


# ------------------------------------------------------------------------- the setting

# PostgreSQL's spellings of a boolean (parse_bool), as SET reads them.
_TRUE = ("true", "on", "yes", "1", "t", "y")
_FALSE = ("false", "off", "no", "0", "f", "n")


def setting(statement: str, case: IdentifierCase) -> tuple[IdentifierCase, str | None, bytes | None] | None:
    """For SET, RESET or SHOW of the setting and RESET ALL: the session's setting after it, the
    SQL to send instead (None: the statement itself, judged as any other) and its command tag;
    None for any other statement. GrammarError for a value that is not a boolean, and for SET
    LOCAL (the proxy keeps the value for the session, not for a transaction)."""
    lowered = statement.lower()
    if SETTING not in lowered and "reset" not in lowered:
        return None
    tokens = scan(statement)
    words = [t.word for t in tokens]
    if words == ["RESET", "ALL"]:
        return IdentifierCase(case.default, case.default), None, None
    at = next((i for i, t in enumerate(tokens[:3])
               if t.name in ("IDENT", "UIDENT") and fold_identifier(t).lower() == SETTING), None)
    if at is None:
        return None
    verb = words[:at]
    if verb == ["SHOW"] and len(tokens) == 2:
        # A boolean parameter's SHOW, as PostgreSQL answers it (on/off). UNVERIFIED: Redshift's
        # documentation shows no SHOW of this parameter.
        value = "on" if case.sensitive else "off"
        return case, f"SELECT '{value}'::pg_catalog.text AS {SETTING}", b"SHOW"
    if verb == ["RESET"] and len(tokens) == 2:
        return IdentifierCase(case.default, case.default), f"RESET {_SENT}", b"RESET"
    if verb == ["SET", "LOCAL"]:
        raise GrammarError(f"SET LOCAL {SETTING} is not supported by shiftguard", sqlstate.FEATURE_NOT_SUPPORTED,
                           hint=f"Use SET {SETTING}, which holds for the session.")
    if verb not in (["SET"], ["SET", "SESSION"]) or len(tokens) != at + 3 \
            or not (tokens[at + 1].word == "TO" or tokens[at + 1].text == "="):
        return None  # not the grammar of SET: PostgreSQL's own error
    value_token = tokens[at + 2]
    if value_token.word == "DEFAULT":
        return IdentifierCase(case.default, case.default), f"SET {_SENT} TO DEFAULT", b"SET"
    value = (value_token.text[1:-1] if value_token.name == "SCONST" else value_token.text).strip().lower()
    if value in _TRUE or value in _FALSE:
        sensitive = value in _TRUE
        return IdentifierCase(sensitive, case.default), f"SET {_SENT} TO '{'on' if sensitive else 'off'}'", b"SET"
    raise GrammarError(f'parameter "{SETTING}" requires a Boolean value', sqlstate.INVALID_PARAMETER_VALUE)


# What the backend runs for a SET or RESET of the setting: the same of a placeholder setting,
# which PostgreSQL accepts from anyone and nothing reads (the proxy keeps the value), so that
# one in a failed transaction fails there as PostgreSQL's SET does, and transaction pooling
# keeps and restores it as any session SET rather than pinning the session.
_SENT = f"redshift.{SETTING}"


# ------------------------------------------------------------------------- names

# Statements whose every name is a user, group or role (or a setting of one).
_ROLE_STATEMENTS = ("USER", "GROUP", "ROLE")
# Statements in which what follows a top-level TO or FROM are grantees.
_GRANTING = ("GRANT", "REVOKE", "ATTACH", "DETACH")


def long_name_among(name: str, long_names: frozenset[str] | set[str]) -> str:
    """The long name among long_names (a statement's) whose short name is name, else name."""
    return next((long for long in long_names if short_name(long) == name), name)


def as_redshift_reads(statement: str, case: IdentifierCase, long_names: set[str] | None = None,
                      quote: Callable[[str], str] = quote_ident) -> str | None:
    """The statement with its quoted names folded to lower case (with the setting off) and its
    names of 64 to 127 bytes written as their short names (each added to long_names), each
    written by quote, or None when it needs no change. GrammarError (42622) for a name longer
    than Redshift keeps."""
    tokens = scan(statement)
    kept = _role_names(tokens)
    bodies = _bodies(tokens)
    edits = []
    for index, token in enumerate(tokens):
        if index in bodies:
            body = _body(token, case, long_names)
            if body is not None:
                edits.append((token.start, token.end, body))
            continue
        if token.name not in ("IDENT", "UIDENT"):
            continue
        if token.name == "UIDENT" and index + 1 < len(tokens) and tokens[index + 1].word == "UESCAPE":
            continue  # U&"..." UESCAPE '!': read with its own escape, left as written
        name = written = _full_name(token)
        quoted = token.text.startswith('"') or token.name == "UIDENT"
        if quoted and not case.sensitive and index not in kept:
            name = "".join(c.lower() if "A" <= c <= "Z" else c for c in name)  # as PostgreSQL folds unquoted names
        length = len(name.encode("utf-8"))
        if length > MAX_REDSHIFT_NAME_BYTES:
            raise GrammarError(
                f'identifier "{name[:MAX_NAME_BYTES]}..." is {length} bytes long, more than '
                f"the {MAX_REDSHIFT_NAME_BYTES} bytes Amazon Redshift allows", NAME_TOO_LONG,
                hint=f"Names are 1 to {MAX_REDSHIFT_NAME_BYTES} bytes long. Use a shorter name.")
        if length > MAX_NAME_BYTES:
            if long_names is not None:
                long_names.add(name)
            edits.append((token.start, token.end, quote(short_name(name))))
        elif name != written:
            edits.append((token.start, token.end, quote(name)))
    if not edits:
        return None
    pieces, cursor = [], 0
    for start, end, replacement in edits:
        pieces += [statement[cursor:start], replacement]
        cursor = end
    return "".join(pieces) + statement[cursor:]


# Languages whose routine bodies PostgreSQL's scanner reads (plpgsql uses it too).
_SQL_LANGUAGES = ("plpgsql", "sql")


def _bodies(tokens: list[Token]) -> set[int]:
    """Indexes of the string constants that are code in SQL or PL/pgSQL: the body of CREATE
    FUNCTION or PROCEDURE (the constant after a top-level AS) and of DO, in either language."""
    words = [t.word for t in tokens[:5]]
    routine = words[:1] == ["CREATE"] and ("FUNCTION" in words or "PROCEDURE" in words)
    if not routine and words[:1] != ["DO"]:
        return set()
    found, depth = set(), 0
    for index, token in enumerate(tokens):
        if token.kind == "NO_KEYWORD" and token.text in ("(", ")"):
            depth += 1 if token.text == "(" else -1
        elif token.word == "LANGUAGE" and index + 1 < len(tokens) \
                and fold_identifier(tokens[index + 1]).lower().strip("'") not in _SQL_LANGUAGES:
            return set()
        elif token.name == "SCONST" and depth == 0 and (routine and tokens[index - 1].word == "AS" or not routine):
            found.add(index)
    return found


def _body(token: Token, case: IdentifierCase, long_names: set[str] | None) -> str | None:
    """A routine body holding a name of 64 to 127 bytes, as Redshift reads its names (with the
    statement's: a parameter named so outside is the same name inside), as a constant; None
    for one without (left as written, its quoted names too) or one the scanner cannot read
    (PostgreSQL will say what is wrong with it). GrammarError (42622) for a name longer than
    Redshift keeps."""
    body = string_value(token)
    raw = body.encode("utf-8")
    if not may_rewrite(raw, b"", IdentifierCase(True)):  # its shortcuts for long names only
        return None
    found: set[str] = set()
    try:
        rewritten = as_redshift_reads(body, case, found, quoted_name)  # PL/pgSQL reads no U&"..."
    except GrammarError as exc:
        if exc.sqlstate == NAME_TOO_LONG:
            raise
        return None
    if not found:
        return None
    if long_names is not None:
        long_names.update(found)
    return sql_literal(rewritten)


def _full_name(token: Token) -> str:
    """The name as written, whole: fold_identifier reads U&"..." with PostgreSQL's parser,
    which has cut it to 63 bytes already, so a long one is read again as a string."""
    name = fold_identifier(token)
    if token.name != "UIDENT" or len(name.encode("utf-8")) < MAX_NAME_BYTES - 3:
        return name
    body = token.text[3:-1].replace('""', '"').replace("'", "''")
    try:
        (statement,) = parser.parse_sql(f"SELECT U&'{body}'")
    except parser.ParseError:
        return name  # fold_identifier read it; PostgreSQL will too
    return statement.stmt.targetList[0].val.val.sval


def _role_names(tokens: list[Token]) -> set[int]:
    """Indexes of the tokens that name users, groups or roles (kept as written): every name of
    CREATE/ALTER/DROP USER, GROUP or ROLE, DROP OWNED and REASSIGN OWNED; in GRANT, REVOKE,
    ATTACH, DETACH and ALTER DEFAULT PRIVILEGES the grantees (after a top-level TO or FROM); in
    those and SHOW (GRANTS ... FOR), the lists after USER, GROUP or ROLE; in SHOW, the name after
    FOR; anywhere, the name after AUTHORIZATION or OWNER TO."""
    words = [t.word for t in tokens]
    if words[1:2] and words[1] in _ROLE_STATEMENTS and words[0] in ("CREATE", "ALTER", "DROP") \
            or words[:1] == ["REASSIGN"] or words[:2] == ["DROP", "OWNED"]:
        return set(range(len(tokens)))
    kept: set[int] = set()
    granting = words[0] in _GRANTING or words[:2] == ["ALTER", "DEFAULT"]
    showing = words[0] == "SHOW"  # SHOW GRANTS ... FOR [USER | ROLE] name
    depth, grantees, listing = 0, False, False
    for index, token in enumerate(tokens):
        punctuation = token.text if token.kind == "NO_KEYWORD" and token.name not in ("IDENT", "UIDENT") else None
        if punctuation in ("(", ")"):
            depth += 1 if punctuation == "(" else -1
        before = words[index - 1] if index else ""
        owner_to = before == "TO" and index > 1 and words[index - 2] == "OWNER" \
            and (index < 3 or words[index - 3] not in ("COLUMN", "RENAME"))  # not RENAME [COLUMN] owner TO x
        if grantees or listing or before == "AUTHORIZATION" or owner_to or (showing and before == "FOR"):
            kept.add(index)
        if granting and depth == 0 and token.word in ("TO", "FROM"):
            grantees = True
        if granting or showing:
            listing = token.word in _ROLE_STATEMENTS or (listing and token.name in ("IDENT", "UIDENT")) \
                or (index - 1 in kept and punctuation == ",")  # USER a, b
    return kept
