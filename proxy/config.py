"""Configuration: the schema with its defaults, YAML loading, SHIFTGUARD_* overrides, validation.

Every key is declared once here; config/shiftguard.yaml documents the same keys with the same
defaults (a test holds the two together). A bad value raises ConfigError naming the key.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import json
import os
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path

import yaml

DEFAULT_CONFIG_PATH = Path("config/shiftguard.yaml")
# PyYAML's safe loader, with libyaml's parser where PyYAML was built with it (twenty times faster
# on the shipped, commented configuration; the same safe constructor either way).
_SAFE_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

# The documented dev password for the admin user when SHIFTGUARD_ADMIN_PASSWORD is unset. With
# it the proxy refuses to listen on anything but loopback addresses.
DEFAULT_ADMIN_PASSWORD = "Shiftguard-dev-1"

# Environment variables that are not config keys but belong to shiftguard.
NON_KEY_ENV = {"SHIFTGUARD_ADMIN_PASSWORD"}


# The most worker processes: the worker that holds a session is told by the low bits of the
# process id its client was given (proxy/workers.py).
MAX_WORKERS = 64


class ConfigError(Exception):
    """A configuration problem, reported as one line naming the key."""


@dataclass(frozen=True)
class Address:
    host: str
    port: int

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    @property
    def is_loopback(self) -> bool:
        if self.host == "localhost":
            return True
        try:
            return ipaddress.ip_address(self.host).is_loopback
        except ValueError:
            return False


def parse_address(text: str) -> Address:
    match = re.fullmatch(r"\[([0-9a-fA-F:.]+)\]:(\d+)|([^:\[\]]+):(\d+)", text.strip())
    if not match:
        raise ValueError(f"expected HOST:PORT (IPv6 as [ADDR]:PORT), got {text!r}")
    host = match.group(1) or match.group(3)
    port = int(match.group(2) or match.group(4))
    if port > 65535:
        raise ValueError(f"port {port} is out of range")
    if match.group(1):
        ipaddress.IPv6Address(host)
    return Address(host, port)


@dataclass(frozen=True)
class Cluster:
    identifier: str = "shiftguard"
    region: str = "us-east-1"
    # AWS's documentation account id; ARNs of this cluster use it unless configured.
    account_id: str = "123456789012"
    database: str = "dev"
    admin_user: str = "awsuser"
    # The security groups attached to this cluster (names from security_groups).
    security_groups: list[str] = field(default_factory=lambda: ["default"])
    # Seconds an idle session may stay open when its user has no SESSION TIMEOUT; 0: no limit.
    # (Redshift's range for a user's SESSION TIMEOUT is 60 to 1728000; this one takes any.)
    session_timeout: int = 0
    # IAM roles associated with the cluster (their ARNs; roles of iam.roles), which COPY and
    # UNLOAD may name in IAM_ROLE; the starting state, which ModifyClusterIamRoles changes.
    iam_roles: list[str] = field(default_factory=list)
    # The one of them IAM_ROLE DEFAULT names (Redshift's DefaultIamRoleArn); empty: none.
    default_iam_role: str | None = None
    # Note when each table made from now on is written (sys_query_detail: dbt's source freshness
    # from metadata). A statement trigger on each new table: it costs every write statement.
    track_table_writes: bool = False

    def validate(self, where: str) -> None:
        if not re.fullmatch(r"[a-z][a-z0-9-]{0,62}", self.identifier):
            raise ConfigError(f"{where}.identifier: must be 1-63 lower-case letters, digits or hyphens "
                              f"starting with a letter, got {self.identifier!r}")
        if not re.fullmatch(r"[a-z]{2}(-[a-z]+)+-\d", self.region):
            raise ConfigError(f"{where}.region: not an AWS region name: {self.region!r}")
        if not 0 <= self.session_timeout <= 1_728_000:
            raise ConfigError(f"{where}.session_timeout: must be between 0 and 1728000 seconds")
        if not re.fullmatch(r"\d{12}", self.account_id):
            raise ConfigError(f"{where}.account_id: must be 12 digits, got {self.account_id!r}")
        for key in ("database", "admin_user"):
            if not re.fullmatch(r"[a-z_][a-z0-9_$]{0,62}", getattr(self, key)):
                raise ConfigError(f"{where}.{key}: must be a lower-case identifier, "
                                  f"got {getattr(self, key)!r}")
        if self.default_iam_role is not None and self.default_iam_role not in self.iam_roles:
            raise ConfigError(f"{where}.default_iam_role: must be one of {where}.iam_roles")


@dataclass(frozen=True)
class IngressRule:
    cidr: str
    description: str = ""

    def validate(self, where: str) -> None:
        _cidr(self.cidr, f"{where}.cidr")


@dataclass(frozen=True)
class SecurityGroup:
    name: str
    description: str = ""
    ingress: list[IngressRule] = field(default_factory=list)

    def validate(self, where: str) -> None:
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9 ._-]{0,254}", self.name):
            raise ConfigError(f"{where}.name: not a security group name: {self.name!r}")


def _cidr(text: str, key: str) -> None:
    import netaddr

    try:
        netaddr.IPNetwork(text)
        if "/" not in text:
            raise ValueError
    except (netaddr.AddrFormatError, ValueError, TypeError):
        raise ConfigError(f"{key}: not a CIDR block (like 10.0.0.0/16 or 2001:db8::/32): {text!r}") from None


def _loopback_groups() -> list[SecurityGroup]:
    return [SecurityGroup("default", "loopback only", [IngressRule("127.0.0.0/8", "IPv4 loopback"),
                                                     IngressRule("::1/128", "IPv6 loopback")])]


@dataclass(frozen=True)
class AccessKey:
    id: str
    secret: str

    def validate(self, where: str) -> None:
        if not re.fullmatch(r"[A-Z0-9]{16,128}", self.id):
            raise ConfigError(f"{where}.id: an access key id is 16-128 upper-case letters and digits")
        if len(self.secret) < 16:
            raise ConfigError(f"{where}.secret: an access key secret is at least 16 characters")


@dataclass(frozen=True)
class IamUser:
    name: str
    access_keys: list[AccessKey] = field(default_factory=list)
    # IAM policy documents (JSON as YAML mappings), attached inline.
    policies: list[dict] = field(default_factory=list)
    groups: list[str] = field(default_factory=list)
    # Principal tags, e.g. RedshiftDbRoles: "manager:engineer".
    tags: dict[str, str] = field(default_factory=dict)

    def validate(self, where: str) -> None:
        if not re.fullmatch(r"[\w+=,.@-]{1,64}", self.name):
            raise ConfigError(f"{where}.name: not an IAM user name: {self.name!r}")
        _check_policies(self.policies, f"{where}.policies")


@dataclass(frozen=True)
class IamGroup:
    name: str
    policies: list[dict] = field(default_factory=list)

    def validate(self, where: str) -> None:
        _check_policies(self.policies, f"{where}.policies")


def _check_policies(policies: list[dict], where: str) -> None:
    for n, policy in enumerate(policies):
        statements = policy.get("Statement")
        if isinstance(statements, dict):
            statements = [statements]
        if not isinstance(statements, list) or not statements:
            raise ConfigError(f"{where}[{n}]: a policy needs a Statement")
        for m, statement in enumerate(statements):
            if not isinstance(statement, dict) or statement.get("Effect") not in ("Allow", "Deny"):
                raise ConfigError(f"{where}[{n}].Statement[{m}]: Effect must be Allow or Deny")
            if not ({"Action", "NotAction"} & set(statement)) or not ({"Resource", "NotResource"} & set(statement)):
                raise ConfigError(f"{where}[{n}].Statement[{m}]: needs Action/NotAction and Resource/NotResource")


@dataclass(frozen=True)
class IamRole:
    """A role IAM users may assume with STS AssumeRole (iam/sts.py)."""

    name: str
    # Empty: cluster.account_id. The role's ARN is arn:aws:iam::<account>:role/<name>.
    account: str | None = None
    # Who may assume it: a list of IAM user names, or a trust policy document (Statement with
    # Principal {"AWS": [ARNs or account ids]}, Action sts:AssumeRole, optional Condition).
    trust: object = field(default_factory=list)
    # The session's permissions: IAM policy documents, attached inline.
    policies: list[dict] = field(default_factory=list)
    # Principal tags, e.g. RedshiftDbRoles: "manager:engineer".
    tags: dict[str, str] = field(default_factory=dict)
    # The longest session AssumeRole grants (DurationSeconds), 3600 to 43200 as in AWS.
    max_session_duration: int = 3600

    def validate(self, where: str) -> None:
        if not re.fullmatch(r"[\w+=,.@-]{1,64}", self.name):
            raise ConfigError(f"{where}.name: not an IAM role name: {self.name!r}")
        if self.account is not None and not re.fullmatch(r"\d{12}", self.account):
            raise ConfigError(f"{where}.account: an account id is 12 digits")
        if not 3600 <= self.max_session_duration <= 43200:
            raise ConfigError(f"{where}.max_session_duration: must be between 3600 and 43200 seconds")
        _check_policies(self.policies, f"{where}.policies")
        if isinstance(self.trust, list):
            if not all(isinstance(name, str) for name in self.trust):
                raise ConfigError(f"{where}.trust: a list of IAM user names, or a trust policy document")
            return
        if not isinstance(self.trust, dict):
            raise ConfigError(f"{where}.trust: a list of IAM user names, or a trust policy document")
        statements = self.trust.get("Statement")
        statements = [statements] if isinstance(statements, dict) else statements
        if not isinstance(statements, list) or not statements:
            raise ConfigError(f"{where}.trust: a trust policy needs a Statement")
        for m, statement in enumerate(statements):
            if not isinstance(statement, dict) or statement.get("Effect") not in ("Allow", "Deny"):
                raise ConfigError(f"{where}.trust.Statement[{m}]: Effect must be Allow or Deny")
            if "Principal" not in statement or "Action" not in statement:
                raise ConfigError(f"{where}.trust.Statement[{m}]: needs Principal and Action "
                                  "(NotPrincipal and NotAction are not supported in trust policies here)")


@dataclass(frozen=True)
class IamSamlProvider:
    """An IAM SAML provider for STS AssumeRoleWithSAML (iam/saml.py):
    arn:aws:iam::<cluster.account_id>:saml-provider/<name>."""

    name: str
    # The IdP's SAML metadata XML (its entity id and signing certificates), inline ...
    metadata: str | None = None
    # ... or the path of a file holding it.
    metadata_file: str | None = None

    def validate(self, where: str) -> None:
        from .iam.saml import SamlProvider

        if not re.fullmatch(r"[\w.-]{1,128}", self.name):
            raise ConfigError(f"{where}.name: a SAML provider name is 1-128 letters, digits, '.', '_' or '-'")
        if (self.metadata is None) == (self.metadata_file is None):
            raise ConfigError(f"{where}: give exactly one of metadata and metadata_file")
        try:
            SamlProvider.from_metadata(self.name, "000000000000", self.metadata_xml())
        except (OSError, ValueError) as exc:
            raise ConfigError(f"{where}: unusable SAML metadata: {exc}") from None

    def metadata_xml(self) -> str:
        return self.metadata if self.metadata is not None else Path(self.metadata_file).read_text()


@dataclass(frozen=True)
class IamOidcProvider:
    """An IAM OpenID Connect provider for STS AssumeRoleWithWebIdentity:
    arn:aws:iam::<cluster.account_id>:oidc-provider/<url without https://>."""

    # The issuer (the tokens' iss), an https URL.
    url: str
    # The audiences (aud) accepted; AWS's default client id is sts.amazonaws.com.
    client_ids: list[str] = field(default_factory=lambda: ["sts.amazonaws.com"])
    # The keys, since shiftguard never fetches them: one of jwks (a JWKS mapping), jwks_file (an
    # absolute path, read at each call) or public_key (PEM).
    jwks: dict[str, object] | None = None
    jwks_file: str | None = None
    public_key: str | None = None

    def validate(self, where: str) -> None:
        from .policy import idp
        from .policy.tokens import GrammarError

        if not re.fullmatch(r"https://[^\s/?#]+(/[^\s?#]*)?", self.url) or self.url.endswith("/"):
            raise ConfigError(f"{where}.url: the issuer, an https URL without a trailing slash")
        if not self.client_ids:
            raise ConfigError(f"{where}.client_ids: at least one audience")
        try:
            idp.check_parameters(json.dumps(self.params()))
        except GrammarError as exc:
            raise ConfigError(f"{where}: {exc}") from None

    @property
    def arn_suffix(self) -> str:
        return self.url.removeprefix("https://")

    def params(self) -> dict:
        """In the shape iam/oidc.py verifies tokens with (native identity providers' PARAMETERS)."""
        keys = {k: v for k, v in (("jwks", self.jwks), ("jwks_file", self.jwks_file),
                                  ("public_key", self.public_key)) if v is not None}
        return {"issuer": self.url, "audience": list(self.client_ids)} | keys


