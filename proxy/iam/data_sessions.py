"""The Data API's database sessions. Each statement runs as a client of the proxy itself: over an
in-process socket pair (frontend/in_process.py) served by the same Connection code as a TCP
client, TLS negotiated as a driver would, logged in as the database user with a temporary
credential minted for it. So classification, Redshift rewrites, RLS and masking, privileges
and the audit log (application_name "Redshift Data API <statement id>") treat it as any
client's. Results are read here, in text format over the simple Query protocol, as psql reads
them; this module owns that reading and the conversion of `:name` parameters, not the API."""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import re
from dataclasses import dataclass, field

from .. import __version__
from ..endpoint import ConnectionClosed
from ..backend.session import BackendAddress, BackendSession, BackendUnavailable, connect, open_session
from ..frontend.in_process import in_process_socket
from ..protocol import messages as m
from ..protocol.framing import DEFAULT_MAX_MESSAGE
from ..protocol.redshift_types import REDSHIFT_OIDS, SUPER
from ..policy.statements import PRIVATE_SCHEMA
from ..policy.tokens import GrammarError, as_read, scan, sql_literal

# TLS as a driver's sslmode=prefer: negotiated whenever the proxy offers it (require_ssl).
_IN_PROCESS = BackendAddress(sslmode="prefer")

# Built-in types by OID, named as pg_type (and Redshift's ColumnMetadata) names them, and
# Redshift's own by the OIDs the session sees for them (it announces a driver_version, so the
# relay shows Redshift's: protocol/redshift_types.py; their values go as text, VARBYTE's as its
# hexadecimal: whether Redshift's Data API gives VARBYTE as a blobValue is UNVERIFIED); others
# are looked up in the session.
TYPE_NAMES = {16: "bool", 17: "bytea", 18: "char", 19: "name", 20: "int8", 21: "int2", 23: "int4", 25: "text",
              26: "oid", 114: "json", 700: "float4", 701: "float8", 705: "unknown", 1042: "bpchar",
              1043: "varchar", 1082: "date", 1083: "time", 1114: "timestamp", 1184: "timestamptz",
              1186: "interval", 1266: "timetz", 1700: "numeric", 2950: "uuid", 3802: "jsonb",
              **{oid: name for name, oid in REDSHIFT_OIDS.items()}, SUPER: "super"}
_INTEGERS = {"int2": 5, "int4": 10, "int8": 19, "oid": 10}  # typeName -> precision (digits)
_FLOATS = {"float4": 8, "float8": 17}
_NAME = re.compile(r"[A-Za-z_][0-9A-Za-z_]*")


class StatementFailed(Exception):
    """The statement ended with an ErrorResponse (or could not be sent or read); the message as
    psql shows it, severity first ("ERROR: relation ... does not exist")."""

    def __init__(self, message: str, sqlstate: str = ""):
        super().__init__(message)
        self.sqlstate = sqlstate


def described(fields: dict[str, str] | None, otherwise: str) -> str:
    """An ErrorResponse's fields as psql shows them: severity and message (otherwise without)."""
    if not fields:
        return f"ERROR: {otherwise}"
    return f"{fields.get('V') or fields.get('S') or 'ERROR'}: {fields.get('M', otherwise)}"


@dataclass
class Result:
    """One statement's outcome: its columns (None: no result set), its rows (DataRow bodies as
    they came: one bytes object a row, decoded when a page is asked for), command tag."""
    columns: list[m.FieldDescription] | None = None
    raw: list[bytes] = field(default_factory=list)
    tag: str = ""
    size: int = 0  # bytes of the rows

    @property
    def rows(self) -> list[list[bytes | None]]:
        return [m.decode_data_row(body) for body in self.raw]

    @property
    def affected(self) -> int:
        """ResultRows: the rows returned, or those an INSERT/UPDATE/DELETE/COPY... touched;
        -1 (the Data API's null) for statements that count none."""
        if self.columns is not None:
            return len(self.raw)
        last = self.tag.rsplit(" ", 1)[-1]
        return int(last) if last.isdigit() and " " in self.tag else -1


