"""Redshift statements PostgreSQL cannot parse, read from PostgreSQL's own scanner (pglast).

The scanner knows quoting, comments and keywords exactly as PostgreSQL does; this module turns
its tokens into values (identifiers folded like PostgreSQL folds them, string constants
unescaped) and offers a small cursor for hand-written grammars. Pure; no regexes.
"""

from __future__ import annotations

import codecs
import contextlib
import contextvars
import re
from dataclasses import dataclass

from pglast import parser
from pglast.stream import RawStream

from ..protocol import sqlstate

_COMMENTS = ("C_COMMENT", "SQL_COMMENT")

# Characters of SQL the classification under way may still read as a parse tree (parse_tree):
# None outside tree_budget.
_TREE_BUDGET: contextvars.ContextVar[list[int] | None] = contextvars.ContextVar("tree_budget", default=None)


@contextlib.contextmanager
def tree_budget(characters: int):
    """Within it, parse_tree reads at most this many characters of SQL in all. Reading SQL as
    a parse tree of Python objects, and walking and printing it, is the dearest work of
    classification (tens of function calls a byte; bench/classify_scaling.py), and it runs on
    the proxy's event loop: this bounds it per Query or Parse (policy/cache.py). Yields
    [characters left]: below 0 when a parse_tree was refused."""
    budget = [characters]
    token = _TREE_BUDGET.set(budget)
    try:
        yield budget
    finally:
        _TREE_BUDGET.reset(token)


def parse_tree(sql: str) -> tuple:
    """pglast's parse tree of sql (parser.parse_sql), within the current tree_budget; over it,
    GrammarError 54000."""
    budget = _TREE_BUDGET.get()
    if budget is not None:
        budget[0] -= len(sql)
        if budget[0] < 0:
            raise GrammarError("statement too large for shiftguard to rewrite", sqlstate.PROGRAM_LIMIT_EXCEEDED,
                               hint="shiftguard rewrites statements like this one before they run; send fewer "
                                    "or smaller ones at a time, or raise limits.max_rewritten_statement_size.")
    return parser.parse_sql(sql)


# Words a secret follows in a statement: passwords, an identity provider's PARAMETERS, and COPY's
# and UNLOAD's AWS credentials (SECRET_ACCESS_KEY 's', SESSION_TOKEN 't', CREDENTIALS [AS] '...').
# What holds one is kept out of logs (audit/records.py) and of PostgreSQL's own error log.
SECRET_WORDS = ("password", "parameters", "secret_access_key", "session_token", "credentials")


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
    """An escape-string literal, in ASCII: read the same whatever standard_conforming_strings
    and the client encoding say (non-ASCII characters are written as \\u/\\U escapes)."""
    if "\0" in value:
        raise NulInString("NUL in a string", sqlstate.INVALID_PARAMETER_VALUE)
    body = value.replace("\\", "\\\\").replace("'", "''")
    if not body.isascii():
        body = "".join(c if c < "\x80" else _string_escape(c) for c in body)
    return "E'" + body + "'"


# The caller's search_path, as an argument of a call whose procedure runs a statement of the
# caller's (catalog/schema.sql shiftguard.caller_execute): the procedure itself resolves names in
# pg_catalog only.
CALLER_SEARCH_PATH = "pg_catalog.current_setting('search_path')"


def quote_ident(name: str) -> str:
    """A name as a quoted identifier in SQL text, in ASCII: U&"..." with escapes when the name
    holds non-ASCII characters, so that it reads the same in every client encoding."""
    if name.isascii():
        return '"' + name.replace('"', '""') + '"'
    return _unicode_identifier(name)


def quoted_name(name: str) -> str:
    """A name quoted as the text input of regclass, regnamespace, to_regproc & co. reads it:
    they know "..." but not U&"...". For use inside a string constant (sql_literal) only,
    never as SQL text: it may hold non-ASCII characters."""
    return '"' + name.replace('"', '""') + '"'


def _string_escape(char: str) -> str:
    code = ord(char)
    return f"\\u{code:04x}" if code <= 0xFFFF else f"\\U{code:08x}"


def _identifier_escape(char: str) -> str:
    code = ord(char)
    return f"\\{code:04x}" if code <= 0xFFFF else f"\\+{code:06x}"


def _unicode_identifier(name: str) -> str:
    """U&"..." for name: quotes doubled, the backslash (the escape character) doubled,
    non-ASCII characters as \\XXXX or \\+XXXXXX."""
    body = name.replace('"', '""').replace("\\", "\\\\")
    return 'U&"' + "".join(c if c < "\x80" else _identifier_escape(c) for c in body) + '"'