@dataclass(frozen=True)
class Iam:
    """Who may call the Redshift API (AWS-style principals) and the tokens it mints."""

    users: list[IamUser] = field(default_factory=list)
    groups: list[IamGroup] = field(default_factory=list)
    # Roles the users may assume through STS AssumeRole on the API port.
    roles: list[IamRole] = field(default_factory=list)
    # PEM private key (Ed25519) signing the temporary credentials; empty: one is made in
    # data_dir/tokens on first start. Proxies sharing a backend must share this key.
    token_key: str | None = None
    # SAML 2.0 identity providers for STS AssumeRoleWithSAML.
    saml_providers: list[IamSamlProvider] = field(default_factory=list)
    # OpenID Connect providers for STS AssumeRoleWithWebIdentity.
    oidc_providers: list[IamOidcProvider] = field(default_factory=list)
    # A development IdP (iam/local_idp.py) that signs whatever it is asked to, for tests: it is
    # then the SAML provider "shiftguard" and an OIDC provider. Never in production.
    local_idp: bool = False
    # Where the local IdP's HTTPS sign-in (an AD FS-style form) listens, loopback only; port 0:
    # any free one. redshift_connector's SAML plugins reach an IdP on port 443 only.
    local_idp_listen: str = "127.0.0.1:0"

    def validate(self, where: str) -> None:
        names = [g.name for g in self.groups]
        for n, user in enumerate(self.users):
            for group in user.groups:
                if group not in names:
                    raise ConfigError(f"{where}.users[{n}].groups: no IAM group named {group!r}")
        keys = [k.id for u in self.users for k in u.access_keys]
        if len(set(keys)) != len(keys):
            raise ConfigError(f"{where}.users: an access key id is used twice")
        if any(k.startswith("ASIA") for k in keys):
            raise ConfigError(f"{where}.users: access key ids starting ASIA are STS session keys")
        users = {u.name for u in self.users}
        roles = [r.name for r in self.roles]
        if len(set(roles)) != len(roles):
            raise ConfigError(f"{where}.roles: a role name is used twice")
        for n, role in enumerate(self.roles):
            if isinstance(role.trust, list):
                for name in role.trust:
                    if name not in users:
                        raise ConfigError(f"{where}.roles[{n}].trust: no IAM user named {name!r}")
        names = [p.name for p in self.saml_providers] + (["shiftguard"] if self.local_idp else [])
        if len(set(names)) != len(names):
            raise ConfigError(f"{where}.saml_providers: a provider name is used twice (shiftguard is the local IdP's)")
        urls = [p.url for p in self.oidc_providers]
        if len(set(urls)) != len(urls):
            raise ConfigError(f"{where}.oidc_providers: a provider url is used twice")
        if self.token_key is not None and not Path(self.token_key).is_file():
            raise ConfigError(f"{where}.token_key: no such file: {self.token_key}")


