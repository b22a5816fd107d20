"""The Redshift Data API (`redshift-data`, AWS JSON 1.1, X-Amz-Target RedshiftData.<Action>) on
the API port: ExecuteStatement, BatchExecuteStatement, DescribeStatement, GetStatementResult,
ListStatements, CancelStatement, ListDatabases, ListSchemas, ListTables, DescribeTable.

Every request is SigV4-verified (service redshift-data) and its action authorised by the IAM
policy engine as redshift-data:<Action> (on the cluster's ARN for the actions that reach a
database, "*" for those on statements, as AWS's service authorization reference lists them).
The database session is then decided exactly as GetClusterCredentials decides a DbUser (the
caller needs redshift:GetClusterCredentials on that dbuser, and JoinGroup/CreateClusterUser
as it asks) or, without DbUser, as GetClusterCredentialsWithIAM decides the caller's own
identity: the RedshiftApi's code, not a copy. SecretArn is refused: shiftguard keeps no
Secrets Manager.

Statements run asynchronously through the proxy's own frontend (iam/data_sessions.py). They
and their results are kept 24 hours in this proxy's memory, visible only to the principal who
ran them (a role's other sessions too, as ListStatements' RoleLevel says); another proxy on the
same backend does not know them, and a restart forgets them. This module owns the wire
shapes, the statement store and its scoping; it reads no SQL itself."""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import json
import logging
import re
import time
import uuid
from dataclasses import dataclass, field
from typing import NamedTuple

from ..backend.session import BackendRefused, BackendUnavailable
from ..catalog.store import BACKEND_FAILURES
from ..endpoint import ConnectionClosed
from ..protocol import messages as m
from ..policy.tokens import GrammarError, sql_literal
from .api import ApiError, RedshiftApi
from .data_sessions import (DataSession, Result, StatementFailed, column_metadata, described, named_parameters,
                            typed_field)
from .policy import evaluate
from .principals import Principal
from .sigv4 import SignatureError
from .sts import caller_context
from .tokens import Minted

log = logging.getLogger(__name__)

TARGET_PREFIX = "RedshiftData."
RETENTION_SECONDS = 24 * 3600  # results are kept 24 hours, as on AWS
MAX_RESULT_BYTES = 100 << 20   # a statement's result: 100 MB, the Data API's documented limit
# shiftguard's choices (AWS documents no exact figures): a GetStatementResult page holds about
# 1 MB of values; a caller has at most 200 statements running; all kept results together hold at
# most 1 GB, beyond which the oldest are dropped (GetStatementResult then says they expired).
PAGE_BYTES = 1 << 20
ACTIVE_LIMIT = 200
STORED_BYTES = 1 << 30
KEPT_PER_CALLER = 10_000  # statements kept for a caller; its oldest ended ones go first
MAX_SQL_CHARS = 100_000
ACTIVE = ("SUBMITTED", "PICKED", "STARTED")
_ID = re.compile(r"([a-z0-9]{8}(?:-[a-z0-9]{4}){3}-[a-z0-9]{12})(?::(\d{1,2}))?")
_PARAMETER_NAME = re.compile(r"[0-9a-zA-Z_]+")
# Query-protocol faults of the RedshiftApi's credential decision, as the Data API reports them.
_CREDENTIAL_FAULTS = {"AccessDenied": "AccessDeniedException"}
# SigV4 refusals as AWS's JSON services code them.
_SIGNATURE_FAULTS = {"InvalidClientTokenId": "UnrecognizedClientException",
                     "SignatureDoesNotMatch": "InvalidSignatureException", "ExpiredToken": "ExpiredTokenException"}


class DataApiError(Exception):
    def __init__(self, code: str, message: str, status: int = 400, **members):
        super().__init__(message)
        self.code, self.status, self.members = code, status, members


def _validation(message: str) -> DataApiError:
    return DataApiError("ValidationException", message)


def _not_found(statement_id: str, message: str = "Query does not exist.") -> DataApiError:
    return DataApiError("ResourceNotFoundException", message, ResourceId=statement_id)


@dataclass(frozen=True)
class Reply:
    status: int
    body: str