def _scan_tokens(text: str) -> list:
    """pglast's scanner tokens of text, with character offsets, in time linear in its length.

    pglast turns its scanner's byte offsets into character offsets with a search over the
    text's non-ASCII characters per token: quadratic, seconds for a long statement holding many
    (the proxy's event loop would stall). So non-ASCII text is scanned with each non-ASCII
    character replaced by one ASCII letter: the same offsets and the same token boundaries,
    since PostgreSQL's scanner treats every character >= 0x80 as a letter of names (and of
    dollar-quote tags) or as the content of a constant, name or comment, and the letter is none
    that starts a constant (b e n u x: B'', E'', N'', U&'', X''), follows a backslash as an
    escape (b f n r t u x) or is a hex digit. Where the characters themselves count: a name
    that reads as a keyword with the letter is a name (no keyword holds non-ASCII), and a
    dollar-quote tag that matched only with the letter (two different non-ASCII tags) is
    refused. Raises parser.ParseError."""
    if text.isascii():
        return parser.scan(text)
    # A letter the text does not hold, if there is one: then only two different non-ASCII tags
    # can match (with a letter the text holds, $q$ é $q$ would end at $é$).
    letter = next((c for c in _LETTERS if c not in text), _LETTERS[0])
    lettered = text.encode("ascii", f"shiftguard.as_letter.{letter}").decode("ascii")
    try:
        tokens = parser.scan(lettered)
    except parser.ParseError as exc:
        raise _in_original(exc, lettered, text) from None
    for index, token in enumerate(tokens):
        if token.name == "SCONST" and text[token.start] == "$":
            piece = text[token.start:token.end + 1]
            tag = piece[:piece.index("$", 1) + 1]
            if len(piece) < 2 * len(tag) or not piece.endswith(tag):
                raise parser.ParseError("dollar-quote tags that differ only in non-ASCII characters are not "
                                        "supported by shiftguard", token.start)
        elif token.kind != "NO_KEYWORD" and not text[token.start:token.end + 1].isascii():
            tokens[index] = token._replace(name="IDENT", kind="NO_KEYWORD")
    return tokens


# Letters that start no constant (B'' E'' N'' U&'' X''), are no escape after a backslash
# (\b \f \n \r \t \u \x) and no hex digit; for each, an encoding error handler that writes
# it for every non-ASCII character (str.encode: one pass, in C).
_LETTERS = "qzjkwyvghilmopsQZJKWYVGHILMOPRST"
for _letter in _LETTERS:
    codecs.register_error(f"shiftguard.as_letter.{_letter}",
                          lambda error, letter=_letter: (letter * (error.end - error.start), error.end))


def _in_original(exc: parser.ParseError, lettered: str, text: str) -> parser.ParseError:
    """The scanner's error, its excerpt ("at or near ...") shown as the client wrote it."""
    message = str(exc.args[0]) if exc.args else str(exc)
    location = exc.args[1] if len(exc.args) > 1 else None
    head, near, excerpt = message.partition(' at or near "')
    if near and excerpt.endswith('"') and location is not None:
        shown = excerpt[:-1]
        if lettered[location:location + len(shown)] == shown:
            message = f'{head}{near}{text[location:location + len(shown)]}"'
    return parser.ParseError(message, location)


def scan(text: str) -> list[Token]:
    """Tokens of text without comments; raises GrammarError when PostgreSQL could not scan it."""
    try:
        raw = _scan_tokens(text)
    except parser.ParseError as exc:
        raise _unreadable(exc) from None
    return [Token(t.name, t.kind, text[t.start:t.end + 1], t.start, t.end + 1)
            for t in raw if t.name not in _COMMENTS]