@dataclass(frozen=True)
class Backend:
    # postgresql://user:password@host:port/database?sslmode=... ; empty: embedded PostgreSQL.
    dsn: str | None = None
    # Idle backend sessions kept (in all) for the next client of the same role, database and
    # startup parameters (0: none), and for how long (backend/pool.py).
    pool_size: int = 16
    pool_idle_seconds: float = 60.0
    # session: each client has a backend session of its own; transaction: a client holds one
    # only during a transaction, taken from its role's sessions (backend/txpool.py).
    pool_mode: str = "session"
    # transaction mode: backend sessions at most per role, database and startup parameters
    # (PgBouncer's default_pool_size); more clients wait (limits.query_wait_timeout).
    max_sessions_per_pool: int = 20

    def validate(self, where: str) -> None:
        if self.dsn is not None and not re.match(r"postgres(ql)?://", self.dsn):
            raise ConfigError(f"{where}.dsn: must be a postgresql:// URL")
        if self.pool_size < 0 or self.pool_idle_seconds <= 0:
            raise ConfigError(f"{where}.pool_size must be 0 or more and pool_idle_seconds more than 0")
        if self.pool_mode not in ("session", "transaction"):
            raise ConfigError(f"{where}.pool_mode: must be session or transaction, got {self.pool_mode!r}")
        if self.max_sessions_per_pool < 1:
            raise ConfigError(f"{where}.max_sessions_per_pool: must be at least 1")


