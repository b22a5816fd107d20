"""Redshift's three audit logs, as records and as the lines Redshift writes (reference §7).
Pure: records in, text out.

A record cannot be built holding what its table (catalog/schema.sql) would refuse: every text
is valid UTF-8 without NUL and at most so long, every integer in its column's range. Values
that come from a client (a statement, startup parameters) are made so when the record is built,
so that no client's input can fail the batch that also holds other people's records; and a
connection-log value holds no line break, so that no client can write a line of its own into
the connectionlog file. (A statement keeps its line breaks, as Redshift logs it.)

connectionlog: '|'-separated, space-padded, in STL_CONNECTION_LOG's column order, timestamps
as 'Mon, 7 Dec 2020 20:01:55:177'. userlog: STL_USERLOG's order. useractivitylog:
"'2020-12-08T22:00:03Z UTC [ db=dev user=rdsdb pid=685 userid=1 xid=245578 ]' LOG: <sql>".
"""

from __future__ import annotations

import datetime
import json
import re
from dataclasses import dataclass, field

from ..policy.idp import SECRET_PARAMETERS
from ..policy.tokens import SECRET_WORDS, GrammarError, as_read, scan, string_value

# What a text field keeps: a connection-log value (startup parameters, names, reasons), an error
# message. Longer values are cut, and say so.
FIELD_LIMIT = 1024
# What a statement keeps at most, whatever audit.max_statement_length says (Redshift's own
# limit for one statement is 16 MB).
STATEMENT_LIMIT = 16 << 20
_INT32 = 1 << 31
_INT64 = 1 << 63


def audit_text(value: object, limit: int = FIELD_LIMIT) -> str:
    """value as a text column takes it: at most limit characters of it (and how many more there
    were), NUL (which PostgreSQL's text cannot hold) as U+FFFD, what UTF-8 cannot encode (lone
    surrogates) as '?'."""
    text = value if type(value) is str else str(value)
    if len(text) > limit:
        text = f"{text[:limit]}... ({len(text) - limit} more characters not logged)"
    if "\0" in text:
        text = text.replace("\0", "\ufffd")
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            text = text.encode("utf-8", "replace").decode("utf-8")
    return text


def audit_int(value: object, bits: int = 32) -> int:
    """value as an integer column of that many bits takes it: 0 (unknown) when it is not an
    integer in that range."""
    bound = _INT32 if bits == 32 else _INT64
    if type(value) is not int or not -bound <= value < bound:
        return 0
    return value


def one_line(text: str) -> str:
    """text without control characters (line breaks, tabs, ...): each becomes U+FFFD, so that
    a value cannot start a line of its own in a log file."""
    if text.isprintable():
        return text
    return "".join(char if char.isprintable() else "\ufffd" for char in text)


def _normalise(record, texts: tuple[str, ...], int32s: tuple[str, ...], int64s: tuple[str, ...] = (),
               limits: dict[str, int] | None = None, lines: tuple[str, ...] = ()) -> None:
    """The record's fields made what their columns take (audit_text, audit_int), in place;
    those named in lines also made one line (one_line)."""
    values = vars(record)
    for name in texts:
        value = values[name]
        limit = limits.get(name, FIELD_LIMIT) if limits else FIELD_LIMIT
        if type(value) is not str or len(value) > limit or "\0" in value or not value.isascii():
            values[name] = audit_text(value, limit)
    for name in lines:
        values[name] = one_line(values[name])
    for name in int32s:
        values[name] = audit_int(values[name], 32)
    for name in int64s:
        values[name] = audit_int(values[name], 64)


# STL_CONNECTION_LOG's char widths, for the space padding of the file format.
_WIDTHS = {"event": 50, "remotehost": 45, "remoteport": 32, "dbname": 50, "username": 50, "authmethod": 32,
           "sslversion": 50, "sslcipher": 128, "sslcompression": 64, "sslexpansion": 64, "iamauthguid": 36,
           "application_name": 250, "os_version": 64, "driver_version": 64, "plugin_name": 32}


def row(record) -> dict:
    """A record's fields by name. Every field is a scalar, so a shallow copy is asdict()'s
    answer without its deep copy (which was a tenth of the proxy's time per connection)."""
    return dict(vars(record))


def redshift_time(moment: datetime.datetime) -> str:
    """'Mon, 7 Dec 2020 20:01:55:177' (UTC, milliseconds)."""
    moment = moment.astimezone(datetime.timezone.utc)
    return f"{moment:%a}, {moment.day} {moment:%b %Y %H:%M:%S}:{moment.microsecond // 1000:03d}"