def as_read(text: str, standard_strings: bool) -> str:
    """text as PostgreSQL reads it with standard_conforming_strings = standard_strings, written
    so that it reads the same under either setting: each ordinary string constant holding a
    backslash becomes an E'...' constant of the value it has under that setting. pglast's
    scanner reads with the setting on, Redshift sessions run with it off (a backslash escapes),
    and a session may change it: without this, text the proxy reads as one statement could run
    as several, or a constant hold another value than the one the proxy judged. Raises
    GrammarError when PostgreSQL could not scan the text so. One scan: linear in the text.

    With the setting off, '...' reads as E'...': a backslash takes the next character into the
    constant. So the scan is of the text with every \\ and \' pair (left to right, as
    PostgreSQL pairs them) replaced by two characters that end nothing: inside a constant that
    is the reading with the setting off; inside names, comments, dollar quotes and E'...'
    constants it changes no boundary (no pair ends one of those); and nowhere else may a
    backslash stand in SQL."""
    if "\\" not in text:
        return text
    scanned = text if standard_strings else _ESCAPED_PAIR.sub("\x01\x01", text)
    try:
        tokens = _scan_tokens(scanned)
    except parser.ParseError as exc:
        raise _unreadable(exc) from None
    out = []
    cursor = 0
    for index, token in enumerate(tokens):
        start, end = token.start, token.end + 1
        if token.name != "SCONST" or text[start] != "'" or "\\" not in text[start:end]:
            continue
        constant = text[start:end]
        constant = "E" + (constant.replace("\\", "\\\\") if standard_strings else constant)
        before = tokens[index - 1] if index else None
        if before is not None and before.name == "NCHAR" and before.end + 1 == start:
            out.append(text[cursor:before.start] + "NCHAR ")  # N'...' is NCHAR '...'; N E'...' a name
        else:
            out.append(text[cursor:start])
            if start and (text[start - 1].isalnum() or text[start - 1] in "_$"):
                out.append(" ")  # not part of a preceding word
        out.append(constant)
        cursor = end
    out.append(text[cursor:])
    return "".join(out)


_ESCAPED_PAIR = re.compile(r"\\[\\']")


def printed(node) -> str:
    """A parse tree (or node) as SQL text that reads the same whatever standard_conforming_strings
    says: pglast prints string constants in standard form ('a\\b'), which a session with the
    setting off (Redshift's) would read as 'ab', or as a constant ending elsewhere. Every SQL text
    the proxy prints from a tree for PostgreSQL to run later or now goes through here."""
    return as_read(RawStream()(node), standard_strings=True)


# PostgreSQL 15's words for a number run into a name (scan.l's integer_junk, decimal_junk, real_junk).
_NUMBER_JUNK = "trailing junk after numeric literal"
# Numbers run into names that separate_numbers reads apart in one message, at most: each costs a
# scan of the rest of the text.
MAX_SEPARATED_NUMBERS = 64


# A number that starts a word and runs into a word of letters (THEN 1WHEN): a shortcut only,
# telling which SQL may hold a number run into a name (a miss leaves PostgreSQL's own error).
# Letters then digits (hexadecimal in a UUID '3fa85f64-...', '...T10:00') are not looked at.
_NUMBER_THEN_WORD = re.compile(
    rb"(?<![0-9A-Za-z_$\x80-\xff])\.?[0-9][0-9.]*(?:[eE][+-]?[0-9]+)?[A-Za-z_]+(?![0-9A-Za-z_$\x80-\xff])")


def may_run_into_name(sql: bytes) -> bool:
    """Might sql hold a number run into a name (separate_numbers)? False only when it cannot."""
    return _NUMBER_THEN_WORD.search(sql) is not None


def is_number_junk(exc: GrammarError) -> bool:
    """Is exc PostgreSQL 15's refusal of a number run into a name (separate_numbers reads them)?"""
    return str(exc).startswith(_NUMBER_JUNK)


def separate_numbers(text: str, standard_strings: bool) -> str:
    """text with a space after each number that runs into a name (THEN 1WHEN, 1e5x): Redshift,
    as PostgreSQL before 15, reads the longest number there and then the name; PostgreSQL 15
    refuses it ("trailing junk after numeric literal"). So the proxy judges, and sends, `1 WHEN`.
    PostgreSQL's scanner finds them (never inside a constant, name or comment), reading the text
    as a session with standard_conforming_strings = standard_strings does: one scan of the rest of
    the text for each, at most MAX_SEPARATED_NUMBERS (beyond: PostgreSQL's error). Text that fails
    to scan for another reason comes back as it is, for PostgreSQL to refuse."""
    scanned = text if standard_strings else _ESCAPED_PAIR.sub("\x01\x01", text)  # as as_read reads it
    ends: list[int] = []
    cursor = 0
    while len(ends) < MAX_SEPARATED_NUMBERS:
        try:
            _scan_tokens(scanned[cursor:])  # from a token's start, where the scanner starts afresh
            break
        except parser.ParseError as exc:
            location = exc.args[1] if len(exc.args) > 1 else None
            if location is None or not str(exc.args[0]).startswith(_NUMBER_JUNK):
                break
            length = _number_length(scanned, cursor + location)
            if not length:
                break
            cursor += location + length
            ends.append(cursor)
    if not ends:
        return text
    pieces, start = [], 0
    for end in ends:
        pieces += [text[start:end], " "]
        start = end
    pieces.append(text[start:])
    return "".join(pieces)