@dataclass(frozen=True)
class TLS:
    cert: str | None = None
    key: str | None = None
    require_ssl: bool = False
    # Oldest TLS version a client may negotiate: TLSv1.2 or TLSv1.3.
    min_version: str = "TLSv1.2"
    # A CA file: clients that present a certificate must present one it signed.
    client_ca: str | None = None
    # With client_ca: a client without a certificate is refused.
    require_client_cert: bool = False

    def validate(self, where: str) -> None:
        if (self.cert is None) != (self.key is None):
            raise ConfigError(f"{where}: cert and key must be given together")
        if self.min_version not in ("TLSv1.2", "TLSv1.3"):
            raise ConfigError(f"{where}.min_version: must be TLSv1.2 or TLSv1.3")
        if self.require_client_cert and self.client_ca is None:
            raise ConfigError(f"{where}.require_client_cert: needs client_ca")
        for key in ("cert", "key", "client_ca"):
            path = getattr(self, key)
            if path is not None and not Path(path).is_file():
                raise ConfigError(f"{where}.{key}: no such file: {path}")


@dataclass(frozen=True)
class Limits:
    max_message_size: int = 1 << 30
    # Largest SQL text of a Query or Parse, as on Redshift (16 MB); more: 54000.
    max_statement_size: int = 16 << 20
    # Largest SQL text the proxy reads before it runs (statements that may hold something the
    # proxy owns: policy/cache.py); more: 54000. Bounds one statement's work on the event loop.
    max_checked_statement_size: int = 256 << 10
    # Characters of SQL of one message the proxy may read as parse trees to rewrite it (the
    # dearest reading); more: 54000.
    max_rewritten_statement_size: int = 128 << 10
    # Bytes the classification cache may hold (SQL and plans); an entry over a sixteenth of it
    # is never kept.
    classification_cache_bytes: int = 64 << 20
    max_startup_size: int = 10_000
    auth_timeout: float = 60.0
    # Client connections at once, authenticated or not; more get FATAL 53300.
    max_client_connections: int = 1000
    # Client connections at once from one source address; 0: no limit.
    max_connections_per_address: int = 0
    # Of those, connections that have not logged in yet (frontend/waiting.py): at most this
    # many at once (past it, or when max_client_connections are all taken, the oldest of the
    # address with the most waiting is closed), and at most this many from one address (0: no
    # limit; past it a newcomer is refused).
    max_unauthenticated_connections: int = 250
    max_unauthenticated_per_address: int = 0
    # Seconds a session may sit idle inside a transaction; 0: no limit.
    idle_in_transaction_timeout: float = 0.0
    # Seconds a client waits for a backend session in transaction pooling (backend.pool_mode)
    # when its pool is at backend.max_sessions_per_pool; then FATAL 53300 query_wait_timeout.
    query_wait_timeout: float = 120.0
    # The listen backlog of the client listeners.
    listen_backlog: int = 2048

    def validate(self, where: str) -> None:
        for key in ("max_client_connections", "listen_backlog"):
            if getattr(self, key) < 1:
                raise ConfigError(f"{where}.{key}: must be at least 1")
        if self.max_unauthenticated_connections < 1:
            raise ConfigError(f"{where}.max_unauthenticated_connections: must be at least 1")
        if self.query_wait_timeout <= 0:
            raise ConfigError(f"{where}.query_wait_timeout: must be more than 0 seconds")
        if (self.max_connections_per_address < 0 or self.idle_in_transaction_timeout < 0
                or self.max_unauthenticated_per_address < 0):
            raise ConfigError(f"{where}: limits cannot be negative")
        if not 1024 <= self.max_message_size <= 1 << 30:
            raise ConfigError(f"{where}.max_message_size: must be between 1024 and 1073741824")
        if not 1024 <= self.max_statement_size <= 1 << 30:
            raise ConfigError(f"{where}.max_statement_size: must be between 1024 and 1073741824")
        if not 1024 <= self.max_checked_statement_size <= self.max_statement_size:
            raise ConfigError(f"{where}.max_checked_statement_size: must be between 1024 and "
                              f"max_statement_size ({self.max_statement_size})")
        if self.max_rewritten_statement_size < 1024:
            raise ConfigError(f"{where}.max_rewritten_statement_size: must be at least 1024")
        if self.classification_cache_bytes < 0:
            raise ConfigError(f"{where}.classification_cache_bytes: cannot be negative")
        if not 64 <= self.max_startup_size <= 1 << 20:
            raise ConfigError(f"{where}.max_startup_size: must be between 64 and 1048576")
        if not 0 < self.auth_timeout <= 3600:
            raise ConfigError(f"{where}.auth_timeout: must be between 0 and 3600 seconds")


