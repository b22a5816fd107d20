"""Redshift's three audit logs, as records and as the lines Redshift writes (reference §7).
Pure: records in, text out.

connectionlog: '|'-separated, space-padded, in STL_CONNECTION_LOG's column order, timestamps
as 'Mon, 7 Dec 2020 20:01:55:177'. userlog: STL_USERLOG's order. useractivitylog:
"'2020-12-08T22:00:03Z UTC [ db=dev user=rdsdb pid=685 userid=1 xid=245578 ]' LOG: <sql>".
"""

from __future__ import annotations

import datetime
import json
from dataclasses import dataclass, field

from ..policy.idp import SECRET_PARAMETERS
from ..policy.tokens import GrammarError, scan, string_value

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


def redact_passwords(sql: str) -> str:
    """The statement with every string constant after PASSWORD replaced by '***' (CREATE/ALTER
    USER passwords, in any of Redshift's forms), and the secrets in the PARAMETERS JSON of
    CREATE/ALTER IDENTITY PROVIDER replaced by "***" (the whole constant when it is not JSON)."""
    lowered = sql.lower()
    if "password" not in lowered and "parameters" not in lowered:
        return sql
    try:
        tokens = scan(sql)
    except GrammarError:
        return "(statement not logged: it could not be scanned and may hold a password)"
    pieces, cursor = [], 0
    for before, token in zip(tokens, tokens[1:]):
        if token.name != "SCONST" or before.word not in ("PASSWORD", "PARAMETERS"):
            continue
        pieces.append(sql[cursor:token.start])
        pieces.append("'***'" if before.word == "PASSWORD" else _redacted_parameters(token))
        cursor = token.end
    pieces.append(sql[cursor:])
    return "".join(pieces)


def _redacted_parameters(token) -> str:
    try:
        params = json.loads(string_value(token))
    except ValueError:
        return "'***'"
    if not isinstance(params, dict):
        return "'***'"
    for key in SECRET_PARAMETERS:
        if key in params:
            params[key] = "***"
    return "'" + json.dumps(params).replace("'", "''") + "'"