def named_parameters(sqls: list[str], values: dict[str, str], standard_strings: bool) -> list[str]:
    """Each SQL (a batch's share the parameters) with each `:name` (outside literals, quoted
    names and comments, as PostgreSQL's scanner reads the text under the session's
    standard_conforming_strings) replaced by the value as a string literal: an untyped
    constant, which PostgreSQL converts to the type its place needs, as Redshift does with the
    Data API's parameters (all given as strings). A name used and not given, or given and used
    by none of the SQLs, is an error."""
    texts, used = [], set()
    for sql in sqls:
        text = as_read(sql, standard_strings)
        tokens = scan(text)
        pieces, pos = [], 0
        for colon, name in zip(tokens, tokens[1:]):
            if colon.text == ":" and name.start == colon.end and _NAME.fullmatch(name.text):  # a word, or a keyword
                if name.text not in values:
                    raise GrammarError(f"Parameter {name.text} is not provided")  # UNVERIFIED wording
                pieces += [text[pos:colon.start], sql_literal(values[name.text])]
                pos = name.end
                used.add(name.text)
        texts.append("".join(pieces) + text[pos:])
    unused = sorted(set(values) - used)
    if unused:
        raise GrammarError(f"Parameter {unused[0]} is not used in the SQL")  # UNVERIFIED wording
    return texts


def typed_field(type_name: str, value: bytes | None) -> dict:
    """A value as GetStatementResult's Field: longValue for integers, doubleValue for floats,
    booleanValue, blobValue for bytea, isNull; everything else (numeric included) its text."""
    if value is None:
        return {"isNull": True}
    text = value.decode("utf-8", "replace")
    if type_name in _INTEGERS:
        return {"longValue": int(text)}
    if type_name in _FLOATS:
        return {"doubleValue": float(text)}
    if type_name == "bool":
        return {"booleanValue": text == "t"}
    if type_name == "bytea" and text.startswith("\\x"):
        with contextlib.suppress(binascii.Error, ValueError):
            return {"blobValue": base64.b64encode(bytes.fromhex(text[2:])).decode()}
    return {"stringValue": text}


def column_metadata(column: m.FieldDescription, type_name: str, source: tuple[str, str, bool] | None) -> dict:
    """ColumnMetadata as the Data API gives it: precision is the digits of a number or the
    declared length of a character type, scale a numeric's; source: the (schema, table, not
    null) of a table's column."""
    modifier, precision, scale = column.type_modifier, 0, 0
    if type_name == "numeric" and modifier >= 4:
        precision, scale = ((modifier - 4) >> 16) & 0xFFFF, (modifier - 4) & 0xFFFF
    elif type_name in ("varchar", "bpchar") and modifier >= 4:
        precision = modifier - 4
    elif type_name in _INTEGERS or type_name in _FLOATS:
        precision = _INTEGERS.get(type_name) or _FLOATS[type_name]
    schema, table, not_null = source or ("", "", False)
    return {"name": column.name, "label": column.name, "typeName": type_name, "length": 0,
            "precision": precision, "scale": scale, "nullable": 0 if not_null else 1,
            "isSigned": type_name in _INTEGERS or type_name in _FLOATS or type_name == "numeric",
            "isCurrency": False, "isCaseSensitive": type_name in ("varchar", "bpchar", "text", "char", "name"),
            "schemaName": schema, "tableName": table}


