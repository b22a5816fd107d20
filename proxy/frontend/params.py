"""Which startup parameters reach PostgreSQL: a short allow-list of session settings.

Redshift drivers send keys PostgreSQL would reject (reference/clients.md); they are kept for
the connection log and never forwarded. Anything that could change who the session is or what
protocol it speaks (role, session_authorization, replication, unknown server options) is
refused: deny by default.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..policy import encoding

# Sent by redshift_connector and the Redshift JDBC driver; meaningless to PostgreSQL.
REDSHIFT_ONLY = frozenset({
    "client_protocol_version", "driver_version", "os_version", "plugin_name",
    "driver_discovery_version", "idp_type", "provider_name", "token_type", "identity_namespace",
    "idc_client_display_name", "idc_region", "compression",
})

# Redshift's result protocols (redshift_connector's ClientProtocolVersion, the JDBC driver's
# *_SERVER_PROTOCOL_VERSION): 0 BASE_SERVER, 1 EXTENDED_RESULT_METADATA (RowDescription names
# each column's schema, table, column and catalog), 2 BINARY (Redshift's binary forms of NUMERIC
# and friends). The JDBC driver's 3 (EXTENDED2: a case-sensitivity bit) is not offered: a client
# asking for it gets 2, as a server that knows no newer one answers.
NEWEST_PROTOCOL = 2

# Plugins whose login is an OIDC token sent in auth code 14 (reference/redshift-iam.md §4, §5):
# redshift_connector sends the class name, the JDBC driver com.amazon.redshift.plugin.<name>.
NATIVE_IDP_PLUGINS = frozenset({"BasicJwtCredentialsProvider", "BrowserAzureOAuth2CredentialsProvider",
                                "IdpTokenAuthPlugin", "BrowserIdcAuthPlugin"})

# PostgreSQL settings a client may give at startup (names compared case-insensitively).
FORWARDED = frozenset({
    "application_name", "client_encoding", "datestyle", "timezone", "intervalstyle",
    "extra_float_digits", "search_path", "statement_timeout", "lock_timeout",
    "idle_in_transaction_session_timeout", "default_transaction_isolation",
    "default_transaction_read_only", "default_transaction_deferrable", "bytea_output",
    "standard_conforming_strings", "geqo", "jit", "work_mem", "lc_monetary", "lc_numeric",
    "lc_time", "timezone_abbreviations", "xmlbinary", "xmloption", "row_security",
    "enable_seqscan", "enable_indexscan", "enable_hashjoin", "enable_mergejoin",
    "enable_nestloop", "random_page_cost", "client_min_messages", "gssencmode",
})


class StartupRefused(Exception):
    """A startup parameter the proxy will not pass on; the message (and hint) go to the client."""

    def __init__(self, message: str, hint: str | None = None):
        super().__init__(message)
        self.hint = hint


@dataclass
class StartupParams:
    user: str
    database: str
    forwarded: dict[str, str] = field(default_factory=dict)  # sent to PostgreSQL
    redshift: dict[str, str] = field(default_factory=dict)   # kept for the connection log
    protocol_options: list[str] = field(default_factory=list)  # _pq_.* the client asked for

    @property
    def is_redshift_driver(self) -> bool:
        """redshift_connector and the Redshift JDBC driver announce their protocol version."""
        return "client_protocol_version" in self.redshift or "driver_version" in self.redshift

    @property
    def granted_protocol(self) -> int | None:
        """The server_protocol_version this client gets: what it asked for, up to the newest
        shiftguard speaks (anything but 1 to 10 digits is 0); None when it asked for none
        (psql, pgjdbc, psycopg, asyncpg: they see PostgreSQL's protocol, nothing added)."""
        if "client_protocol_version" not in self.redshift:
            return None
        return min(self.protocol_version, NEWEST_PROTOCOL)

    @property
    def uses_identity_provider(self) -> bool:
        """The client logs in with an identity provider's token (auth code 14), not a password."""
        plugin = self.redshift.get("plugin_name", "").rsplit(".", 1)[-1]
        return "idp_type" in self.redshift or plugin in NATIVE_IDP_PLUGINS

    def sets(self) -> set[str]:
        """The settings (lower-case names) the client gives itself, in startup parameters or in
        `options`: a cluster parameter group's value yields to them, as a default does."""
        names = {name.lower() for name in self.forwarded if name != "options"}
        return names | {name.lower() for name, _ in split_options(self.forwarded.get("options", ""))}

    @property
    def application_name(self) -> str:
        return self.forwarded.get("application_name", "")

    @property
    def protocol_version(self) -> int:
        """client_protocol_version for the connection log (an integer column): 0 unless it is
        1 to 10 ASCII digits within PostgreSQL's integer range ('²' is a digit to Python, and
        99999999999999999999 is none of PostgreSQL's integers)."""
        text = self.redshift.get("client_protocol_version", "")
        if 0 < len(text) <= 10 and text.isascii() and text.isdigit() and int(text) < 1 << 31:
            return int(text)
        return 0


def sort_startup_params(params: dict[str, str]) -> StartupParams:
    user = params.get("user", "")
    result = StartupParams(user=user, database=params.get("database") or user)
    for name, value in params.items():
        lower = name.lower()
        if name in ("user", "database"):
            continue
        if name.startswith("_pq_."):
            result.protocol_options.append(name)
        elif lower in REDSHIFT_ONLY:
            result.redshift[lower] = value
        elif lower == "replication":
            if value.lower() not in ("false", "off", "no", "0"):
                raise StartupRefused("replication connections are not supported through shiftguard")
        elif lower == "options":
            for option, option_value in split_options(value):
                _check_setting(option)
                if option.lower() == "client_encoding":
                    _check_encoding(option_value)
            if value.strip():
                result.forwarded["options"] = value
        elif lower == "client_encoding":
            # Checked, never forwarded: the backend session is always opened with UTF8
            # (frontend/connection.py), which also overrides a role's or database's default.
            _check_encoding(value)
        elif lower in FORWARDED:
            result.forwarded[name] = value
        else:
            _check_setting(name)
    # The user of an identity provider's login is named by its token; otherwise one is needed.
    if not user and not result.uses_identity_provider:
        raise StartupRefused("no PostgreSQL user name specified in startup packet")
    return result


def _check_encoding(value: str) -> None:
    """Only UTF8 (policy/encoding.py); the client's own name for it is accepted (asyncpg sends
    'utf-8', JDBC and redshift_connector 'UTF8')."""
    if not encoding.is_utf8(value):
        raise StartupRefused(encoding.refusal(value), hint=encoding.HINT)


def _check_setting(name: str) -> None:
    if name.lower() not in FORWARDED:
        raise StartupRefused(f'startup parameter "{name}" is not supported by shiftguard')


def split_options(options: str) -> list[tuple[str, str]]:
    """PostgreSQL's `options` startup value ("-c name=value --name=value", backslash escapes a
    character, as in pg_split_opts) -> [(name, value)]; anything but -c/-- settings is refused."""
    words: list[str] = []
    current: list[str] = []
    escaped = False
    for char in options:
        if escaped:
            current.append(char)
            escaped = False
        elif char == "\\":
            escaped = True
        elif char.isspace():
            if current:
                words.append("".join(current))
                current = []
        else:
            current.append(char)
    if current:
        words.append("".join(current))
    settings = []
    index = 0
    while index < len(words):
        word = words[index]
        if word == "-c" and index + 1 < len(words):
            setting = words[index + 1]
            index += 2
        elif word.startswith("-c") and len(word) > 2:
            setting = word[2:]
            index += 1
        elif word.startswith("--") and len(word) > 2:
            setting = word[2:]
            index += 1
        else:
            raise StartupRefused(f'startup option "{word}" is not supported by shiftguard')
        name, sep, value = setting.partition("=")
        if not sep or not name:
            raise StartupRefused(f'startup option "{setting}" needs the form name=value')
        settings.append((name.replace("-", "_"), value))
    return settings
