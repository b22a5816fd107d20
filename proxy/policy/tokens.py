"""Redshift statements PostgreSQL cannot parse, read from PostgreSQL's own scanner (pglast).

The scanner knows quoting, comments and keywords exactly as PostgreSQL does; this module turns
its tokens into values (identifiers folded like PostgreSQL folds them, string constants
unescaped) and offers a small cursor for hand-written grammars. Pure; no regexes.
"""

from __future__ import annotations

from dataclasses import dataclass

from pglast import parser
from pglast.stream import RawStream

from ..protocol import sqlstate

_COMMENTS = ("C_COMMENT", "SQL_COMMENT")


class GrammarError(Exception):
    """The statement does not follow the grammar; carries SQLSTATE and message."""

    def __init__(self, message: str, code: str = sqlstate.SYNTAX_ERROR, hint: str | None = None):
        super().__init__(message)
        self.sqlstate = code
        self.hint = hint


@dataclass(frozen=True, slots=True)
class Token:
    name: str       # scanner token name: IDENT, SCONST, ICONST, keyword names, ASCII_59 ...
    kind: str       # NO_KEYWORD, UNRESERVED_KEYWORD, ...
    text: str       # the source text of the token
    start: int      # character offsets into the scanned text, end exclusive
    end: int

    @property
    def word(self) -> str:
        """Upper-case word for keyword matching; unquoted identifiers count as words too."""
        if self.kind != "NO_KEYWORD" or (self.name == "IDENT" and not self.text.startswith('"')):
            return self.text.upper()
        return ""


class NulInString(GrammarError, ValueError):
    """A string with NUL, which no SQL literal can hold: refused with SQLSTATE 22023."""


def sql_literal(value: str) -> str:
    """An escape-string literal, read the same whatever standard_conforming_strings says."""
    if "\0" in value:
        raise NulInString("NUL in a string", sqlstate.INVALID_PARAMETER_VALUE)
    return "E'" + value.replace("\\", "\\\\").replace("'", "''") + "'"


# The caller's search_path, as an argument of a call whose procedure runs a statement of the
# caller's (catalog/schema.sql shiftguard.caller_execute): the procedure itself resolves names in
# pg_catalog only.
CALLER_SEARCH_PATH = "pg_catalog.current_setting('search_path')"


def quote_ident(name: str) -> str:
    """A name as a quoted identifier."""
    return '"' + name.replace('"', '""') + '"'


def scan(text: str) -> list[Token]:
    """Tokens of text without comments; raises GrammarError when PostgreSQL could not scan it."""
    try:
        raw = parser.scan(text)
    except parser.ParseError as exc:
        raise GrammarError(str(exc)) from None
    return [Token(t.name, t.kind, text[t.start:t.end + 1], t.start, t.end + 1)
            for t in raw if t.name not in _COMMENTS]


def as_read(text: str, standard_strings: bool) -> str:
    """text as PostgreSQL reads it with standard_conforming_strings = standard_strings, written
    so that it reads the same under either setting: each ordinary string constant holding a
    backslash becomes an E'...' constant of the value it has under that setting. pglast's
    scanner reads with the setting on, Redshift sessions run with it off (a backslash escapes),
    and a session may change it: without this, text the proxy reads as one statement could run
    as several, or a constant hold another value than the one the proxy judged. Raises
    GrammarError when PostgreSQL could not scan the text so."""
    if "\\" not in text:
        return text
    while True:
        try:
            tokens, whole = parser.scan(text), True
        except parser.ParseError as exc:  # maybe only as pglast reads it: look before the error
            tokens, whole = _scan_prefix(text, exc.args[1] if len(exc.args) > 1 else 0), False
        token = next((t for t in tokens if t.name == "SCONST" and text[t.start] == "'"
                      and "\\" in text[t.start:t.end + 1]), None)
        if token is None:
            if whole:
                return text
            scan(text)  # raises GrammarError: no reading scans it
        start, end = token.start, token.end + 1
        token = Token(token.name, token.kind, text[start:end], start, end)
        if standard_strings:  # the same constant, its backslashes now escaped
            constant = "E" + token.text.replace("\\", "\\\\")
        else:  # PostgreSQL reads '...' as E'...'; where it ends is known after a rescan
            constant = "E" + token.text
        if token.start and (text[token.start - 1].isalnum() or text[token.start - 1] in "_$"):
            constant = " " + constant  # not part of a preceding word
        text = text[:token.start] + constant + text[token.end:]


def printed(node) -> str:
    """A parse tree (or node) as SQL text that reads the same whatever standard_conforming_strings
    says: pglast prints string constants in standard form ('a\\b'), which a session with the
    setting off (Redshift's) would read as 'ab', or as a constant ending elsewhere. Every SQL text
    the proxy prints from a tree for PostgreSQL to run later or now goes through here."""
    return as_read(RawStream()(node), standard_strings=True)