class DataSession:
    """One logged-in session of the Data API on the proxy's frontend."""

    def __init__(self, backend: BackendSession, context):
        self._backend = backend
        self._context = context
        self._type_names = dict(TYPE_NAMES)

    @classmethod
    async def open(cls, context, user: str, password: str, database: str, application_name: str) -> "DataSession":
        """Raises BackendRefused (the login was refused, with the frontend's error fields) or
        BackendUnavailable."""
        backend = await open_session(_IN_PROCESS, user, password, database,
                                     {"application_name": application_name,
                                      "driver_version": f"shiftguard Data API {__version__}"},
                                     sock=await in_process_socket(context))
        return cls(backend, context)

    @property
    def pid(self) -> int:
        return self._backend.pid

    @property
    def standard_strings(self) -> bool:
        return self._backend.parameters.get("standard_conforming_strings", "on") == "on"

    async def run(self, sql: str, max_bytes: int) -> Result:
        """sql over the simple Query protocol; the last result. Raises StatementFailed."""
        endpoint = self._backend.endpoint
        try:
            endpoint.write(m.query(sql.encode()))
        except ValueError as exc:
            raise StatementFailed(described(None, str(exc))) from None
        results, current, error, too_big = [], Result(), None, False
        while True:
            try:
                kind, body = await endpoint.read_message(DEFAULT_MAX_MESSAGE)
            except ConnectionClosed:  # after a FATAL error, or the proxy stopping
                raise StatementFailed(described(error, "the session was closed"), (error or {}).get("C", "")) from None
            if kind == m.B_ROW_DESCRIPTION:
                current = Result(columns=m.decode_row_description(body))
            elif kind == m.B_DATA_ROW:
                current.size += len(body)
                if current.size > max_bytes and not too_big:
                    # Not read to its end: the statement is cancelled, and its error is ours.
                    too_big, current.raw = True, []
                    with contextlib.suppress(BackendUnavailable, OSError):  # then it is read to its end
                        await self.cancel()
                elif not too_big:
                    m.decode_data_row(body)  # checked now: a malformed row fails the statement, not a page
                    current.raw.append(body)
            elif kind == m.B_COMMAND_COMPLETE:
                current.tag = m.decode_command_tag(body).decode("utf-8", "replace")
                results.append(current)
                current = Result()
            elif kind == m.B_EMPTY_QUERY_RESPONSE:
                results.append(Result())
            elif kind == m.B_ERROR_RESPONSE:
                error = m.decode_fields(body)
            elif kind == m.B_COPY_IN_RESPONSE:
                endpoint.write(m.message(m.F_COPY_FAIL, m.cstring("COPY FROM STDIN cannot be used through the "
                                                                  "Data API")))
            elif kind == m.B_READY_FOR_QUERY:
                break
        if too_big:
            raise StatementFailed(described(None, f"The query result exceeds the Data API's limit of "
                                                  f"{max_bytes} bytes"))
        if error is not None:
            raise StatementFailed(described(error, "the statement failed"), error.get("C", ""))
        return results[-1] if results else Result()

    async def run_ours(self, sql: str, max_bytes: int = 1 << 20) -> Result:
        """shiftguard's own catalog query, with the session's search_path set to pg_catalog first:
        an operator or function the user made cannot stand in for a built-in. Only as the
        session's last use (nothing of the user's runs after it with that search_path)."""
        return await self.run(f"SET search_path = pg_catalog, pg_temp; {sql}", max_bytes)

    async def describe_columns(self, results: list[Result]) -> list[list[dict]]:
        """Each result's ColumnMetadata. The names of types that are not built in, and where a
        table's columns come from, are read in the session, as far as the user may see them in
        the catalog (when that fails, they are left unknown rather than failing the statement)."""
        columns = [c for r in results for c in r.columns or ()]
        unknown = sorted({c.type_oid for c in columns if c.type_oid not in self._type_names})
        keys = sorted({(c.table_oid, c.attnum) for c in columns if c.table_oid})
        sources = {}
        with contextlib.suppress(StatementFailed):
            if unknown:
                found = await self.run_ours(f"SELECT oid, typname FROM pg_type WHERE oid IN "
                                            f"({', '.join(str(int(o)) for o in unknown)})")
                self._type_names.update({int(oid): name.decode() for oid, name in found.rows})
            if keys:
                sources = await self._sources(keys)
        return [[column_metadata(c, self._type_names.get(c.type_oid, "unknown"), sources.get((c.table_oid, c.attnum)))
                 for c in r.columns] for r in results]

    async def _sources(self, keys: list[tuple[int, int]]) -> dict[tuple[int, int], tuple[str, str, bool]]:
        """(schema, table, NOT NULL) of table columns by (table OID, column number). A masked
        table is read through its masking view, shiftguard."mask:<table OID>" (catalog/
        masking.sql), whose columns are reported as the table's."""
        pairs = ", ".join(f"({int(t)}::oid, {int(a)}::int2)" for t, a in keys)
        found = await self.run_ours(
            f"SELECT v.oid, va.attnum, n.nspname, c.relname, coalesce(a.attnotnull, false) FROM pg_class v "
            f"JOIN pg_namespace vn ON vn.oid = v.relnamespace JOIN pg_attribute va ON va.attrelid = v.oid "
            f"JOIN pg_class c ON c.oid = CASE WHEN vn.nspname = {sql_literal(PRIVATE_SCHEMA)} "
            f"AND v.relname ~ '^mask:[0-9]+$' THEN substr(v.relname, 6)::oid ELSE v.oid END "
            f"JOIN pg_namespace n ON n.oid = c.relnamespace "
            f"LEFT JOIN pg_attribute a ON a.attrelid = c.oid AND a.attname = va.attname "
            f"WHERE (v.oid, va.attnum) IN ({pairs})")
        return {(int(o), int(a)): (s.decode(), t.decode(), n == b"t") for o, a, s, t, n in found.rows}

    async def cancel(self) -> None:
        """PostgreSQL's CancelRequest for this session, through the frontend as a client sends it."""
        endpoint = await connect(BackendAddress(sslmode="disable"), await in_process_socket(self._context))
        try:
            endpoint.write(m.cancel_request(self._backend.pid, self._backend.key))
            with contextlib.suppress(asyncio.TimeoutError):
                async with asyncio.timeout(5):
                    await endpoint.wait_closed()
        finally:
            endpoint.close()

    def close(self) -> None:
        endpoint = self._backend.endpoint
        endpoint.write(m.terminate())
        endpoint.close()
