"""SQL text in ASCII (tokens.as_ascii, sql_literal, quote_ident): what the proxy sends PostgreSQL
reads the same in every client encoding, and means what the client's UTF-8 text meant; what
the proxy cannot read or write so is refused (classify), never passed."""

from __future__ import annotations

import json
import random

import pytest
from pglast import parser

from proxy.policy.statements import _TRIGGER_WORDS, PASS, Translator, _any_of, classify, may_need_plan
from proxy.policy.tokens import (Cursor, GrammarError, as_ascii, as_read, fold_identifier, quote_ident, quoted_name,
                                 scan, sql_literal, string_value)

TRANSLATOR = Translator(lambda role: f"VERIFIER-{role}")
E_ACUTE, A_HIRAGANA, CLEF = "\u00e9", "\u3042", "\U0001d11e"


def tree(sql: str):
    """pglast's parse tree of sql without locations: equal trees, the same statements."""
    def strip(node):
        if isinstance(node, dict):
            return {k: strip(v) for k, v in node.items() if k not in ("location", "stmt_len", "stmt_location")}
        if isinstance(node, list):
            return [strip(v) for v in node]
        return node
    return strip(json.loads(parser.parse_sql_json(sql)))


@pytest.mark.parametrize("sql, expected", [
    ("SELECT 1", "SELECT 1"),
    ("SELECT 'é'", "SELECT E'\\u00e9'"),
    ("SELECT 'あ' AS \"é\"", "SELECT E'\\u3042' AS U&\"\\00e9\""),
    ("SELECT 'it''s é'", "SELECT E'it''s \\u00e9'"),
    ("SELECT E'\\\\é'", "SELECT E'\\\\\\u00e9'"),                       # a backslash, then é
    ("SELECT E'\\xc3\\xa9 é'", "SELECT E'\\u00e9 \\u00e9'"),             # escapes decoded fully
    ("SELECT E'\\u00e9\\'é'", "SELECT E'\\u00e9''\\u00e9'"),
    ("SELECT '𝄞'", "SELECT E'\\U0001d11e'"),
    ("SELECT 1 AS \"𝄞\"", "SELECT 1 AS U&\"\\+01d11e\""),
    ("SELECT $$é$$", "SELECT E'\\u00e9'"),
    ("SELECT $f$ a 'é' \\ $$ $f$", "SELECT E' a ''\\u00e9'' \\\\ $$ '"),  # a function body's value
    ("SELECT $é$x$é$", "SELECT E'x'"),
    ("SELECT 'a' -- é\n'b'", "SELECT E'ab'"),                          # continued over lines
    ("SELECT Éa, tablé.x FROM tablé", 'SELECT U&"\\00c9a", U&"tabl\\00e9".x FROM U&"tabl\\00e9"'),
    ("SELECT \"x\"\"é\\\"", 'SELECT U&"x""\\00e9\\\\"'),               # quote doubled, \ escaped
    ("SELECT 1 /* é /* nested */ */ + 2 -- ü", "SELECT 1 /**/ + 2 --"),
    ("SELECT date'é', n'é', N'x'", "SELECT date E'\\u00e9', NCHAR E'\\u00e9', N'x'"),
    ("SELECT é\"x\"", 'SELECT U&"\\00e9" "x"'),                        # é AS "x", not one name
    ("SELECT 'é'\"x\"", "SELECT E'\\u00e9' \"x\""),
])
def test_as_ascii(sql, expected):
    written = as_ascii(sql)
    assert written == expected
    assert written.isascii()
    assert tree(written) == tree(sql)


@pytest.mark.parametrize("sql, fragment", [
    ("SELECT $é$ a $ü$ b $é$", "dollar"),  # scanned with one letter for both tags: refused
    ("SELECT $é$ a $ü$ b", "dollar-quote tags that differ"),
    ("SELECT U&'é'", "non-ASCII"),
    ("SELECT U&\"é\"", "non-ASCII"),
    ("SELECT B'é'", "non-ASCII"),
    ("SELECT é UESCAPE '!'", "UESCAPE"),
    ("SELECT $$é$$\n'x'", "syntax error"),          # as E'..' it would continue into 'x'
    ("SELECT 'é", "unterminated"),
    ("SELECT E'\\xc3 é'", "invalid byte sequence"),
])
def test_as_ascii_refuses_what_it_cannot_write(sql, fragment):
    with pytest.raises(GrammarError, match=fragment):
        as_ascii(sql)