def _number_length(text: str, at: int) -> int:
    """Characters of the longest number at text[at:], as PostgreSQL 15 (and Redshift) read one:
    digits [. digits] [e [+-] digits]."""
    index = at

    def digits() -> None:
        nonlocal index
        while index < len(text) and "0" <= text[index] <= "9":
            index += 1

    digits()
    if text[index:index + 1] == "." and text[index + 1:index + 2] != ".":
        index += 1
        digits()
    if text[index:index + 1] in ("e", "E"):
        sign = 1 if text[index + 1:index + 2] in ("+", "-") else 0
        if "0" <= text[index + 1 + sign:index + 2 + sign] <= "9":  # "" sorts before "0"
            index += 1 + sign
            digits()
    return index - at


def as_ascii(text: str) -> str:
    """text written in ASCII only, to read the same in every client encoding: PostgreSQL's
    client encodings are all ASCII supersets, but in SJIS, BIG5, GBK and GB18030 (as PostgreSQL
    15 converts them; tests/integration/test_encoding.py shows each) a lead byte swallows the
    byte after it, and trail bytes include the backslash: C3 83 5C 27 (Ã\\' in UTF-8, an
    escaped quote) is in SJIS the characters C3 and 835C, then a quote that ends the constant.
    So text the proxy read as one constant could run as SQL, if the session's encoding changed
    out of the proxy's sight (set_config in a function body, then a pipelined message).

    text must read as PostgreSQL reads it with standard_conforming_strings on (as_read's result).
    Each token holding non-ASCII characters becomes an equivalent ASCII one, in one pass:
    - a string constant ('...', E'...', $tag$...$tag$, continued over lines) an E'...' constant
      of the same value, written with \\u/\\U escapes (sql_literal);
    - an identifier a U&"..." identifier of the same name with \\XXXX escapes (unquoted ones
      folded as PostgreSQL folds them in UTF8: ASCII letters only);
    - a comment an empty one (/**/ or --), which separates tokens exactly as the comment did.
    Anything else non-ASCII (U&'...' and U&"..." forms, bit strings, ...) raises GrammarError,
    as does text PostgreSQL could not scan."""
    if text.isascii():
        return text
    try:
        tokens = _scan_tokens(text)
    except parser.ParseError as exc:
        raise _unreadable(exc) from None
    following = _next_significant(tokens)
    out = []
    cursor = 0
    for index, token in enumerate(tokens):
        start, end = token.start, token.end + 1
        piece = text[start:end]
        if start > cursor:
            out.append(text[cursor:start])  # whitespace; checked at the end
        cursor = end
        if piece.isascii():
            if token.name == "NCHAR" and end - start == 1 and _rewritten_next(text, tokens, index, end):
                piece = "NCHAR"  # N'...' is NCHAR '...': N before E'...' would be a name
            out.append(piece)
            continue
        if token.name in _COMMENTS:
            out.append("/**/" if token.name == "C_COMMENT" else "--")
            continue
        if token.name == "SCONST":
            after = following[index]
            if piece[0] == "$" and after is not None and text[after.start] == "'":
                # $$..$$ then '..' are two constants; E'..' then '..' over a line break, one.
                raise GrammarError(f'syntax error at or near "{text[after.start:after.end + 1][:40]}"')
            replacement = sql_literal(_constant_value(piece))
        elif token.name == "IDENT":
            after = following[index]
            if after is not None and after.name == "UESCAPE":
                raise GrammarError("UESCAPE after a name with non-ASCII characters is not supported here")
            replacement = _unicode_identifier(_identifier_value(piece))
        else:
            raise GrammarError(f'non-ASCII characters in "{piece[:40]}" are not supported by shiftguard',
                               sqlstate.FEATURE_NOT_SUPPORTED,
                               hint="write them directly in a string constant or a name, not in a "
                                    "Unicode-escape (U&) or bit-string form")
        if out and (out[-1][-1].isalnum() or out[-1][-1] in "_$"):
            out.append(" ")  # not part of a preceding word (date'...': date E'...')
        out.append(replacement)
        if text[end:end + 1] in ('"', "'"):
            out.append(" ")  # a quote right after would continue it (é"x": é AS "x")
    out.append(text[cursor:])
    result = "".join(out)
    if not result.isascii():  # non-ASCII where the scanner saw no token: refuse, never guess
        raise GrammarError("shiftguard could not write this statement in ASCII", sqlstate.FEATURE_NOT_SUPPORTED)
    return result


def _next_significant(tokens) -> list:
    """For each token, the next one that is not a comment (None: none), in one backward pass."""
    following = [None] * len(tokens)
    after = None
    for index in range(len(tokens) - 1, -1, -1):
        following[index] = after
        if tokens[index].name not in _COMMENTS:
            after = tokens[index]
    return following