@dataclass(frozen=True)
class Auth:
    # Offer SCRAM-SHA-256 to PostgreSQL-native clients (never to Redshift drivers) for users
    # whose password was set in clear text; otherwise MD5, as Redshift does.
    scram: bool = False
    # After lockout_failures failed logins for one user from one address within lockout_window
    # seconds, refuse that user from that address for lockout_seconds (beyond Redshift).
    lockout_failures: int = 10
    lockout_window: float = 300.0
    lockout_seconds: float = 300.0
    # (user, address) pairs the throttle keeps at most, counting and locked ones each (about
    # 200 bytes a pair); past that the least recently failed are forgotten.
    lockout_max_pairs: int = 100_000

    def validate(self, where: str) -> None:
        if self.lockout_max_pairs < 1:
            raise ConfigError(f"{where}.lockout_max_pairs: must be at least 1")
        if self.lockout_failures < 1:
            raise ConfigError(f"{where}.lockout_failures: must be at least 1")
        if self.lockout_window <= 0 or self.lockout_seconds < 0:
            raise ConfigError(f"{where}.lockout_window/lockout_seconds: must be positive")


@dataclass(frozen=True)
class Audit:
    # Where connectionlog, userlog and useractivitylog are written; empty: data_dir/audit.
    dir: str | None = None
    # Log every statement before it runs (Redshift's enable_user_activity_logging).
    user_activity: bool = False
    # Rotate a log file once it is this big, in bytes.
    max_file_bytes: int = 100 << 20
    # Also rotate when a clock-aligned period of this many seconds ends (Redshift delivers its
    # logs hourly); 0: by size only.
    rotate_seconds: int = 3600
    # Also write the records as JSON lines to stdout (for container log collectors).
    json_stdout: bool = False
    # Characters of one statement the activity log, stl_query and sys_query_history keep; the
    # rest is cut and its length noted.
    max_statement_length: int = 65_536

    def validate(self, where: str) -> None:
        if not 1024 <= self.max_statement_length <= 16 << 20:
            raise ConfigError(f"{where}.max_statement_length: must be between 1024 and 16777216")
        if self.max_file_bytes < 1024:
            raise ConfigError(f"{where}.max_file_bytes: must be at least 1024")
        if self.rotate_seconds < 0:
            raise ConfigError(f"{where}.rotate_seconds: must be 0 (size only) or a number of seconds")