@dataclass
class Part:
    """One SQL of a statement (a batch has several, the others one)."""
    sql: str
    status: str = "SUBMITTED"
    error: str = ""
    result: Result | None = None
    metadata: list[dict] | None = None
    types: list[str] = field(default_factory=list)
    created: float = field(default_factory=time.time)
    updated: float = field(default_factory=time.time)
    duration: int = -1  # nanoseconds

    def shape(self) -> dict:
        result = self.result
        return {"Status": self.status, "CreatedAt": self.created, "UpdatedAt": self.updated,
                "QueryString": self.sql, "Duration": self.duration, "RedshiftQueryId": 0,
                "HasResultSet": bool(result is not None and result.columns is not None),
                "ResultRows": result.affected if result is not None else -1,
                "ResultSize": result.size if result is not None else 0,
                **({"Error": self.error} if self.error else {})}


@dataclass
class Statement:
    id: str
    caller: str   # the principal's ARN (a role session's, with its session name)
    role: str     # the role's ARN for a role session, else the caller's
    cluster: str
    database: str
    db_user: str
    name: str
    parameters: list[dict]
    batch: bool
    parts: list[Part]
    created: float = field(default_factory=time.time)
    updated: float = field(default_factory=time.time)
    status: str = "SUBMITTED"
    error: str = ""
    pid: int = 0
    cancelled: bool = False
    session: DataSession | None = None
    done: asyncio.Event = field(default_factory=asyncio.Event)

    def set_status(self, status: str, error: str = "") -> None:
        self.status, self.error, self.updated = status, error or self.error, time.time()

    @property
    def result_bytes(self) -> int:
        return sum(p.result.size for p in self.parts if p.result is not None)


class Login(NamedTuple):
    """A credential minted for one Data API session, and the cluster it logs in to."""

    minted: Minted
    api: RedshiftApi
    context: object