def _rewritten_next(text: str, tokens, index: int, end: int) -> bool:
    following = tokens[index + 1] if index + 1 < len(tokens) else None
    return (following is not None and following.start == end and following.name == "SCONST"
            and not text[following.start:following.end + 1].isascii())


def _constant_value(piece: str) -> str:
    """The value of one SCONST token as PostgreSQL reads it (standard_conforming_strings on)."""
    if piece[0] == "$":
        tag_end = piece.index("$", 1) + 1
        return piece[tag_end:len(piece) - tag_end]
    if piece[0] == "'" and "'" not in piece[1:-1].replace("''", ""):
        return piece[1:-1].replace("''", "'")  # the common case, without a parse
    # '...' continued over lines, and E'...' (every escape: \\x, octal, \\u): read by
    # PostgreSQL's own parser, which also refuses what PostgreSQL would.
    try:
        (statement,) = parser.parse_sql("SELECT " + piece)
        value = statement.stmt.targetList[0].val.val.sval
    except parser.ParseError as exc:
        raise _unreadable(exc) from None
    except (AttributeError, IndexError, TypeError, ValueError):
        raise GrammarError(f"shiftguard could not read the string constant {piece[:40]}",
                           sqlstate.FEATURE_NOT_SUPPORTED) from None
    if not isinstance(value, str):
        raise GrammarError(f"shiftguard could not read the string constant {piece[:40]}",
                           sqlstate.FEATURE_NOT_SUPPORTED)
    return value


def _identifier_value(piece: str) -> str:
    """The name an IDENT token stands for: quoted keeps its case, unquoted folds ASCII letters
    (PostgreSQL folds non-ASCII letters only in single-byte server encodings)."""
    if piece.startswith('"'):
        return piece[1:-1].replace('""', '"')
    return "".join(c.lower() if "A" <= c <= "Z" else c for c in piece)


def _unreadable(exc: parser.ParseError) -> GrammarError:
    """PostgreSQL's scanner refused the text: its message, and its SQLSTATE where it is not a
    syntax error (an escape that makes an invalid UTF-8 sequence)."""
    message = str(exc)
    code = sqlstate.CHARACTER_NOT_IN_REPERTOIRE if "invalid byte sequence" in message else sqlstate.SYNTAX_ERROR
    return GrammarError(message, code)


def _scan_prefix(text: str, end: int):
    try:
        return _scan_tokens(text[:end]) if end else []
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
    """An identifier's value: quoted keeps its case, unquoted folds ASCII letters to lower case,
    U&"..." (as as_ascii writes names holding non-ASCII characters) is read by PostgreSQL's
    parser (escapes, surrogate pairs)."""
    if token.text.startswith('"'):
        return token.text[1:-1].replace('""', '"')
    if token.name == "UIDENT":
        try:
            (statement,) = parser.parse_sql("SELECT 1 AS " + token.text)
            return statement.stmt.targetList[0].name
        except parser.ParseError as exc:
            raise _unreadable(exc) from None
    return "".join(c.lower() if "A" <= c <= "Z" else c for c in token.text)


def string_value(token: Token) -> str:
    """A string constant's value: 'standard', E'escaped' (every escape, \\u and \\x too, as
    as_ascii writes non-ASCII characters), $$dollar$$ quoted, continued over lines."""
    text = token.text
    if text[:1] in ("'", "E", "e", "$"):
        return _constant_value(text)
    raise GrammarError(f"unsupported string constant {text[:20]}")


_IDENTIFIERS = ("IDENT", "UIDENT")


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
        if token.name in ("SCONST", "ICONST", "FCONST") or (
                token.kind == "NO_KEYWORD" and token.name not in _IDENTIFIERS):
            raise GrammarError(f'syntax error at or near "{token.text}": expected a {what}')
        if token.name == "UIDENT" and self.accept("UESCAPE"):
            raise GrammarError("UESCAPE is not supported here", sqlstate.FEATURE_NOT_SUPPORTED)
        value = fold_identifier(token) if token.name in _IDENTIFIERS else token.text.lower()
        # Identity-provider users are written namespace:name (myco_aad:bob).
        following = self.peek()
        if following is not None and following.text == ":" and following.start == token.end:
            self.next()
            rest = self.next()
            if rest.start != following.end:
                raise GrammarError(f'syntax error at or near "{rest.text}"')
            value += ":" + (fold_identifier(rest) if rest.name in _IDENTIFIERS else rest.text.lower())
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
