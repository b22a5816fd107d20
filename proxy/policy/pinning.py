"""What a statement leaves in its backend session beyond its transaction, for transaction
pooling (backend/txpool.py). Pure: SQL in, a verdict out.

A session shared between the clients of one role between transactions must not carry one
client's session state to the next. What would is found here, from PostgreSQL's parse tree
(pglast), and pins the backend session to its client for the client's lifetime (it is closed
when the client goes, never shared): temporary tables (CREATE TEMP ..., SELECT INTO TEMP), LISTEN,
session-level advisory locks (pg_advisory_lock, pg_try_advisory_lock and their _shared forms),
WITH HOLD cursors, SQL PREPARE, LOAD, session-level SET (SET name / SET SESSION name, SET
SESSION AUTHORIZATION, SET SESSION CHARACTERISTICS) and set_config(..., false), and DO blocks
(their bodies are not read: they may do any of these). SET LOCAL, SET TRANSACTION, RESET and
SET ... TO DEFAULT leave nothing beyond the transaction (RESET returns to the role's defaults,
which every shared session of the key has) and pin nothing. DISCARD and DEALLOCATE drop the
prepared statements shiftguard keeps in the session for other clients: the session is closed
after the transaction instead of being shared.
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
                      rb"|\bload\b|\bdo\b")
_ADVISORY_LOCKS = frozenset(("pg_advisory_lock", "pg_advisory_lock_shared", "pg_try_advisory_lock",
                             "pg_try_advisory_lock_shared"))
_CURSOR_OPT_HOLD = 0x0020  # parsenodes.h
_PINNING_STATEMENTS = {"ListenStmt": "LISTEN", "PrepareStmt": "PREPARE", "LoadStmt": "LOAD",
                       "DoStmt": "a DO block"}


@dataclass(frozen=True, slots=True)
class SessionEffect:
    pins: str | None = None   # what the statement leaves in the session (why it is pinned)
    discards: bool = False    # it drops the session's prepared statements


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
    pins, discards = None, False
    for node in _nodes(json.loads(tree)):
        pins = pins or _pins(node)
        discards = discards or "DiscardStmt" in node or "DeallocateStmt" in node
    return SessionEffect(pins, discards) if pins or discards else NONE


def _pins(node: dict) -> str | None:
    for kind, what in _PINNING_STATEMENTS.items():
        if kind in node:
            return what
    if node.get("relpersistence") == "t":
        return "a temporary table"
    cursor = node.get("DeclareCursorStmt")
    if cursor is not None and cursor.get("options", 0) & _CURSOR_OPT_HOLD:
        return "a WITH HOLD cursor"
    setting = node.get("VariableSetStmt")
    if setting is not None and not setting.get("is_local") and (
            setting.get("kind") in ("VAR_SET_VALUE", "VAR_SET_CURRENT")
            or setting.get("kind") == "VAR_SET_MULTI" and setting.get("name") != "TRANSACTION"):
        return "SET"
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