class DataApi:
    def __init__(self, redshift: RedshiftApi, context):
        """redshift: the RedshiftApi, whose callers, configuration and credential decisions are
        shared; context: the frontend's Context, whose Connection code serves the sessions."""
        self.redshift = redshift
        self.context = context
        self.callers = redshift.callers
        self.statements: dict[str, Statement] = {}
        self._tokens: dict[tuple[str, str], tuple[str, float]] = {}  # (caller, ClientToken) -> id

    # ---------------------------------------------------------------- the wire

    async def handle(self, method: str, url: str, headers: dict[str, str], body: bytes, source_ip: str) -> Reply:
        action = headers.get("X-Amz-Target", "").removeprefix(TARGET_PREFIX)
        try:
            principal = await self.callers.authenticate(method, url, headers, body, service="redshift-data",
                                                        region=self.redshift.config.cluster.region)
            handler = {
                "ExecuteStatement": self._execute_statement,
                "BatchExecuteStatement": self._batch_execute_statement,
                "DescribeStatement": self._describe_statement,
                "GetStatementResult": self._get_statement_result,
                "ListStatements": self._list_statements,
                "CancelStatement": self._cancel_statement,
                "ListDatabases": self._list_databases,
                "ListSchemas": self._list_schemas,
                "ListTables": self._list_tables,
                "DescribeTable": self._describe_table,
            }.get(action)
            if handler is None:
                raise DataApiError("UnknownOperationException", f"The operation {action} is not supported.")
            try:
                params = json.loads(body or b"{}")
            except ValueError:
                raise DataApiError("SerializationException", "The request body is not valid JSON.") from None
            if not isinstance(params, dict):
                raise DataApiError("SerializationException", "The request body must be a JSON object.")
            self._expire()
            answer = await handler(params, principal, source_ip)
            log.info("Data API %s by %s from %s: ok", action, principal.arn, source_ip)
            return Reply(200, json.dumps(answer))
        except SignatureError as exc:
            log.info("Data API request from %s refused: %s", source_ip, exc.code)
            return _error(_SIGNATURE_FAULTS.get(exc.code, exc.code), str(exc), 400)
        except DataApiError as exc:
            log.info("Data API %s from %s failed: %s %s", action, source_ip, exc.code, exc)
            return _error(exc.code, str(exc), exc.status, **exc.members)
        except BACKEND_FAILURES as exc:  # minting a credential records it in the backing database
            log.error("Data API %s from %s: the backing database failed: %s: %s", action, source_ip,
                      type(exc).__name__, exc)
            return _error("InternalServerException", "The backing database is unavailable; try again.", 500)
        except Exception:  # noqa: BLE001 - a bug of ours: AWS-shaped, logged
            log.exception("Data API %s from %s failed", action, source_ip)
            return _error("InternalServerException", "The request failed; the proxy's log says why.", 500)

    def _authorize(self, principal: Principal, action: str, resource: str, source_ip: str) -> None:
        context = caller_context(principal, source_ip, self.callers.clock())
        decision = evaluate(principal.policies, f"redshift-data:{action}", resource, context)
        if not decision.allowed:
            raise DataApiError("AccessDeniedException", f"User: {principal.arn} is not authorized to perform: "
                                                        f"redshift-data:{action} on resource: {resource}"
                               + (" with an explicit deny" if decision.explicit_deny else ""))

    def _cluster_arn(self, params: dict) -> str:
        if params.get("WorkgroupName"):
            raise _validation("WorkgroupName names a Redshift Serverless workgroup; shiftguard serves a "
                              "provisioned cluster: give ClusterIdentifier")
        identifier = _string(params, "ClusterIdentifier", required=True)
        cluster = self.redshift.config.cluster
        return f"arn:aws:redshift:{cluster.region}:{cluster.account_id}:cluster:{identifier}"

    def _cluster(self, identifier: str):
        """The RedshiftApi and the frontend Context of the cluster identifier names: a cluster
        CreateCluster made (fleet.py) has its own; any other name is this one's (whose
        GetClusterCredentials refuses a name that is not its own)."""
        member = self.redshift.fleet.get(identifier) if self.redshift.fleet is not None else None
        if member is None:
            return self.redshift, self.context
        if member.api is None:
            raise _validation(f"Cluster {identifier} is {member.status}, not available.")
        return member.api, member.proxy.context

    async def _credentials(self, params: dict, principal: Principal, source_ip: str, database: str) -> Login:
        """A credential for a session as the request's DbUser, or as the caller's IAM identity,
        minted by the cluster's RedshiftApi's own GetClusterCredentials(WithIAM) decision."""
        if params.get("SecretArn"):
            # No Secrets Manager here, and a password kept in shiftguard's configuration for it
            # would be a second way to log in that IAM does not govern.
            raise _validation("SecretArn is not supported by shiftguard (there is no Secrets Manager): give DbUser, "
                              "or neither to connect as your IAM identity")
        request = {"ClusterIdentifier": params["ClusterIdentifier"], "DbName": database}
        db_user = _string(params, "DbUser")
        api, context = self._cluster(params["ClusterIdentifier"])
        try:
            if db_user:
                minted = await api.cluster_credentials({**request, "DbUser": db_user}, principal, source_ip)
            else:
                minted = await api.cluster_credentials_with_iam(request, principal, source_ip)
        except ApiError as exc:
            raise DataApiError(_CREDENTIAL_FAULTS.get(exc.code, "ValidationException"), str(exc)) from None
        return Login(minted, api, context)

    async def _log_in(self, login: Login, database: str, statement_id: str) -> DataSession:
        """A session logged in with the login's credential, which is then revoked: it serves one
        login, and no live credential piles up per statement (a login reads its user's live ones)."""
        minted = login.minted
        try:
            return await DataSession.open(login.context, minted.db_user, minted.password, database,
                                          f"Redshift Data API {statement_id}")
        finally:
            try:
                await login.api.catalog.revoke_tokens(token_id=minted.token_id)
            except BACKEND_FAILURES as exc:  # it expires on its own
                log.warning("could not revoke a Data API credential: %s: %s", type(exc).__name__, exc)

    # ---------------------------------------------------------------- statements

    async def _execute_statement(self, params: dict, principal: Principal, source_ip: str) -> dict:
        sql = _sql(_string(params, "Sql", required=True))
        return await self._submit(params, principal, source_ip, [sql], batch=False)

    async def _batch_execute_statement(self, params: dict, principal: Principal, source_ip: str) -> dict:
        sqls = params.get("Sqls")
        if not isinstance(sqls, list) or not 1 <= len(sqls) <= 40 or not all(isinstance(s, str) for s in sqls):
            raise _validation("Sqls must be a list of 1 to 40 SQL statements")
        return await self._submit(params, principal, source_ip, [_sql(s) for s in sqls], batch=True)

    async def _submit(self, params: dict, principal: Principal, source_ip: str, sqls: list[str], batch: bool) -> dict:
        resource = self._cluster_arn(params)
        self._authorize(principal, "BatchExecuteStatement" if batch else "ExecuteStatement", resource, source_ip)
        database = _string(params, "Database", required=True)
        for unsupported in ("SessionId", "SessionKeepAliveSeconds"):
            if params.get(unsupported) is not None:
                raise _validation(f"{unsupported}: sessions kept between statements are not supported by shiftguard")
        if params.get("ResultFormat", "JSON") != "JSON":
            raise _validation("ResultFormat CSV (GetStatementResultV2) is not supported by shiftguard; use JSON")
        values = _parameters(params.get("Parameters"))
        token = _string(params, "ClientToken")
        if token and (principal.arn, token) in self._tokens:  # a retry of the same request
            earlier = self.statements.get(self._tokens[(principal.arn, token)][0])
            if earlier is not None:
                return self._submitted(earlier)
        active = sum(1 for s in self.statements.values() if s.caller == principal.arn and s.status in ACTIVE)
        if active >= ACTIVE_LIMIT:
            raise DataApiError("ActiveStatementsExceededException",
                               f"You have {active} statements running, the most shiftguard runs for one caller")
        statement_id = str(uuid.uuid4())
        login = await self._credentials(params, principal, source_ip, database)
        statement = Statement(
            statement_id, principal.arn, principal.principal_arn or principal.arn, params["ClusterIdentifier"],
            database, _string(params, "DbUser") or login.minted.db_user, _string(params, "StatementName"),
            [{"name": k, "value": v} for k, v in values.items()], batch, [Part(sql) for sql in sqls])
        self._forget_oldest(principal.arn)
        self.statements[statement_id] = statement
        if token:
            self._tokens[(principal.arn, token)] = (statement_id, time.time())
        self.context.spawn(self._run(statement, login, values))
        return self._submitted(statement)

    @staticmethod
    def _submitted(statement: Statement) -> dict:
        return {"Id": statement.id, "CreatedAt": statement.created, "ClusterIdentifier": statement.cluster,
                "Database": statement.database, "DbUser": statement.db_user}

    async def _run(self, statement: Statement, login: Login, values: dict[str, str]) -> None:
        """The statement's life after ExecuteStatement answered: log in, run each SQL (a batch
        in one transaction, rolled back at its first failure), keep the results."""
        statement.set_status("PICKED")
        try:
            try:
                session = await self._log_in(login, statement.database, statement.id)
            except BackendRefused as exc:
                return self._fail(statement, statement.parts[0], described(exc.fields, "the login was refused"))
            except BackendUnavailable as exc:
                return self._fail(statement, statement.parts[0], described(None, str(exc)))
            statement.session, statement.pid = session, session.pid
            try:
                await self._run_parts(statement, session, values)
            finally:
                statement.session = None
                session.close()
        except (StatementFailed, BackendUnavailable, ConnectionError, ConnectionClosed, m.ProtocolViolation) as exc:
            message = str(exc) if isinstance(exc, StatementFailed) else described(None, str(exc) or type(exc).__name__)
            self._fail(statement, next((p for p in statement.parts if p.status == "STARTED"), statement.parts[-1]),
                       message)
        finally:
            statement.done.set()

    async def _run_parts(self, statement: Statement, session: DataSession, values: dict[str, str]) -> None:
        statement.set_status("STARTED")
        sqls = [p.sql for p in statement.parts]
        try:
            sqls = named_parameters(sqls, values, session.standard_strings) if values else sqls
        except GrammarError as exc:
            return self._fail(statement, statement.parts[0], described(None, str(exc)))
        if statement.batch:
            await session.run("BEGIN", MAX_RESULT_BYTES)
        for part, sql in zip(statement.parts, sqls):
            if statement.cancelled:
                return self._fail(statement, part, "")
            part.status, part.updated, started = "STARTED", time.time(), time.monotonic_ns()
            try:
                part.result = await session.run(sql, MAX_RESULT_BYTES)
            except StatementFailed as exc:
                part.duration = time.monotonic_ns() - started
                if statement.batch:  # before the failure is told: nothing of the batch stays
                    with contextlib.suppress(StatementFailed):
                        await session.run("ROLLBACK", MAX_RESULT_BYTES)
                return self._fail(statement, part, str(exc))
            part.duration = time.monotonic_ns() - started
            part.status, part.updated = "FINISHED", time.time()
        if statement.batch:
            await session.run("COMMIT", MAX_RESULT_BYTES)
        with_rows = [p for p in statement.parts if p.result is not None and p.result.columns is not None]
        for part, metadata in zip(with_rows, await session.describe_columns([p.result for p in with_rows])):
            part.metadata, part.types = metadata, [c["typeName"] for c in metadata]
        statement.set_status("FINISHED")
        self._keep_within(STORED_BYTES)

    def _fail(self, statement: Statement, part: Part, error: str) -> None:
        """The statement failed at part (ABORTED when the caller cancelled it); in a batch the
        parts after it never ran, and those before it were rolled back."""
        status = "ABORTED" if statement.cancelled else "FAILED"
        if statement.cancelled:
            error = "Query cancelled by the user"  # UNVERIFIED: the Data API's wording
        failed = statement.parts.index(part)
        for later in statement.parts[failed:]:
            later.status, later.updated = status if later is part else "ABORTED", time.time()
        part.error = error
        statement.set_status(status, error)
        log.info("Data API statement %s of %s %s: %s", statement.id, statement.caller, status.lower(), error)

    def _keep_within(self, limit: int) -> None:
        """Drop the oldest results while all kept results hold more than limit bytes."""
        kept = sorted((s for s in self.statements.values() if s.result_bytes), key=lambda s: s.created)
        total = sum(s.result_bytes for s in kept)
        for statement in kept:
            if total <= limit:
                break
            total -= statement.result_bytes
            for part in statement.parts:
                part.result = part.metadata = None
                part.types = []

    def _forget_oldest(self, caller: str) -> None:
        """Room for one more statement of caller within KEPT_PER_CALLER."""
        kept = [s for s in self.statements.values() if s.caller == caller]
        ended = sorted((s for s in kept if s.status not in ACTIVE), key=lambda s: s.created)
        for statement in ended[:max(0, len(kept) + 1 - KEPT_PER_CALLER)]:
            del self.statements[statement.id]

    def _expire(self) -> None:
        cutoff = time.time() - RETENTION_SECONDS
        for statement_id in [i for i, s in self.statements.items() if s.created < cutoff and s.status not in ACTIVE]:
            del self.statements[statement_id]
        for key in [k for k, (_, made) in self._tokens.items() if made < cutoff]:
            del self._tokens[key]

    def _own(self, principal: Principal, params: dict, field_name: str = "Id") -> tuple[Statement, int | None]:
        """The caller's statement that Id names (and the sub-statement number after ':'); another
        principal's is as unknown as one that never existed."""
        given = _string(params, field_name, required=True)
        match = _ID.fullmatch(given)
        if match is None:
            raise _validation(f"{field_name} {given!r} is not a statement ID (a UUID, with :N for a batch's N-th)")
        statement = self.statements.get(match.group(1))
        if statement is None or (statement.caller != principal.arn and statement.role != (principal.principal_arn
                                                                                           or principal.arn)):
            raise _not_found(given)
        number = int(match.group(2)) if match.group(2) else None
        if number is not None and not (statement.batch and 1 <= number <= len(statement.parts)):
            raise _not_found(given)
        return statement, number

    async def _describe_statement(self, params: dict, principal: Principal, source_ip: str) -> dict:
        self._authorize(principal, "DescribeStatement", "*", source_ip)
        statement, number = self._own(principal, params)
        parts = statement.parts
        if number is not None:
            return {"Id": f"{statement.id}:{number}", **self._header(statement), **parts[number - 1].shape()}
        answer = {"Id": statement.id, **self._header(statement), "Status": statement.status,
                  "CreatedAt": statement.created, "UpdatedAt": statement.updated, "RedshiftQueryId": 0,
                  **({"Error": statement.error} if statement.error else {})}
        if not statement.batch:
            return {**answer, **{k: v for k, v in parts[0].shape().items() if k not in ("CreatedAt", "Status")}}
        finished = [p for p in parts if p.duration >= 0]
        return {**answer, "QueryString": "; ".join(p.sql for p in parts),
                "Duration": sum(p.duration for p in finished) if finished else -1,
                "HasResultSet": any(p.shape()["HasResultSet"] for p in parts),
                "ResultRows": sum(max(p.shape()["ResultRows"], 0) for p in parts),
                "ResultSize": sum(p.shape()["ResultSize"] for p in parts),
                "SubStatements": [{"Id": f"{statement.id}:{n}", **p.shape()} for n, p in enumerate(parts, 1)]}

    @staticmethod
    def _header(statement: Statement) -> dict:
        return {"ClusterIdentifier": statement.cluster, "Database": statement.database, "DbUser": statement.db_user,
                "RedshiftPid": statement.pid, "ResultFormat": "JSON",
                **({"QueryParameters": statement.parameters} if statement.parameters else {})}

    async def _get_statement_result(self, params: dict, principal: Principal, source_ip: str) -> dict:
        self._authorize(principal, "GetStatementResult", "*", source_ip)
        statement, number = self._own(principal, params)
        if statement.batch and number is None:
            raise _validation(f"{statement.id} is a batch: give a sub-statement's ID, such as {statement.id}:1")
        part = statement.parts[(number or 1) - 1]
        if part.status != "FINISHED" or statement.status != "FINISHED":
            raise _not_found(params["Id"], "Query does not have result. Please check query status with "
                                           "DescribeStatement.")
        if part.result is None or part.result.columns is None:
            message = "Query does not have result." if part.result is not None else \
                "The query's result is no longer kept: the results kept by this proxy reached their limit."
            raise _not_found(params["Id"], message)
        raw = part.result.raw
        start = _offset(params.get("NextToken"), len(raw))
        end, size = start, 0
        while end < len(raw) and (end == start or size < PAGE_BYTES):
            size += len(raw[end])
            end += 1
        records = [[typed_field(t, v) for t, v in zip(part.types, m.decode_data_row(body))] for body in raw[start:end]]
        return {"Records": records, "ColumnMetadata": part.metadata, "TotalNumRows": len(raw),
                **({"NextToken": _token(end)} if end < len(raw) else {})}

    async def _list_statements(self, params: dict, principal: Principal, source_ip: str) -> dict:
        self._authorize(principal, "ListStatements", "*", source_ip)
        status, name = params.get("Status", "ALL"), _string(params, "StatementName")
        if status not in ("ALL", *ACTIVE, "FINISHED", "FAILED", "ABORTED"):
            raise _validation(f"Status {status!r} is not one of ALL, SUBMITTED, PICKED, STARTED, FINISHED, FAILED, "
                              f"ABORTED")
        role_level = params.get("RoleLevel", True) is not False
        limit = _limit(params, "MaxResults", 100)
        mine = [s for s in self.statements.values()
                if (s.role == (principal.principal_arn or principal.arn) if role_level else s.caller == principal.arn)
                and status in ("ALL", s.status) and s.name.startswith(name)
                and _string(params, "Database") in ("", s.database)]
        mine.sort(key=lambda s: s.created, reverse=True)
        start = _offset(params.get("NextToken"), len(mine))
        page = mine[start:start + limit]
        return {"Statements": [{"Id": s.id, "Status": s.status, "CreatedAt": s.created, "UpdatedAt": s.updated,
                                "IsBatchStatement": s.batch, "ResultFormat": "JSON",
                                **({"StatementName": s.name} if s.name else {}),
                                **({"QueryParameters": s.parameters} if s.parameters else {}),
                                **({"QueryStrings": [p.sql for p in s.parts]} if s.batch
                                   else {"QueryString": s.parts[0].sql})} for s in page],
                **({"NextToken": _token(start + limit)} if start + limit < len(mine) else {})}

    async def _cancel_statement(self, params: dict, principal: Principal, source_ip: str) -> dict:
        self._authorize(principal, "CancelStatement", "*", source_ip)
        statement, _ = self._own(principal, params)
        if statement.status not in ACTIVE:
            raise _validation(f"Could not cancel a query that is already in {statement.status} state.")
        statement.cancelled = True
        # A CancelRequest that arrives between two statements of the session does nothing: it is
        # sent again until the statement ends (each SQL also looks at the flag before it starts).
        for _ in range(10):
            if statement.session is not None:
                try:
                    await statement.session.cancel()
                except (BackendUnavailable, OSError) as exc:
                    raise DataApiError("DatabaseConnectionException", f"Could not cancel the query: {exc}") from None
            try:
                async with asyncio.timeout(1):
                    await statement.done.wait()
                break
            except TimeoutError:
                continue
        return {"Status": True}

    # ---------------------------------------------------------------- the catalog

    async def _catalog(self, action: str, params: dict, principal: Principal, source_ip: str, sql: str,
                       page_field: str = "MaxResults") -> tuple[list[list[bytes | None]], int, int]:
        """sql's rows, run as the caller's database user (so that its privileges decide what it
        sees); the page asked for (start, end)."""
        self._authorize(principal, action, self._cluster_arn(params), source_ip)
        database = _string(params, "Database", required=True)
        connected = _string(params, "ConnectedDatabase")
        if connected and connected != database:
            raise _validation("ConnectedDatabase must be Database itself here: shiftguard has no datashares")
        try:
            session = await self._log_in(await self._credentials(params, principal, source_ip, database), database,
                                         str(uuid.uuid4()))
        except (BackendRefused, BackendUnavailable) as exc:
            fields = exc.fields if isinstance(exc, BackendRefused) else None
            raise DataApiError("DatabaseConnectionException", described(fields, str(exc))) from None
        try:
            rows = (await session.run_ours(sql, MAX_RESULT_BYTES)).rows
        except StatementFailed as exc:
            raise DataApiError("DatabaseConnectionException", str(exc)) from None
        finally:
            session.close()
        start = _offset(params.get("NextToken"), len(rows))
        return rows, start, min(len(rows), start + _limit(params, page_field, 1000))

    async def _list_databases(self, params: dict, principal: Principal, source_ip: str) -> dict:
        rows, start, end = await self._catalog(
            "ListDatabases", params, principal, source_ip,
            "SELECT datname FROM pg_catalog.pg_database WHERE NOT datistemplate "
            "AND pg_catalog.has_database_privilege(oid, 'CONNECT') ORDER BY datname")
        return {"Databases": [r[0].decode() for r in rows[start:end]], **_next(end, rows)}

    async def _list_schemas(self, params: dict, principal: Principal, source_ip: str) -> dict:
        pattern = sql_literal(_string(params, "SchemaPattern") or "%")
        rows, start, end = await self._catalog(
            "ListSchemas", params, principal, source_ip,
            f"SELECT nspname FROM pg_catalog.pg_namespace WHERE nspname LIKE {pattern} "
            f"AND nspname NOT LIKE {_SYSTEM_SCHEMAS} "
            f"AND pg_catalog.has_schema_privilege(oid, 'USAGE') ORDER BY nspname")
        return {"Schemas": [r[0].decode() for r in rows[start:end]], **_next(end, rows)}

    async def _list_tables(self, params: dict, principal: Principal, source_ip: str) -> dict:
        rows, start, end = await self._catalog(
            "ListTables", params, principal, source_ip,
            f"SELECT c.relname, n.nspname, CASE c.relkind WHEN 'v' THEN 'VIEW' WHEN 'm' THEN 'MATERIALIZED VIEW' "
            f"WHEN 'f' THEN 'EXTERNAL TABLE' ELSE 'TABLE' END {_tables(params)} ORDER BY n.nspname, c.relname")
        return {"Tables": [{"name": name.decode(), "schema": schema.decode(), "type": kind.decode()}
                           for name, schema, kind in rows[start:end]], **_next(end, rows)}

    async def _describe_table(self, params: dict, principal: Principal, source_ip: str) -> dict:
        table = _string(params, "Table")
        rows, start, end = await self._catalog(
            "DescribeTable", params, principal, source_ip,
            "SELECT n.nspname, c.relname, a.attname, t.typname, a.atttypmod, a.attnotnull, "
            "pg_catalog.pg_get_expr(d.adbin, d.adrelid) " + _tables(params, exact=True, joins=(
                "JOIN pg_catalog.pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped "
                "AND pg_catalog.has_column_privilege(c.oid, a.attnum, 'SELECT, INSERT, UPDATE, REFERENCES') "
                "JOIN pg_catalog.pg_type t ON t.oid = a.atttypid "
                "LEFT JOIN pg_catalog.pg_attrdef d ON d.adrelid = c.oid AND d.adnum = a.attnum"))
            + " ORDER BY n.nspname, c.relname, a.attnum")
        columns = []
        for schema, relation, name, type_name, modifier, not_null, default in rows[start:end]:
            described = column_metadata(_Column(name.decode(), int(modifier)), type_name.decode(),
                                        (schema.decode(), relation.decode(), not_null == b"t"))
            columns.append({**described, **({"columnDefault": default.decode()} if default is not None else {})})
        return {**({"TableName": table} if table else {}), "ColumnList": columns, **_next(end, rows)}