def test_as_ascii_is_linear(monkeypatch):
    """pglast's scanner is quadratic in the non-ASCII characters of its text (its character
    offsets); as_ascii is not: ten thousand constants and names holding them are scanned once,
    as ASCII text."""
    scans = _count_scans(monkeypatch)
    sql = "INSERT INTO t VALUES " + ", ".join(f"({i}, 'é{i}', $$あ$$, \"é\") -- ü\n" for i in range(10_000))
    written = as_ascii(sql)
    assert scans == [True]  # one scan, of ASCII text
    assert written.isascii() and written.count("E'\\u00e9") == 10_000
    assert "$q$ é $q$" not in sql and as_ascii("SELECT $q$ $é$ $q$") == "SELECT E' $\\u00e9$ '"
    assert str(pytest.raises(GrammarError, as_ascii, "SELECT 'é").value).startswith(
        "unterminated quoted string at or near \"'é\"")  # the client's text in the message


def test_writers_are_ascii():
    assert sql_literal("a'b\\cé𝄞") == "E'a''b\\\\c\\u00e9\\U0001d11e'"
    assert sql_literal("plain") == "E'plain'"
    assert quote_ident("plain") == '"plain"'
    assert quote_ident('tablé"\\') == 'U&"tabl\\00e9""\\\\"'
    assert quote_ident(CLEF) == 'U&"\\+01d11e"'
    assert quoted_name("tablé") == '"tablé"'  # for regclass text: inside sql_literal only
    assert tree(f"SELECT {sql_literal('é')} AS {quote_ident('é')}") == tree("SELECT 'é' AS \"é\"")


@pytest.mark.parametrize("sql, value", [
    ("'plain'", "plain"), ("'it''s'", "it's"), ("E'a\\nb'", "a\nb"), ("E'\\u00e9\\U0001d11e'", "é𝄞"),
    ("E'\\xc3\\xa9\\351'", None), ("E'\\xc3\\xa9'", "é"), ("'a'\n'b'", "ab"), ("E'a\\''\n'b'", "a'b"),
    ("$t$x'\\$t$", "x'\\"),
])
def test_string_values_as_the_proxy_sends_them(sql, value):
    """The grammars read constants as as_ascii writes them: every escape, continuations too."""
    (token,) = scan(sql) if value is not None else [None]
    if value is None:
        with pytest.raises(GrammarError, match="invalid byte sequence"):
            scan(sql)
        return
    assert string_value(token) == value
    assert string_value(scan(as_ascii(sql))[0]) == value


def test_names_as_the_proxy_sends_them():
    (token,) = scan('U&"tabl\\00e9 \\+01d11e"')
    assert fold_identifier(token) == "tablé 𝄞"
    assert Cursor(scan(as_ascii('"usé" x'))).name() == "usé"
    assert Cursor(scan(as_ascii("ÉA"))).name() == "Éa"  # unquoted: ASCII letters fold, as in PostgreSQL
    with pytest.raises(GrammarError, match="UESCAPE"):
        Cursor(scan('U&"d!0061t!+000061" UESCAPE \'!\'')).name()


_ALPHABET = ["a", "Z", " ", "'", '"', "\\", "$", "\n", "-", "/", "*", ";", E_ACUTE, A_HIRAGANA, CLEF,
             "\u00c3", "\u0861", "\u0801"]  # the last three end in a lead byte of SJIS / BIG5 / GBK


def _random_text(rng: random.Random) -> str:
    return "".join(rng.choice(_ALPHABET) for _ in range(rng.randint(1, 12)))


def _escaped(value: str) -> str:
    return value.replace("\\", "\\\\").replace("'", "\\'")


def _statement(rng: random.Random) -> tuple[str, list[str]]:
    """A statement holding random values in every kind of constant, name and comment, and the
    values; the names are the result's column names."""
    values = [_random_text(rng) for _ in range(4)]
    name = _random_text(rng)
    tag = "q" if "$q$" not in values[2] + "$" else "other"
    comment = _random_text(rng).replace("*/", "").replace("/*", "")
    sql = (f"SELECT '{values[0].replace(chr(39), chr(39) * 2)}' AS \"{name.replace(chr(34), chr(34) * 2)}\", "
           f"E'{_escaped(values[1])}', ${tag}${values[2]}${tag}$, /* {comment} */ "
           f"'{values[3].replace(chr(39), chr(39) * 2)}' -- {comment.splitlines()[0] if comment.strip() else ''}\n"
           f", 1 AS é{name.isalnum() and name or 'x'}")
    return sql, values