@dataclass(frozen=True)
class IdentityProvider:
    """A native identity provider, as CREATE IDENTITY PROVIDER would make it (policy/idp.py)."""

    name: str
    namespace: str
    # Redshift's issuer, client_id, client_secret, audience (a list), and one of jwks (inline
    # JWKS), jwks_file (absolute path) or public_key (PEM); optional user_claim, group_claim.
    parameters: dict[str, object] = field(default_factory=dict)
    type: str = "azure"
    application_arn: str | None = None
    iam_role: str | None = None
    auto_create_roles: bool = True
    enabled: bool = True

    def validate(self, where: str) -> None:
        from .policy import idp
        from .policy.tokens import GrammarError

        if not re.fullmatch(r"[a-z_][a-z0-9_$]{0,126}", self.name):
            raise ConfigError(f"{where}.name: must be a lower-case identifier, got {self.name!r}")
        if self.type not in idp.PROVIDER_TYPES:
            raise ConfigError(f"{where}.type: must be one of {', '.join(idp.PROVIDER_TYPES)}")
        try:
            idp.check_namespace(self.namespace)
            idp.check_parameters(json.dumps(self.parameters))
        except GrammarError as exc:
            raise ConfigError(f"{where}: {exc}") from None

    def spec(self) -> dict:
        """The JSON the catalog's procedures take (as CREATE IDENTITY PROVIDER gives them)."""
        from .policy import idp

        return {"name": self.name, "type": self.type, "namespace": self.namespace,
                "params": idp.check_parameters(json.dumps(self.parameters)),
                "application_arn": self.application_arn, "iam_role": self.iam_role,
                "auto_create_roles": self.auto_create_roles, "groups_filter": None, "enabled": self.enabled}


@dataclass(frozen=True)
class Embedded:
    # Directory holding initdb/postgres; empty: pg_config --bindir, PATH, /usr/lib/postgresql/*/bin.
    bin_dir: str | None = None
    # The unprivileged OS user the server runs as when shiftguard runs as root.
    os_user: str = "postgres"
    # The server's max_connections: the cluster's connection limit (a Redshift cluster's is 500).
    max_connections: int = 500

    def validate(self, where: str) -> None:
        if not 10 <= self.max_connections <= 10_000:
            raise ConfigError(f"{where}.max_connections: must be between 10 and 10000")