@dataclass(frozen=True)
class _Column:
    """What column_metadata reads of a catalog column (as of a RowDescription's field)."""
    name: str
    type_modifier: int


def _tables(params: dict, exact: bool = False, joins: str = "") -> str:
    """FROM ... WHERE of the tables, views and materialized views (c, in schema n, and joins)
    that match the request's SchemaPattern and TablePattern (LIKE patterns), or with exact, its
    Schema and Table (names), and on which the user holds a privilege, in schemas it may use."""
    def pattern(name: str) -> str:
        given = _string(params, name)
        if exact and given:
            given = given.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        return sql_literal(given or "%")

    schema = pattern("Schema" if exact else "SchemaPattern")
    table = pattern("Table" if exact else "TablePattern")
    return (f"FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace {joins} "
            f"WHERE c.relkind IN ('r', 'p', 'v', 'm', 'f') AND n.nspname LIKE {schema} "
            f"AND c.relname LIKE {table} AND pg_catalog.has_schema_privilege(n.oid, 'USAGE') "
            f"AND pg_catalog.has_table_privilege(c.oid, 'SELECT, INSERT, UPDATE, DELETE, TRUNCATE, REFERENCES')")


_SYSTEM_SCHEMAS = sql_literal("pg\\_t%")  # pg_toast, pg_temp_N: not listed