def test_random_statements_read_the_same_in_ascii():
    """Many random strings mixing ASCII, quotes, backslashes and non-ASCII: the written text is
    ASCII and PostgreSQL's parser reads the same statement (every constant's value, every name)."""
    rng = random.Random(20240917)
    checked = 0
    for _ in range(600):
        sql, values = _statement(rng)
        if values[2].endswith("$") or "$q$" in values[2]:
            continue  # not a dollar-quoted constant's possible value
        try:
            original = tree(sql)
        except parser.ParseError:
            continue  # e.g. a name PostgreSQL would refuse
        written = as_ascii(as_read(sql, True))
        assert written.isascii(), sql
        assert tree(written) == original, sql
        constants = [c["A_Const"]["sval"]["sval"] for c in _constants(tree(written))]
        assert constants[:4] == values, sql
        checked += 1
    assert checked > 400


def _constants(node):
    if isinstance(node, dict):
        if "A_Const" in node and "sval" in node["A_Const"]:
            yield node
        for value in node.values():
            yield from _constants(value)
    elif isinstance(node, list):
        for value in node:
            yield from _constants(value)


def _count_scans(monkeypatch) -> list[bool]:
    """Each scan pglast makes from now on, as whether its text was ASCII."""
    scans = []
    scan_sql = parser.scan

    def counted(text):
        scans.append(text.isascii())
        return scan_sql(text)
    monkeypatch.setattr(parser, "scan", counted)
    return scans


@pytest.mark.parametrize("sql, off, on", [
    ("SELECT 'a\\b'", "SELECT E'a\\b'", "SELECT E'a\\\\b'"),
    # off: \' is a quote inside the constant, which ends at the last quote; on: two constants
    ("SELECT 'x\\'' AS a, ', DISCARD ALL; --' AS b", "SELECT E'x\\'' AS a, ', DISCARD ALL; --' AS b",
     "SELECT E'x\\\\'' AS a, ', DISCARD ALL; --' AS b"),
    ("SELECT 'a\\\\', 'b'", "SELECT E'a\\\\', 'b'", "SELECT E'a\\\\\\\\', 'b'"),
    ("SELECT E'a\\'', 'b\\'", GrammarError, "SELECT E'a\\'', E'b\\\\'"),  # off: 'b\\' is unterminated
    ("SELECT N'a\\b'", "SELECT NCHAR E'a\\b'", "SELECT NCHAR E'a\\\\b'"),  # N E'..' would be a name
    ("SELECT x'1'||'a\\b'", "SELECT x'1'||E'a\\b'", "SELECT x'1'||E'a\\\\b'"),
    ("SELECT \"a\\'\", $$b\\'$$, 'c' -- d\\'\n", None, None),  # no ordinary constant holds one
    ("SELECT 1 /* '\\' */ + 'e\\f'", "SELECT 1 /* '\\' */ + E'e\\f'", "SELECT 1 /* '\\' */ + E'e\\\\f'"),
    ("SELECT date'2020\\'", GrammarError, "SELECT date E'2020\\\\'"),
])
def test_as_read(sql, off, on):
    """Each ordinary constant holding a backslash, as the setting reads it, written as E'...'
    (None: the text as it is; GrammarError: that setting cannot scan it)."""
    for standard, expected in ((False, off), (True, on)):
        if expected is GrammarError:
            pytest.raises(GrammarError, as_read, sql, standard)
            continue
        written = as_read(sql, standard)
        assert written == (sql if expected is None else expected)
        assert as_read(written, not standard) == written  # it reads the same under the other setting


def test_as_read_scans_once(monkeypatch):
    """Thousands of constants holding backslashes (also ones that end elsewhere with the setting
    off): one scan, not one per constant."""
    scans = _count_scans(monkeypatch)
    sql = "SELECT " + ", ".join("'a\\b', 'it\\'s'" for _ in range(2000))
    written = as_read(sql, False)
    assert scans == [True]
    assert written.count("E'") == 4000


def test_standard_conforming_strings_off_then_ascii():
    """A Redshift session reads '\\'' as a quote: the written text reads so whatever the setting."""
    written = as_ascii(as_read("SELECT 'é\\' ; DISCARD ALL; --'", False))
    assert written == "SELECT E'\\u00e9'' ; DISCARD ALL; --'"


# ---------------------------------------------------------------- classification


def test_non_ascii_always_takes_the_full_path_and_is_sent_in_ascii():
    assert may_need_plan("SELECT 'é'".encode())
    assert not may_need_plan(b"SELECT 'e'")
    result = classify("SELECT 'é' FROM \"tablé\"".encode(), TRANSLATOR)
    assert result is not PASS and result.actions == ()
    assert result.text == "SELECT E'\\u00e9' FROM U&\"tabl\\00e9\""