@dataclass(frozen=True)
class Config:
    cluster: Cluster = field(default_factory=Cluster)
    listen: list[str] = field(default_factory=lambda: ["127.0.0.1:5439"])
    api_listen: str = "127.0.0.1:5440"
    # Processes accepting clients on the listen addresses (SO_REUSEPORT: the kernel spreads
    # connections over them); 1: one process, no workers (proxy/workers.py).
    workers: int = 1
    backend: Backend = field(default_factory=Backend)
    data_dir: str = ".shiftguard"
    tls: TLS = field(default_factory=TLS)
    # redshift: clients see server_version 8.0.2 and Redshift's parameters; backend: the real ones.
    server_version_mode: str = "redshift"
    # Refuse PostgreSQL features Redshift does not have (CREATE INDEX, sequences, triggers, ...),
    # so an application's test fails here as it would on the cluster.
    strict_redshift: bool = False
    limits: Limits = field(default_factory=Limits)
    auth: Auth = field(default_factory=Auth)
    iam: Iam = field(default_factory=Iam)
    audit: Audit = field(default_factory=Audit)
    # Security groups: a client address is admitted when a rule of a group attached to the
    # cluster (cluster.security_groups) contains it. The default admits loopback only.
    security_groups: list[SecurityGroup] = field(default_factory=_loopback_groups)
    # Load balancers whose PROXY protocol header (v1 or v2) names the real client (CIDRs).
    trusted_proxies: list[str] = field(default_factory=list)
    embedded: Embedded = field(default_factory=Embedded)
    log_level: str = "info"
    # text, or json: one JSON object per line (for log collectors); never a secret either way.
    log_format: str = "text"
    # Redshift statements run once as the admin, through the proxy, when the cluster is new
    # (users, groups, grants a test suite expects); init_sql_file: a file of them.
    init_sql: list[str] = field(default_factory=list)
    init_sql_file: str | None = None
    # The local S3 of COPY ... FROM 's3://bucket/...' and UNLOAD ... TO 's3://bucket/...': bucket
    # name -> a directory the database server's OS user can read (COPY) and write (UNLOAD).
    s3: dict[str, str] = field(default_factory=dict)
    # Native identity providers whose OIDC tokens are logins (auth code 14), created or replaced
    # by name at each start; CREATE / ALTER / DROP IDENTITY PROVIDER manage them in SQL too.
    identity_providers: list[IdentityProvider] = field(default_factory=list)

    def validate(self, where: str = "") -> None:
        for text in self.listen:
            _address(text, "listen")
        _address(self.api_listen, "api_listen")
        if self.server_version_mode not in ("redshift", "backend"):
            raise ConfigError("server_version_mode: must be 'redshift' or 'backend'")
        if self.log_format not in ("text", "json"):
            raise ConfigError("log_format: must be text or json")
        if self.log_level not in ("debug", "info", "warning", "error"):
            raise ConfigError("log_level: must be one of debug, info, warning, error")
        if not self.listen:
            raise ConfigError("listen: at least one address is needed")
        if not 1 <= self.workers <= MAX_WORKERS:
            raise ConfigError(f"workers: must be between 1 and {MAX_WORKERS}")
        names = [g.name for g in self.security_groups]
        if len(set(names)) != len(names):
            raise ConfigError("security_groups: two groups have the same name")
        for name in self.cluster.security_groups:
            if name not in names:
                raise ConfigError(f"cluster.security_groups: no security group named {name!r}")
        roles = {f"arn:aws:iam::{r.account or self.cluster.account_id}:role/{r.name}" for r in self.iam.roles}
        for n, arn in enumerate(self.cluster.iam_roles):
            if arn not in roles:
                raise ConfigError(f"cluster.iam_roles[{n}]: {arn!r} is not the ARN of a role in iam.roles")
        for n, text in enumerate(self.trusted_proxies):
            _cidr(text, f"trusted_proxies[{n}]")
        if self.init_sql_file is not None and not Path(self.init_sql_file).is_file():
            raise ConfigError(f"init_sql_file: no such file: {self.init_sql_file}")
        if self.iam.local_idp and not self.api_address.is_loopback:
            raise ConfigError("iam.local_idp: the development IdP vouches for anyone; it needs a loopback api_listen")
        if not _address(self.iam.local_idp_listen, "iam.local_idp_listen").is_loopback:
            raise ConfigError("iam.local_idp_listen: the development IdP listens on loopback addresses only")
        names = [p.name for p in self.identity_providers]
        namespaces = [p.namespace for p in self.identity_providers]
        if len(set(names)) != len(names) or len(set(namespaces)) != len(namespaces):
            raise ConfigError("identity_providers: two providers have the same name or namespace")
        for bucket, directory in self.s3.items():
            if not re.fullmatch(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]", bucket):
                raise ConfigError(f"s3.{bucket}: not an S3 bucket name (3-63 lower-case letters, digits, dots, "
                                  f"hyphens)")
            if not Path(directory).is_absolute() or not Path(directory).is_dir():
                raise ConfigError(f"s3.{bucket}: {directory!r} is not an existing directory given by its "
                                  f"absolute path")

    @property
    def listen_addresses(self) -> list[Address]:
        return [parse_address(text) for text in self.listen]

    @property
    def api_address(self) -> Address:
        return parse_address(self.api_listen)


def _address(text: str, key: str) -> Address:
    try:
        return parse_address(text)
    except ValueError as exc:
        raise ConfigError(f"{key}: {exc}") from None


# --------------------------------------------------------------------------- loading


def load_config(path: str | Path | None = None, env: dict[str, str] | None = None,
                overrides: dict[str, object] | None = None) -> Config:
    """Defaults <- YAML file <- SHIFTGUARD_* environment <- command-line overrides."""
    env = os.environ if env is None else env
    data: dict = {}
    if path is not None or DEFAULT_CONFIG_PATH.is_file():
        file = Path(path) if path is not None else DEFAULT_CONFIG_PATH
        try:
            loaded = yaml.load(file.read_text(), Loader=_SAFE_LOADER)
        except FileNotFoundError:
            raise ConfigError(f"config file not found: {file}") from None
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f" at line {mark.line + 1}" if mark else ""
            raise ConfigError(f"config file {file} is not valid YAML{where}") from None
        if loaded is not None and not isinstance(loaded, dict):
            raise ConfigError(f"config file {file}: the top level must be a mapping")
        data = loaded or {}
    config = _build(Config, data, "")
    for name, value in sorted(env.items()):
        if name.startswith("SHIFTGUARD_") and name not in NON_KEY_ENV:
            key = ENV_KEYS.get(name)
            if key is None:
                raise ConfigError(f"{name}: no such configuration key (known: "
                                  f"{', '.join(sorted(ENV_KEYS))})")
            config = _replace(config, key, _from_text(_key_type(key), value, name))
    for key, value in (overrides or {}).items():
        if value is not None:
            config = _replace(config, key.split("."), value)
    _validate_tree(config, "")
    return config