@dataclass
class ConnectionRecord:
    event: str
    recordtime: datetime.datetime
    remotehost: str = ""
    remoteport: str = ""
    pid: int = 0
    dbname: str = ""
    username: str = ""
    authmethod: str = ""
    duration: int = 0               # microseconds, for 'disconnecting session'
    sslversion: str = ""
    sslcipher: str = ""
    mtu: int = 0
    sslcompression: str = ""
    sslexpansion: str = ""
    iamauthguid: str = ""
    application_name: str = ""
    os_version: str = ""
    driver_version: str = ""
    plugin_name: str = ""
    protocol_version: int = 0
    session_id: str = ""
    reason: str = field(default="", metadata={"internal": True})  # ours: why, never sent to clients

    def __post_init__(self) -> None:
        # One record a line in the connectionlog file, whatever a client put in its values.
        _normalise(self, _CONNECTION_TEXTS, ("pid", "mtu", "protocol_version"), ("duration",),
                   lines=_CONNECTION_TEXTS)

    def line(self) -> str:
        values = []
        for name, value in vars(self).items():
            if name == "reason":
                continue
            if name == "recordtime":
                text = redshift_time(value)
            else:
                text = str(value)
            width = _WIDTHS.get(name)
            values.append(text.ljust(width)[:width] if width and text else (" " if width else text))
        return "|".join(values) + "|"


_CONNECTION_TEXTS = ("event", "remotehost", "remoteport", "dbname", "username", "authmethod", "sslversion",
                     "sslcipher", "sslcompression", "sslexpansion", "iamauthguid", "application_name",
                     "os_version", "driver_version", "plugin_name", "session_id", "reason")
_STATEMENT_LIMITS = {"sql": STATEMENT_LIMIT}


@dataclass
class UserRecord:
    userid: int
    username: str
    oldusername: str
    action: str                  # create, alter, drop, rename
    usecreatedb: int
    usesuper: int
    usecatupd: int
    valuntil: str
    pid: int
    xid: int
    recordtime: datetime.datetime

    def line(self) -> str:
        return "|".join([str(self.userid), self.username.ljust(50), (self.oldusername or " ").ljust(50),
                         self.action.ljust(10), str(self.usecreatedb), str(self.usesuper), str(self.usecatupd),
                         self.valuntil, str(self.pid), str(self.xid), redshift_time(self.recordtime)])