@pytest.mark.parametrize("sql, message", [
    (b"SELECT '\x82\x5c' ; SET ROLE awsuser; --'", 'invalid byte sequence for encoding "UTF8": 0x82'),
    (b"SELECT '\xe3\x81'", 'invalid byte sequence for encoding "UTF8": 0xe3 0x81 0x27'),  # as PostgreSQL
    (b"SELECT 1; SELECT '\xc3\x28'", 'invalid byte sequence for encoding "UTF8": 0xc3 0x28'),
])
def test_invalid_utf8_is_refused_never_passed(sql, message):
    result = classify(sql, TRANSLATOR)
    (action,) = result.actions
    assert (action.denial.sqlstate, action.denial.message) == ("22021", message)
    assert result.text == ""  # nothing of it is sent


@pytest.mark.parametrize("sql", [
    "SELECT U&'é'", "SELECT $$é$$\n'x'", "SELECT 'é",
])
def test_non_ascii_the_proxy_cannot_write_is_refused(sql):
    result = classify(sql.encode(), TRANSLATOR)
    (action,) = result.actions
    assert action.denial is not None and result.text == ""


def test_printed_sql_reads_the_same_whatever_standard_conforming_strings_says():
    """pglast prints the value \\ as '\\' (standard_conforming_strings on): sent so, a Redshift
    session (off) would read the constant on to the next quote, and what follows it as SQL."""
    sql = ("SELECT usename FROM pg_user WHERE usename = E'\\\\' OR usename = $$ ; SELECT 42 ; SELECT $$ "
           "OR usename = 'é--'")
    (action,) = classify(sql.encode(), TRANSLATOR, standard_strings=False).actions
    assert action.sql.isascii()
    assert "E'\\\\'" in action.sql and "'\\'" not in action.sql.replace("E'\\\\'", "")
    assert tree(action.sql) == tree(as_read(action.sql, False))  # the same under either setting


@pytest.mark.parametrize("sql", [
    "SET client_encoding = 'SJIS'", "SET client_encoding TO sjis", "SET SESSION client_encoding = 'BIG5'",
    "SET LOCAL client_encoding = 'GBK'", "SET NAMES 'GB18030'", 'SET "Client_Encoding" = \'SJIS\'',
    "SET U&\"client\\005fencoding\" = 'SJIS'", "SET client_encoding = 932",
    "SELECT set_config('client_encoding', 'SJIS', false)", "SELECT set_config(E'client\\137encoding', 'BIG5', false)",
    "SELECT U&\"set\\005fconfig\"('client_encoding', 'SJIS', false)",
    "SELECT set_config('client_encoding', current_setting('x.y'), false)",
    "CREATE FUNCTION f() RETURNS int LANGUAGE sql SET client_encoding = 'SJIS' AS 'SELECT 1'",
    "CREATE FUNCTION f() RETURNS int LANGUAGE sql SET client_encoding FROM CURRENT AS 'SELECT 1'",
    "ALTER FUNCTION f() SET client_encoding = 'SJIS'", "ALTER DATABASE dev SET client_encoding = 'SJIS'",
    "ALTER USER bob SET client_encoding TO 'SJIS'",
])
def test_client_encoding_other_than_utf8_is_refused(sql):
    (action,) = classify(sql.encode(), TRANSLATOR).actions
    assert action.denial.sqlstate == "0A000"
    assert "client_encoding must be UTF8" in action.denial.message


@pytest.mark.parametrize("sql", [
    "SET client_encoding = 'UTF8'", "SET client_encoding = 'utf-8'", "SET NAMES 'unicode'",
    "SET client_encoding TO DEFAULT", "RESET client_encoding", "RESET ALL",
    "SELECT set_config('client_encoding', 'UTF8', false)", "SHOW client_encoding",
])
def test_client_encoding_utf8_passes(sql):
    assert classify(sql.encode(), TRANSLATOR).actions == ()


def test_set_config_on_role_is_refused_however_its_name_is_spelled():
    (action,) = classify(b"SELECT U&\"set\\005fconfig\"('role', 'awsuser', false)", TRANSLATOR).actions
    assert action.denial.sqlstate == "0A000" and "set_config" in action.denial.message


def test_the_trigger_search_is_a_substring_test():
    """The prefilter's one-pass search (a prefix tree of the words) answers as any(w in text)."""
    search = _any_of(_TRIGGER_WORDS + (b"sys", b"a.b"))
    rng = random.Random(7)
    pieces = [w[:rng.randint(1, len(w))] for w in _TRIGGER_WORDS] + [b" ", b"x", b".", b"u&", b"sys_"]
    for _ in range(3000):
        text = b"".join(rng.choice(pieces) for _ in range(rng.randint(0, 8)))
        expected = any(w in text for w in _TRIGGER_WORDS + (b"sys", b"a.b"))
        assert (search.search(text) is not None) == expected, text
    assert search.search(b"axb") is None  # literals: '.' is no wildcard