def _scan_prefix(text: str, end: int):
    try:
        return parser.scan(text[:end]) if end else []
    except parser.ParseError:
        return []


def split_statements(text: str) -> list[tuple[int, int]]:
    """Character spans of the statements of text, cut at top-level semicolons (as psql and
    PostgreSQL do); empty statements are dropped. Raises GrammarError if text cannot be scanned."""
    spans = []
    start = None
    end = 0
    for token in scan(text):
        if token.name == "ASCII_59":
            if start is not None:
                spans.append((start, end))
            start = None
            continue
        if start is None:
            start = token.start
        end = token.end
    if start is not None:
        spans.append((start, end))
    return spans


def fold_identifier(token: Token) -> str:
    """An identifier's value: quoted keeps its case, unquoted folds ASCII letters to lower case."""
    if token.text.startswith('"'):
        return token.text[1:-1].replace('""', '"')
    if token.text[:2].upper() == 'U&':
        raise GrammarError("Unicode-escaped identifiers are not supported here")
    return "".join(c.lower() if "A" <= c <= "Z" else c for c in token.text)


def string_value(token: Token) -> str:
    """A string constant's value: 'standard', E'escaped' or $$dollar$$ quoted."""
    text = token.text
    if text.startswith("'"):
        return text[1:-1].replace("''", "'")
    if text[:2] in ("E'", "e'"):
        return _unescape(text[2:-1])
    if text.startswith("$"):
        tag_end = text.index("$", 1) + 1
        return text[tag_end:len(text) - tag_end]
    raise GrammarError(f"unsupported string constant {text[:20]}")


def _unescape(body: str) -> str:
    out = []
    chars = iter(body)
    simple = {"b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t"}
    for char in chars:
        if char == "'":
            next(chars, None)  # '' inside E'...'
            out.append("'")
        elif char == "\\":
            escaped = next(chars, "")
            if escaped in simple:
                out.append(simple[escaped])
            elif escaped in "xu01234567":
                raise GrammarError("numeric escapes in string constants are not supported here")
            else:
                out.append(escaped)
        else:
            out.append(char)
    return "".join(out)


class Cursor:
    """Reading position in one statement's tokens."""

    def __init__(self, tokens: list[Token]):
        self.tokens = tokens
        self.pos = 0

    def peek(self, ahead: int = 0) -> Token | None:
        index = self.pos + ahead
        return self.tokens[index] if index < len(self.tokens) else None

    def at_end(self) -> bool:
        return self.pos >= len(self.tokens)

    def next(self) -> Token:
        token = self.peek()
        if token is None:
            raise GrammarError("unexpected end of statement")
        self.pos += 1
        return token

    def accept(self, *words: str) -> bool:
        """Consume the words if they come next (all of them), else consume nothing."""
        for offset, word in enumerate(words):
            token = self.peek(offset)
            if token is None or token.word != word:
                return False
        self.pos += len(words)
        return True

    def expect(self, *words: str) -> None:
        if not self.accept(*words):
            found = self.peek()
            where = f'at or near "{found.text}"' if found else "at end of statement"
            raise GrammarError(f"syntax error {where}: expected {' '.join(words)}")

    def accept_symbol(self, symbol: str) -> bool:
        token = self.peek()
        if token is not None and token.text == symbol and token.kind == "NO_KEYWORD":
            self.pos += 1
            return True
        return False

    def name(self, what: str = "name") -> str:
        """An identifier, a keyword used as one, or Redshift's namespace:name form."""
        token = self.next()
        if token.name in ("SCONST", "ICONST", "FCONST") or (token.kind == "NO_KEYWORD" and token.name != "IDENT"):
            raise GrammarError(f'syntax error at or near "{token.text}": expected a {what}')
        value = fold_identifier(token) if token.name == "IDENT" else token.text.lower()
        # Identity-provider users are written namespace:name (myco_aad:bob).
        following = self.peek()
        if following is not None and following.text == ":" and following.start == token.end:
            self.next()
            rest = self.next()
            if rest.start != following.end:
                raise GrammarError(f'syntax error at or near "{rest.text}"')
            value += ":" + (fold_identifier(rest) if rest.name == "IDENT" else rest.text.lower())
        return value

    def string(self, what: str = "string") -> str:
        token = self.next()
        if token.name != "SCONST":
            raise GrammarError(f'syntax error at or near "{token.text}": expected a {what} in quotes')
        return string_value(token)

    def integer(self, what: str = "number") -> int:
        token = self.next()
        if token.name != "ICONST":
            raise GrammarError(f'syntax error at or near "{token.text}": expected a {what}')
        return int(token.text)

    def end(self) -> None:
        if not self.at_end():
            raise GrammarError(f'syntax error at or near "{self.peek().text}"')