def _error(code: str, message: str, status: int, **members) -> Reply:
    """An AWS JSON 1.1 error, as botocore reads it: __type is the code, message the text."""
    return Reply(status, json.dumps({"__type": code, "message": message, **members}))


def _string(params: dict, name: str, required: bool = False) -> str:
    value = params.get(name)
    if value is None or value == "":
        if required:
            raise _validation(f"{name} is required")
        return ""
    if not isinstance(value, str):
        raise _validation(f"{name} must be a string")
    return value


def _sql(sql: str) -> str:
    if not sql.strip():
        raise _validation("The SQL statement is empty")
    if len(sql) > MAX_SQL_CHARS:
        raise _validation(f"The SQL statement is longer than {MAX_SQL_CHARS} characters")
    return sql


def _parameters(given) -> dict[str, str]:
    if given is None:
        return {}
    if not isinstance(given, list) or not all(isinstance(p, dict) for p in given):
        raise _validation("Parameters must be a list of {name, value}")
    values = {}
    for parameter in given:
        name, value = parameter.get("name"), parameter.get("value")
        if not isinstance(name, str) or not _PARAMETER_NAME.fullmatch(name):
            raise _validation(f"Parameter name {name!r} is not valid: letters, digits and underscores")
        if not isinstance(value, str) or not value:
            raise _validation(f"Parameter {name} needs a value (a non-empty string)")
        if name in values:
            raise _validation(f"Parameter {name} is given twice")
        values[name] = value
    return values


def _limit(params: dict, name: str, most: int) -> int:
    value = params.get(name)
    if value is None or value == 0:
        return most
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= most:
        raise _validation(f"{name} must be a number from 0 to {most}")
    return value


def _token(offset: int) -> str:
    return base64.urlsafe_b64encode(json.dumps({"offset": offset}).encode()).decode()


def _offset(token, total: int) -> int:
    """Where a NextToken says to go on (the start without one)."""
    if token is None or token == "":
        return 0
    try:
        offset = json.loads(base64.urlsafe_b64decode(str(token).encode()))["offset"]
    except (binascii.Error, ValueError, KeyError, TypeError):
        offset = None
    if not isinstance(offset, int) or isinstance(offset, bool) or not 0 <= offset <= total:
        raise _validation("NextToken is not valid")
    return offset


def _next(end: int, rows: list) -> dict:
    return {"NextToken": _token(end)} if end < len(rows) else {}