def _build(cls, data, where: str):
    if not isinstance(data, dict):
        raise ConfigError(f"{where or 'config'}: expected a mapping, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    for key in data:
        if key not in names:
            raise ConfigError(f"{_join(where, str(key))}: unknown key (known: {', '.join(sorted(names))})")
    kwargs = {}
    for f in dataclasses.fields(cls):
        if f.name not in data:
            continue
        key = _join(where, f.name)
        kind = hints[f.name]
        if dataclasses.is_dataclass(kind):
            kwargs[f.name] = _build(kind, data[f.name] or {}, key)
        elif _list_of_dataclass(kind):
            items = data[f.name] or []
            if not isinstance(items, list):
                raise ConfigError(f"{key}: expected a list")
            item_kind = typing.get_args(kind)[0]
            kwargs[f.name] = [_build(item_kind, item, f"{key}[{n}]") for n, item in enumerate(items)]
        else:
            kwargs[f.name] = _check_type(kind, data[f.name], key)
    return cls(**kwargs)


def _list_of_dataclass(kind) -> bool:
    return typing.get_origin(kind) is list and dataclasses.is_dataclass(typing.get_args(kind)[0])


def _file_only(kind) -> bool:
    """Keys that only the file can set (structured values), not SHIFTGUARD_* variables."""
    return _list_of_dataclass(kind) or typing.get_origin(kind) is dict or (
        typing.get_origin(kind) is list and typing.get_args(kind)[0] is dict)


def _check_type(kind, value, key: str):
    optional = isinstance(kind, types.UnionType) and type(None) in kind.__args__
    base = next(a for a in kind.__args__ if a is not type(None)) if optional else kind
    if value is None:
        if optional:
            return None
        raise ConfigError(f"{key}: must not be empty")
    if typing.get_origin(base) is list and typing.get_args(base)[0] is dict:
        if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
            raise ConfigError(f"{key}: expected a list of mappings")
        return value
    if typing.get_origin(base) is list:
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ConfigError(f"{key}: expected a string or a list of strings")
        return value
    if typing.get_origin(base) is dict or base is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping")
        if typing.get_args(base)[1:] == (object,):
            return dict(value)  # structured values (JSON-like), checked by the owner's validate()
        return {str(k): str(v) for k, v in value.items()}
    if base is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if base is str and isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)  # YAML reads 123456789012 as a number
    if not isinstance(value, base) or (base is int and isinstance(value, bool)):
        raise ConfigError(f"{key}: expected {base.__name__}, got {type(value).__name__} {value!r}")
    return value


def _from_text(kind, text: str, name: str):
    optional = isinstance(kind, types.UnionType) and type(None) in kind.__args__
    base = next(a for a in kind.__args__ if a is not type(None)) if optional else kind
    if typing.get_origin(base) is list:
        return [part.strip() for part in text.split(",") if part.strip()]
    if base is bool:
        if text.lower() in ("1", "true", "yes", "on"):
            return True
        if text.lower() in ("0", "false", "no", "off"):
            return False
        raise ConfigError(f"{name}: expected true or false, got {text!r}")
    if base in (int, float):
        try:
            return base(text)
        except ValueError:
            raise ConfigError(f"{name}: expected a number, got {text!r}") from None
    if optional and text == "":
        return None
    return text


def _validate_tree(node, where: str) -> None:
    hints = typing.get_type_hints(type(node))
    for f in dataclasses.fields(node):
        if dataclasses.is_dataclass(hints[f.name]):
            _validate_tree(getattr(node, f.name), _join(where, f.name))
        elif _list_of_dataclass(hints[f.name]):
            for n, item in enumerate(getattr(node, f.name)):
                _validate_tree(item, f"{_join(where, f.name)}[{n}]")
    if hasattr(node, "validate"):
        node.validate(where)


def _replace(node, path: list[str], value):
    if len(path) == 1:
        return dataclasses.replace(node, **{path[0]: value})
    return dataclasses.replace(node, **{path[0]: _replace(getattr(node, path[0]), path[1:], value)})


def _key_type(path: list[str]):
    cls = Config
    for part in path[:-1]:
        cls = typing.get_type_hints(cls)[part]
    return typing.get_type_hints(cls)[path[-1]]


def _env_keys(cls, prefix: list[str]) -> dict[str, list[str]]:
    keys: dict[str, list[str]] = {}
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        path = prefix + [f.name]
        if dataclasses.is_dataclass(hints[f.name]):
            keys.update(_env_keys(hints[f.name], path))
        elif not _file_only(hints[f.name]):
            keys["SHIFTGUARD_" + "_".join(path).upper()] = path
    return keys


def _join(where: str, key: str) -> str:
    return f"{where}.{key}" if where else key


# SHIFTGUARD_CLUSTER_ACCOUNT_ID -> ["cluster", "account_id"], derived from the schema.
ENV_KEYS = _env_keys(Config, [])


def admin_password(env: dict[str, str] | None = None) -> tuple[str, bool]:
    """The admin user's password and whether it is the documented default."""
    env = os.environ if env is None else env
    value = env.get("SHIFTGUARD_ADMIN_PASSWORD")
    return (value, False) if value else (DEFAULT_ADMIN_PASSWORD, True)