@dataclass
class ActivityRecord:
    """A statement as the user activity log shows it (before it runs) and as stl_query and
    sys_query_history keep it (with its end, filled in when its ReadyForQuery comes back)."""

    recordtime: datetime.datetime
    db: str
    user: str
    pid: int
    userid: int
    xid: int
    sql: str
    session_id: str = ""             # with seq, names the row for QueryEnd
    seq: int = 0
    endtime: datetime.datetime | None = None
    status: str = "running"          # sys_query_history's: running, success, failed, canceled
    error_message: str = ""

    def __post_init__(self) -> None:
        _normalise(self, ("db", "user", "sql", "session_id", "status", "error_message"),
                   ("pid", "userid", "seq"), ("xid",), _STATEMENT_LIMITS, lines=("db", "user"))

    def line(self) -> str:
        stamp = self.recordtime.astimezone(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        return (f"'{stamp} UTC [ db={self.db} user={self.user} pid={self.pid} userid={self.userid} "
                f"xid={self.xid} ]' LOG: {self.sql}")


@dataclass
class QueryEnd:
    """The end of the statement (session_id, seq) of an ActivityRecord."""

    session_id: str
    seq: int
    endtime: datetime.datetime
    status: str
    error_message: str = ""

    def __post_init__(self) -> None:
        _normalise(self, ("session_id", "status", "error_message"), ("seq",))

    @classmethod
    def of(cls, session_id: str, seq: int, endtime: datetime.datetime,
           error: tuple[str, str] | None) -> "QueryEnd":
        """error: (SQLSTATE, message) of the interval's first ErrorResponse, if any."""
        if error is None:
            return cls(session_id, seq, endtime, "success")
        code, message = error
        return cls(session_id, seq, endtime, "canceled" if code == "57014" else "failed", message[:512])

    def apply(self, record: ActivityRecord) -> None:
        record.endtime, record.status, record.error_message = self.endtime, self.status, self.error_message


# Written instead of a statement that may hold a secret and cannot be read as the session reads
# it, and instead of an error message that may quote a secret.
UNREADABLE = "(statement not logged: it could not be scanned and may hold a password)"
ERROR_NOT_LOGGED = "(error message not logged: it may quote a password)"
# Tokens that can stand for a secret after PASSWORD or PARAMETERS: every kind of constant, and
# names (PostgreSQL refuses them there, but the statement is logged before it runs).
_SECRET_TOKENS = ("SCONST", "USCONST", "BCONST", "XCONST", "ICONST", "FCONST", "IDENT", "UIDENT")
_CONSTANT_TOKENS = ("SCONST", "USCONST", "BCONST", "XCONST", "ICONST", "FCONST")


@dataclass(frozen=True)
class Redacted:
    """A statement as the logs show it (redact_statement), and what was taken out of it."""

    text: str
    secrets: tuple[str, ...] = ()   # what was taken out: source text, and values where known
    opaque: bool = False            # something taken out has a value not known here

    @property
    def holds_secrets(self) -> bool:
        return bool(self.secrets) or self.opaque

    def error_message(self, message: str) -> str:
        """The statement's error message as sys_query_history keeps it: PostgreSQL's and the
        proxy's syntax errors quote the text near them, which may be what was taken out. Not
        kept when it holds any run of three or more characters of that (between quotes, dollar
        signs, backslashes and spaces), when that has no such run, or when its value is not known."""
        if not self.holds_secrets:
            return message
        runs = [run for secret in self.secrets for run in re.findall(r"[^\s'\"$\\]{3,}", secret)]
        if self.opaque or not runs or any(run in message for run in runs):
            return ERROR_NOT_LOGGED
        return message


def redact_passwords(sql: str, standard_strings: bool) -> str:
    """redact_statement's text."""
    return redact_statement(sql, standard_strings).text


def redact_statement(sql: str, standard_strings: bool) -> Redacted:
    """The statement as a session with standard_conforming_strings = standard_strings reads it,
    with what follows PASSWORD replaced by '***' (CREATE/ALTER USER and ROLE passwords, in any of
    Redshift's forms and any way of writing a constant, comments in between included), likewise
    what follows COPY's and UNLOAD's SECRET_ACCESS_KEY, SESSION_TOKEN and CREDENTIALS, and the
    secrets in the PARAMETERS JSON of CREATE/ALTER IDENTITY PROVIDER replaced by "***" (the whole
    constant when it is not a JSON string). A statement holding a constant with a backslash is
    logged as tokens.as_read writes it (as E'...' constants of the values the session reads), so
    that where each constant ends is read the same way here and in PostgreSQL. One that cannot be
    scanned at all is not logged: UNREADABLE stands for it."""
    lowered = sql.lower()
    if not any(word in lowered for word in SECRET_WORDS):
        return Redacted(sql)
    try:
        text = as_read(sql, standard_strings)
        tokens = scan(text)
    except GrammarError:
        return Redacted(UNREADABLE, opaque=True)
    pieces, secrets, opaque, cursor, index = [], [], False, 0, 0
    while index < len(tokens):
        word = tokens[index].word
        index += 1
        if word.lower() not in SECRET_WORDS:
            continue
        first = index
        while index < len(tokens) and (tokens[index].text == "=" or tokens[index].name == "NCHAR"
                                       or (word == "CREDENTIALS" and tokens[index].word == "AS")):
            index += 1  # PASSWORD = '...', N'...': refused by PostgreSQL, and still secret
        if index == len(tokens) or tokens[index].name not in _SECRET_TOKENS:
            index = first
            continue
        secret = tokens[index]
        index += 1
        while index < len(tokens) and (tokens[index].name in _CONSTANT_TOKENS or tokens[index].name == "UESCAPE"):
            index += 1  # more constants, U&'...' UESCAPE '!'
        pieces.append(text[cursor:tokens[first - 1].end])
        redacted = None
        if word == "PARAMETERS" and secret.name == "SCONST" and index == first + 1:
            redacted = _redacted_parameters(secret)
        if redacted is not None:
            pieces.append(" " + redacted[0])
            secrets.extend(redacted[1])
        else:
            pieces.append(" '***'")
            secrets.append(text[secret.start:tokens[index - 1].end])
            try:
                secrets.append(string_value(secret) if secret.name == "SCONST" else secret.text)
                opaque = opaque or secret.name not in ("SCONST", "ICONST", "FCONST", "IDENT")
            except GrammarError:  # numeric escapes
                opaque = True
        cursor = tokens[index - 1].end
    pieces.append(text[cursor:])
    return Redacted("".join(pieces), tuple(secrets), opaque)


def _redacted_parameters(token) -> tuple[str, list[str]] | None:
    """The PARAMETERS JSON with its secrets replaced, and the secrets; None when it is not a
    JSON object (or a constant string_value does not read)."""
    try:
        params = json.loads(string_value(token))
    except (ValueError, GrammarError):
        return None
    if not isinstance(params, dict):
        return None
    secrets = []
    for key in SECRET_PARAMETERS:
        if key in params:
            secrets.append(str(params[key]))
            params[key] = "***"
    return "'" + json.dumps(params).replace("'", "''") + "'", secrets
