"""The one client encoding a session may have, UTF8 (Redshift's): which client_encoding values
mean it, and the refusal of the others. Pure; used by the startup parameters
(frontend/params.py), statement classification (SET client_encoding, set_config) and the
relay (ParameterStatus).

Amazon Redshift reports client_encoding=UTF8 and server_encoding=UNICODE (reference/
redshift-sql-acl.md, ParameterStatus seen from real clusters); whether and how it refuses
another client_encoding is UNVERIFIED. shiftguard accepts UTF8 only: the proxy reads SQL as
UTF-8, and some client encodings (SJIS, BIG5, GBK, GB18030) read bytes that are one
string constant in UTF-8 as a constant and then SQL (tokens.as_ascii).
"""

from __future__ import annotations

HINT = "Amazon Redshift supports UTF-8 only; connect and send SQL as UTF8 (client_encoding=UTF8)"


def is_utf8(value: str) -> bool:
    """Whether PostgreSQL reads this client_encoding value as UTF8: pg_char_to_encoding keeps
    only ASCII letters and digits, lower-cased ('utf-8', 'UTF8', 'Unicode', 'utf_8')."""
    cleaned = "".join(c.lower() for c in value if c.isascii() and c.isalnum())
    return cleaned in ("utf8", "unicode")


def refusal(value: str | None) -> str:
    """The message for a client_encoding other than UTF8 (None: one known only at run time)."""
    if value is None:
        return "a client_encoding known only at run time is not supported: client_encoding must be UTF8"
    return f'client_encoding "{value}" is not supported: client_encoding must be UTF8'
