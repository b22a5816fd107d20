"""Redshift's COPY ... FROM 's3://...' and UNLOAD ('select ...') TO 's3://...': pure grammar on
PostgreSQL's scanner tokens, and the private-schema calls they become (catalog/s3.sql).

    COPY table [(column, ...)] FROM 's3://bucket/prefix' authorization
         [[FORMAT [AS]] CSV [QUOTE [AS] 'q']] [DELIMITER [AS] 'd'] [IGNOREHEADER [AS] n] [GZIP]
         [NULL [AS] 'n'] [EMPTYASNULL] [BLANKSASNULL] [ESCAPE] [REGION [AS] 'r']
    UNLOAD ('select ...') TO 's3://bucket/prefix' authorization
         [[FORMAT [AS]] CSV] [HEADER] [DELIMITER [AS] 'd'] [NULL [AS] 'n'] [GZIP] [ESCAPE]
         [PARALLEL {ON | TRUE | OFF | FALSE}] [ALLOWOVERWRITE] [REGION [AS] 'r']
    authorization: IAM_ROLE {'arn' | DEFAULT} | ACCESS_KEY_ID 'k' SECRET_ACCESS_KEY 's'
                   [SESSION_TOKEN 't'] | CREDENTIALS [AS] 's'

    credentials string: 'aws_access_key_id=k;aws_secret_access_key=s[;token=t]' | 'aws_iam_role=arn'

The authorization names an AWS principal whose IAM policies must allow the S3 requests the
statement makes (s3:ListBucket and s3:GetObject for COPY, s3:PutObject and s3:ListBucket for
UNLOAD): an IAM user's access key, an STS session's, or an IAM role of the cluster that the user
holds ASSUMEROLE on. iam/s3access.py judges it here, where the statement is judged; what only the
backing database knows (association, ASSUMEROLE, the STS session) catalog/s3.sql reads when the
ticket is used, against the roles judged here. Everything else Redshift has (PARQUET, JSON,
MANIFEST, FIXEDWIDTH, BZIP2, ...) is refused with SQLSTATE 0A000.

Which files a prefix names, and whether a path escapes its bucket, is not decided here: the
translator's `s3` (proxy/s3.py) answers that from the file system and signs the list it found.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field

from pglast import parser

from ..iam.s3access import Credentials, Request, access_denied, invalid_credentials
from ..protocol import sqlstate
from .tokens import (CALLER_SEARCH_PATH, Cursor, GrammarError, Token, as_read, parse_tree, printed, scan, sql_literal,
                     string_value)


def not_supported(what: str) -> GrammarError:
    return GrammarError(f"{what} is not supported by shiftguard", sqlstate.FEATURE_NOT_SUPPORTED,
                        hint="shiftguard's local S3 reads and writes text and CSV files in the directories "
                             "mapped to buckets by the s3 configuration key")


@dataclass
class Location:
    bucket: str
    prefix: str

    @property
    def url(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}"


@dataclass
class Options:
    csv: bool = False
    delimiter: str | None = None
    quote: str = '"'
    null: str | None = None
    ignoreheader: int = 0
    gzip: bool = False
    emptyasnull: bool = False
    blanksasnull: bool = False
    header: bool = False
    parallel: bool = True
    allowoverwrite: bool = False
    # IAM_ROLE / ACCESS_KEY_ID / SECRET_ACCESS_KEY / SESSION_TOKEN / CREDENTIALS, as written
    # (iam/s3access.py Credentials' fields); secrets, so never in a repr
    credentials: dict[str, str] = field(default_factory=dict, repr=False)

    def copy_format(self, unloading: bool) -> dict:
        """What PostgreSQL's COPY needs. Text is PostgreSQL's text format, which reads and writes
        backslash escapes as Redshift does with its ESCAPE option."""
        return {"format": "csv" if self.csv else "text",
                "delimiter": self.delimiter if self.delimiter is not None else ("," if self.csv else "|"),
                "quote": self.quote,
                # Redshift: COPY reads \N as NULL; UNLOAD writes NULL as an empty field.
                "null": self.null if self.null is not None else ("" if unloading else "\\N"),
                "gzip": self.gzip, "ignoreheader": self.ignoreheader, "header": self.header,
                "emptyasnull": self.emptyasnull, "blanksasnull": self.blanksasnull}


@dataclass
class Copy:
    table: str                      # quoted, possibly qualified: "public"."t"
    columns: list[str]
    source: Location
    options: Options = field(default_factory=Options)


@dataclass
class Unload:
    query: str                      # one SELECT, printed back by PostgreSQL's parser
    target: Location
    options: Options = field(default_factory=Options)


def is_s3_copy(tokens: list[Token]) -> bool:
    """COPY ... FROM 's3://...' (before PostgreSQL's own COPY rules refuse a server file)."""
    if not tokens or tokens[0].word != "COPY":
        return False
    for index, token in enumerate(tokens[:-1]):
        if token.word == "FROM" and tokens[index + 1].name == "SCONST":
            return string_value(tokens[index + 1]).lower().startswith("s3://")
    return False


def is_unload(tokens: list[Token]) -> bool:
    return bool(tokens) and tokens[0].word == "UNLOAD"


# --------------------------------------------------------------------------- COPY


def parse_copy(tokens: list[Token]) -> Copy:
    cursor = Cursor(tokens)
    cursor.expect("COPY")
    table = _qualified_name(cursor)
    columns = []
    if cursor.accept_symbol("("):
        while True:
            columns.append(cursor.name("column name"))
            if cursor.accept_symbol(")"):
                break
            if not cursor.accept_symbol(","):
                raise GrammarError(f'syntax error at or near "{cursor.next().text}": expected , or )')
    cursor.expect("FROM")
    source = _location(cursor)
    options = _options(cursor, unloading=False)
    return Copy(table, columns, source, options)


def _qualified_name(cursor: Cursor) -> str:
    parts = [cursor.name("table name")]
    while cursor.accept_symbol("."):
        parts.append(cursor.name("table name"))
    return ".".join('"' + part.replace('"', '""') + '"' for part in parts)


def _location(cursor: Cursor) -> Location:
    url = cursor.string("s3:// location")
    if not url.lower().startswith("s3://"):
        raise not_supported(f"the data source {url!r} (only s3:// locations)")
    bucket, _, prefix = url[5:].partition("/")
    if not bucket:
        raise GrammarError(f"invalid S3 location {url!r}: no bucket", sqlstate.INVALID_PARAMETER_VALUE)
    return Location(bucket, prefix)


# --------------------------------------------------------------------------- UNLOAD


def parse_unload(statement: str, tokens: list[Token]) -> tuple[str, Unload]:
    """The query text as written and the rest; the caller checks the query."""
    cursor = Cursor(tokens)
    cursor.expect("UNLOAD")
    if not cursor.accept_symbol("("):
        raise GrammarError("syntax error: expected UNLOAD ('select-statement')")
    opening = cursor.peek()
    if opening is None or opening.name != "SCONST":
        raise GrammarError("syntax error: expected UNLOAD ('select-statement')")
    # The session reads string literals as Redshift does (standard_conforming_strings off, so
    # the documentation's 'select ... \'x\'' works); pglast's scanner reads them the standard way,
    # so this one literal is read again from its first character with Redshift's rules.
    query, end = _redshift_literal(statement, opening.start)
    rest = Cursor(scan(statement[end:]))
    if not rest.accept_symbol(")"):
        raise GrammarError("syntax error: expected ) after the UNLOAD query")
    rest.expect("TO")
    target = _location(rest)
    options = _options(rest, unloading=True)
    return query, Unload("", target, options)


def _redshift_literal(text: str, start: int) -> tuple[str, int]:
    """A string constant at text[start] read with standard_conforming_strings off: '' is a
    quote and a backslash escapes the next character. Returns its value and where it ends."""
    index = start
    if text[index] in "eE":
        index += 1
    if text[index] != "'":
        raise GrammarError("syntax error: expected a query in quotes")
    index += 1
    out = []
    simple = {"b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t"}
    while index < len(text):
        char = text[index]
        if char == "\\" and index + 1 < len(text):
            out.append(simple.get(text[index + 1], text[index + 1]))
            index += 2
        elif char == "'":
            if text[index + 1:index + 2] == "'":
                out.append("'")
                index += 2
            else:
                return "".join(out), index + 1
        else:
            out.append(char)
            index += 1
    raise GrammarError("unterminated quoted string in UNLOAD")


def single_select(query: str) -> str:
    """Exactly one SELECT, printed back by PostgreSQL's parser (so nothing else rides along)."""
    try:
        tree = parse_tree(query)
    except parser.ParseError as exc:
        raise GrammarError(f"UNLOAD query: {exc}") from None
    if len(tree) != 1 or type(tree[0].stmt).__name__ != "SelectStmt":
        raise GrammarError("UNLOAD takes exactly one SELECT statement", sqlstate.FEATURE_NOT_SUPPORTED)
    select = tree[0].stmt
    if select.intoClause is not None:
        raise GrammarError("UNLOAD query: SELECT ... INTO is not allowed", sqlstate.FEATURE_NOT_SUPPORTED)
    if select.lockingClause:
        raise GrammarError("UNLOAD query: FOR UPDATE/SHARE is not allowed", sqlstate.FEATURE_NOT_SUPPORTED)
    return printed(tree[0].stmt)


# --------------------------------------------------------------------------- options

_AUTHORIZATION = {"IAM_ROLE", "ACCESS_KEY_ID", "SECRET_ACCESS_KEY", "SESSION_TOKEN", "CREDENTIALS",
                  "MASTER_SYMMETRIC_KEY"}
_OTHER_FORMATS = {"JSON", "AVRO", "PARQUET", "ORC", "FIXEDWIDTH", "SHAPEFILE"}
_OTHER_COMPRESSION = {"BZIP2", "LZOP", "ZSTD"}


def _options(cursor: Cursor, unloading: bool) -> Options:
    options = Options()
    statement = "UNLOAD" if unloading else "COPY"
    while not cursor.at_end():
        if cursor.accept_symbol(","):
            continue
        token = cursor.next()
        word = token.word
        if word in _AUTHORIZATION:
            # Judged by iam/s3access.py when the statement is planned (plan below).
            cursor.accept("AS")
            value = "default" if word == "IAM_ROLE" and cursor.accept("DEFAULT") else cursor.string(f"{word} value")
            if word == "CREDENTIALS":
                _credentials_string(value, options.credentials)
            elif word != "MASTER_SYMMETRIC_KEY":
                _credential(options.credentials, word.lower(), value)
        elif word == "REGION":
            cursor.accept("AS")
            cursor.string("region")
        elif word == "FORMAT":
            cursor.accept("AS")
            fmt = cursor.next()
            if fmt.word != "CSV":
                raise not_supported(f"{statement} FORMAT {fmt.text.upper()}")
            options.csv = True
            _quote(cursor, options)
        elif word == "CSV":
            options.csv = True
            _quote(cursor, options)
        elif word in _OTHER_FORMATS:
            raise not_supported(f"{statement} {word}")
        elif word == "DELIMITER":
            cursor.accept("AS")
            options.delimiter = _one_character(cursor, "DELIMITER")
        elif word == "NULL":
            cursor.accept("AS")
            options.null = cursor.string("NULL AS string")
        elif word == "GZIP":
            options.gzip = True
        elif word in _OTHER_COMPRESSION:
            raise not_supported(f"{statement} {word}")
        elif word == "ESCAPE":
            pass  # PostgreSQL's text format reads and writes backslash escapes anyway
        elif word == "IGNOREHEADER" and not unloading:
            cursor.accept("AS")
            options.ignoreheader = cursor.integer("IGNOREHEADER row count")
        elif word == "EMPTYASNULL" and not unloading:
            options.emptyasnull = True
        elif word == "BLANKSASNULL" and not unloading:
            options.blanksasnull = True
        elif word == "HEADER" and unloading:
            options.header = True
        elif word == "PARALLEL" and unloading:
            value = cursor.next().word
            if value not in ("ON", "TRUE", "OFF", "FALSE"):
                raise GrammarError(f"syntax error: PARALLEL takes ON or OFF, not {value or '?'}")
            options.parallel = value in ("ON", "TRUE")
        elif word == "ALLOWOVERWRITE" and unloading:
            options.allowoverwrite = True
        elif word:
            raise not_supported(f"the {statement} option {word}")
        else:
            raise GrammarError(f'syntax error at or near "{token.text}"')
    if options.csv and options.delimiter is not None and options.delimiter == options.quote:
        raise GrammarError("DELIMITER and QUOTE must differ", sqlstate.INVALID_PARAMETER_VALUE)
    return options


# CREDENTIALS 'aws_access_key_id=...;aws_secret_access_key=...[;token=...]' or 'aws_iam_role=...'
_CREDENTIALS_KEYS = {"aws_iam_role": "iam_role", "aws_access_key_id": "access_key_id",
                     "aws_secret_access_key": "secret_access_key", "token": "session_token",
                     "master_symmetric_key": None}


def _credentials_string(text: str, credentials: dict[str, str]) -> None:
    for part in text.split(";"):
        if not part.strip():
            continue
        key, equals, value = part.partition("=")
        name = _CREDENTIALS_KEYS.get(key.strip().lower(), "")
        if not equals or name == "":
            raise invalid_credentials()
        if name is not None:
            _credential(credentials, name, value.strip())


def _credential(credentials: dict[str, str], name: str, value: str) -> None:
    if name in credentials:
        raise invalid_credentials()  # named twice (CREDENTIALS and IAM_ROLE, say)
    credentials[name] = value


def _quote(cursor: Cursor, options: Options) -> None:
    if cursor.accept("QUOTE"):
        cursor.accept("AS")
        options.quote = _one_character(cursor, "QUOTE")


def _one_character(cursor: Cursor, what: str) -> str:
    value = cursor.string(what)
    if len(value.encode()) != 1 or value in ("\r", "\n", "\\"):
        raise not_supported(f"{what} {value!r} (a single one-byte character other than newline or backslash)")
    return value



# --------------------------------------------------------------------------- the calls


def _backend_refusal(what: str) -> GrammarError:
    return GrammarError(f"{what} is not supported by shiftguard on this backend", sqlstate.FEATURE_NOT_SUPPORTED,
                        hint="COPY and UNLOAD with S3 locations need the embedded PostgreSQL or a management "
                             "role that is a superuser (they use the server's COPY to and from files)")


def plan(statement: str, tokens: list[Token], local_s3, available: bool, check_query, standard_strings: bool = True,
         access=None, user: str | None = None):
    """(replacement SQL, command tag, cacheable) for an S3 COPY or UNLOAD. local_s3: the
    translator's LocalS3 (proxy/s3.py) or None; available: whether catalog/s3.sql is installed;
    check_query(sql): the classification of the UNLOAD query (None, a rewrite tuple or a denial,
    which is returned as it is); standard_strings: the session's standard_conforming_strings, with
    which PostgreSQL will read the UNLOAD query's own constants; access: the translator's
    S3Access (iam/s3access.py), which judges the credentials (None: every request is denied);
    user: the session's user, whom the ticket is for. Never cacheable: the files a prefix names
    change, and tickets expire.

    The ticket binds what the private schema's file functions may do to this statement: the
    files, the table and columns COPY loads or the exact query UNLOAD runs, the user, and (by
    its signature, policy/signing.py) the time it was made."""
    if is_unload(tokens):
        text, unload = parse_unload(statement, tokens)
        text = as_read(text, standard_strings)  # judged as it will run (policy/tokens.py)
        if local_s3 is None or not available:
            raise _backend_refusal("UNLOAD")
        verdict = check_query(text)
        if verdict is not None and not isinstance(verdict, tuple):
            return verdict
        query = single_select(verdict[0] if verdict is not None else text)
        options, target = unload.options, unload.target
        local_s3.check_bucket(target.bucket)
        key, path = local_s3.target_key(target.bucket, target.prefix, options.parallel, options.gzip)
        requests = [Request("s3:PutObject", f"arn:aws:s3:::{target.bucket}/{key}")]
        if not options.allowoverwrite:
            # Whether the destination is empty is a listing of the prefix (UNVERIFIED: Redshift's
            # documented minimum permissions for UNLOAD).
            requests.append(Request("s3:ListBucket", f"arn:aws:s3:::{target.bucket}", target.prefix))
        grant = _grant(access, options, requests)
        local_s3.check_target(path, options.allowoverwrite)
        ticket, signature = local_s3.ticket({
            "op": "write", "file": path, "directory": os.path.dirname(path), "user": user,
            "allowoverwrite": options.allowoverwrite,
            "query": hashlib.sha256(query.encode()).hexdigest(), **grant, **options.copy_format(unloading=True)})
        return (f"CALL shiftguard.s3_unload({sql_literal(query)}, {sql_literal(ticket)}, {sql_literal(signature)}, "
                f"{CALLER_SEARCH_PATH})",
                b"UNLOAD", False)
    copy = parse_copy(tokens)
    if local_s3 is None or not available:
        raise _backend_refusal("COPY from Amazon S3")
    source = copy.source
    local_s3.check_bucket(source.bucket)
    listing = Request("s3:ListBucket", f"arn:aws:s3:::{source.bucket}", source.prefix)
    _grant(access, copy.options, [listing])  # before saying whether anything is there
    files = local_s3.source_files(source.bucket, source.prefix)
    grant = _grant(access, copy.options,
                   [listing] + [Request("s3:GetObject", f"arn:aws:s3:::{source.bucket}/{key}") for key, _ in files])
    ticket, signature = local_s3.ticket({"op": "read", "files": [path for _, path in files], "table": copy.table,
                                         "columns": copy.columns, "user": user, **grant,
                                         **copy.options.copy_format(unloading=False)})
    columns = ", ".join(sql_literal(c) for c in copy.columns)
    return (f"CALL shiftguard.s3_copy({sql_literal(copy.table)}, ARRAY[{columns}]::pg_catalog.text[], "
            f"{sql_literal(ticket)}, {sql_literal(signature)}, {CALLER_SEARCH_PATH})", b"COPY", False)


def _grant(access, options: Options, requests: list) -> dict:
    if not options.credentials:
        raise invalid_credentials()
    if access is None:
        raise access_denied()
    return access.grant(Credentials(**options.credentials), requests)
