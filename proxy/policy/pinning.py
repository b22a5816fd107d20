"""What a statement leaves in its backend session beyond its transaction, for transaction
pooling (backend/txpool.py). Pure: SQL in, a verdict out.

A session shared between the clients of one role between transactions must not carry one
client's session state to the next. What would is found here, from PostgreSQL's parse tree
(pglast), and pins the backend session to its client for the client's lifetime (it is closed
when the client goes, never shared): temporary tables (CREATE TEMP ..., SELECT INTO TEMP), LISTEN,
session-level advisory locks (pg_advisory_lock, pg_try_advisory_lock and their _shared forms),
WITH HOLD cursors, SQL PREPARE, LOAD, SET SESSION AUTHORIZATION, SET SESSION CHARACTERISTICS,
SET ... FROM CURRENT, set_config(..., false), and DO blocks (their bodies are not read: they may
do any of these).

Session-level SET name = value, SET name TO DEFAULT, RESET name and RESET ALL are settings the
relay keeps for the client and restores in each session it lands on (`settings`: each one's
name, None for RESET ALL, and its statement, None for a reset); in a Query that also holds
BEGIN, COMMIT or ROLLBACK they pin instead (whether they outlive it depends on how the block
ends), as does SET temp_buffers (PostgreSQL refuses it again in a session that touched a temporary
table). SET LOCAL, SET TRANSACTION and SET transaction_isolation (_read_only, _deferrable) end with
the transaction. DISCARD and DEALLOCATE drop
the prepared statements shiftguard keeps in the session for other clients: the session is
closed after the transaction instead of being shared (DISCARD ALL also resets the settings).
"""

from __future__ import annotations

import functools
import json
import re
from dataclasses import dataclass

from pglast import parser

from .statements import _nodes

# Words that must appear in a statement that does any of the above: only those are parsed.
_TRIGGER = re.compile(rb"temp|listen|advisory|\bhold\b|prepare|\bset\b|set_config|session|discard|deallocate"
                      rb"|\bload\b|\bdo\b|reset")
_ADVISORY_LOCKS = frozenset(("pg_advisory_lock", "pg_advisory_lock_shared", "pg_try_advisory_lock",
                             "pg_try_advisory_lock_shared"))
_CURSOR_OPT_HOLD = 0x0020  # parsenodes.h
_PINNING_STATEMENTS = {"ListenStmt": "LISTEN", "PrepareStmt": "PREPARE", "LoadStmt": "LOAD",
                       "DoStmt": "a DO block"}


# Settings whose SET is not kept and restored: they change who the session is.
_IDENTITY = frozenset(("session_authorization", "role"))
# Settings a SET changes for its transaction only, whatever the form (SET TRANSACTION's): not
# kept. Put back in a session after the reset's first query, PostgreSQL would refuse them.
_TRANSACTION = frozenset(("transaction_isolation", "transaction_read_only", "transaction_deferrable"))
# Settings PostgreSQL refuses to change once the session used what they size (temp_buffers,
# after any temporary table was touched): put back in a session another client used, a SET
# would fail, so it pins.
_SESSION_SIZED = frozenset(("temp_buffers",))


@dataclass(frozen=True, slots=True)
class SessionEffect:
    pins: str | None = None   # what the statement leaves in the session (why it is pinned)
    discards: bool = False    # it drops the session's prepared statements
    # (name, SET statement) in order; (name, None): RESET name; (None, None): RESET ALL
    settings: tuple[tuple[str | None, bytes | None], ...] = ()


NONE = SessionEffect()


def session_effect(sql: bytes) -> SessionEffect:
    """What the SQL of one Query or Parse leaves in its session. SQL that PostgreSQL cannot
    parse runs nothing, and leaves nothing."""
    if not _TRIGGER.search(sql.lower()):
        return NONE
    return _effect(sql)


@functools.lru_cache(maxsize=4096)
def _effect(sql: bytes) -> SessionEffect:
    try:
        tree = parser.parse_sql_json(sql.decode("utf-8"))
    except (parser.ParseError, UnicodeDecodeError, ValueError):
        return NONE
    pins, discards, settings, block = None, False, [], False
    for raw in json.loads(tree)["stmts"]:
        statement = raw["stmt"]
        setting = statement.get("VariableSetStmt")
        block = block or "TransactionStmt" in statement
        if setting is not None and not setting.get("is_local"):
            start = raw.get("stmt_location", 0)
            text = sql[start:start + raw["stmt_len"]] if raw.get("stmt_len") else sql[start:]
            kept = _setting(setting, text)
            if kept is None:
                pins = pins or f"SET {setting.get('name', '')}".rstrip()
            elif kept:
                settings.append(kept)
        elif statement.get("DiscardStmt", {}).get("target") == "DISCARD_ALL":
            settings.append((None, None))
        for node in _nodes(statement):
            pins = pins or _pins(node)
            discards = discards or "DiscardStmt" in node or "DeallocateStmt" in node
    if settings and block:
        pins = pins or "SET in a Query with BEGIN, COMMIT or ROLLBACK"
    if not (pins or discards or settings):
        return NONE
    return SessionEffect(pins, discards, () if pins else tuple(settings))


def _setting(node: dict, text: bytes) -> tuple | None:
    """A session-level SET or RESET as the relay keeps it, () for one that ends with its
    transaction anyway (SET TRANSACTION), None for one that pins."""
    kind, name = node.get("kind"), node.get("name")
    if kind == "VAR_RESET_ALL":
        return (None, None)
    if kind == "VAR_SET_MULTI" and name == "TRANSACTION" or name is not None and name.lower() in _TRANSACTION:
        return ()
    if name is None or name.lower() in _IDENTITY:
        return None
    if kind == "VAR_SET_VALUE":
        return None if name.lower() in _SESSION_SIZED else (name.lower(), text)
    if kind in ("VAR_SET_DEFAULT", "VAR_RESET"):
        return (name.lower(), None)
    return None


def _pins(node: dict) -> str | None:
    for kind, what in _PINNING_STATEMENTS.items():
        if kind in node:
            return what
    if node.get("relpersistence") == "t":
        return "a temporary table"
    cursor = node.get("DeclareCursorStmt")
    if cursor is not None and cursor.get("options", 0) & _CURSOR_OPT_HOLD:
        return "a WITH HOLD cursor"
    call = node.get("FuncCall")
    if call is not None:
        name = (call.get("funcname") or [{}])[-1].get("String", {}).get("sval", "")
        if name in _ADVISORY_LOCKS:
            return "a session-level advisory lock"
        if name == "set_config":
            args = call.get("args") or []
            local = args[2].get("A_Const", {}).get("boolval", {}).get("boolval") if len(args) > 2 else None
            if local is not True:
                return "set_config(..., false)"
    return None
