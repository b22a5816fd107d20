"""A local Redshift stand-in for application tests, in one line:

    from proxy.testing import RedshiftStandIn

    with RedshiftStandIn(init_sql=["CREATE USER app PASSWORD 'App12345'"]) as redshift:
        conn = psycopg.connect(redshift.dsn)          # or redshift.url for SQLAlchemy
        ...

It runs `shiftguard serve` in this process (a thread with its own event loop) with an embedded
PostgreSQL in a temporary directory, on free loopback ports, with strict_redshift on, and stops
everything on exit. The first start on a machine runs initdb and keeps a copy of the fresh
cluster in ~/.cache/shiftguard, so later starts skip it.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
import threading
from dataclasses import replace
from pathlib import Path

from .config import DEFAULT_ADMIN_PASSWORD, Iam, IamRole, load_config
from .iam.local_idp import LocalIdp, roles_trusting
from .server import Proxy

_CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "shiftguard"


# The IAM role a stand-in's COPY and UNLOAD may name (and IAM_ROLE DEFAULT names) unless told others.
STAND_IN_ROLE = "arn:aws:iam::123456789012:role/shiftguard-stand-in"


def s3_roles(arns: list[str], buckets) -> list[IamRole]:
    """IAM roles, by ARN, whose policies let COPY and UNLOAD read and write every one of buckets."""
    resources = [f"arn:aws:s3:::{bucket}{tail}" for bucket in buckets for tail in ("", "/*")]
    policy = {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": ["s3:ListBucket", "s3:GetObject", "s3:PutObject"], "Resource": resources}]}
    roles = []
    for arn in arns:
        account, _, name = arn.removeprefix("arn:aws:iam::").partition(":role/")
        roles.append(IamRole(name, account=account, policies=[policy] if resources else []))
    return roles


class RedshiftStandIn:
    def __init__(self, *, init_sql: list[str] | tuple[str, ...] = (), strict_redshift: bool = True,
                 data_dir: str | Path | None = None, user_activity: bool = False,
                 s3: dict[str, str | Path] | None = None, config_file: str | Path | None = None,
                 iam: Iam | None = None, local_idp: bool = False,
                 iam_roles: list[str] | tuple[str, ...] = (STAND_IN_ROLE,)):
        """config_file: a shiftguard YAML configuration to start from (its listen addresses and
        data_dir are replaced); iam: its iam section instead; local_idp: turn on the development
        IdP (saml_login, oidc_token); iam_roles: the IAM roles (ARNs) COPY and UNLOAD may name,
        besides the configuration's."""
        self.init_sql = list(init_sql)
        self._config_file = config_file
        self._iam = iam
        self._local_idp = local_idp
        # bucket -> directory for COPY/UNLOAD with s3:// locations (the s3 configuration key).
        self.s3 = {bucket: str(Path(directory).resolve()) for bucket, directory in (s3 or {}).items()}
        # The IAM roles (ARNs) the application's COPY and UNLOAD name: each may read and write
        # every bucket, is associated with the cluster, and the first is IAM_ROLE DEFAULT.
        self.iam_roles = list(iam_roles)
        self.strict_redshift = strict_redshift
        self._data_dir = Path(data_dir) if data_dir else None
        self._user_activity = user_activity
        self._temp: Path | None = None
        self._proxy: Proxy | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self.user = "awsuser"
        self.password = os.environ.get("SHIFTGUARD_ADMIN_PASSWORD") or DEFAULT_ADMIN_PASSWORD
        self.database = "dev"

    # ---------------------------------------------------------------- life

    def start(self) -> "RedshiftStandIn":
        if self._data_dir is None:
            # Under /tmp: the server's OS user (postgres, when this runs as root) can reach it.
            self._temp = Path(tempfile.mkdtemp(prefix="shiftguard-", dir="/tmp"))
            self._data_dir = self._temp
        config = load_config(self._config_file, env={}, overrides={
            "listen": ["127.0.0.1:0"], "api_listen": "127.0.0.1:0", "data_dir": str(self._data_dir),
            "iam": self._iam})
        s3 = self.s3 or config.s3
        configured = {f"arn:aws:iam::{role.account or config.cluster.account_id}:role/{role.name}"
                      for role in config.iam.roles}
        added = [arn for arn in self.iam_roles if arn not in configured]
        associated = list(dict.fromkeys([*config.cluster.iam_roles, *self.iam_roles]))
        config = replace(config, strict_redshift=self.strict_redshift, init_sql=self.init_sql or config.init_sql,
                         s3=s3, audit=replace(config.audit, user_activity=self._user_activity),
                         iam=replace(config.iam, local_idp=config.iam.local_idp or self._local_idp,
                                     roles=[*config.iam.roles, *s3_roles(added, s3)]),
                         cluster=replace(config.cluster, iam_roles=associated,
                                         default_iam_role=config.cluster.default_iam_role or
                                         (associated[0] if associated else None)))
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="shiftguard", daemon=True)
        self._thread.start()
        self._proxy = Proxy(config, initdb_cache=_CACHE)
        try:
            asyncio.run_coroutine_threadsafe(self._proxy.start(), self._loop).result(120)
        except BaseException:
            self.stop()
            raise
        self.host, self.port = self._proxy.addresses[0]
        self.api_port = self._proxy.api_address[1]
        return self

    def stop(self) -> None:
        if self._loop is not None:
            if self._proxy is not None:
                asyncio.run_coroutine_threadsafe(self._proxy.stop(grace=0), self._loop).result(120)
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(30)
            self._loop.close()
            self._loop = None
        if self._temp is not None:
            shutil.rmtree(self._temp, ignore_errors=True)
            self._temp = None

    def __enter__(self) -> "RedshiftStandIn":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # ---------------------------------------------------------------- how to reach it

    def dsn_for(self, user: str | None = None, password: str | None = None, database: str | None = None) -> str:
        return (f"host={self.host} port={self.port} dbname={database or self.database} user={user or self.user} "
                f"password={password or self.password} sslmode=disable")

    @property
    def dsn(self) -> str:
        """A libpq connection string for the admin (psycopg.connect(redshift.dsn))."""
        return self.dsn_for()

    @property
    def url(self) -> str:
        """An SQLAlchemy URL for sqlalchemy-redshift with redshift_connector."""
        return f"redshift+redshift_connector://{self.user}:{self.password}@{self.host}:{self.port}/{self.database}"

    @property
    def api_endpoint_url(self) -> str:
        """endpoint_url for boto3 / --endpoint-url for the AWS CLI."""
        return f"http://127.0.0.1:{self.api_port}"

    def execute(self, *statements: str) -> None:
        """Run statements as the admin, through the proxy (Redshift's syntax)."""
        async def run():
            import asyncpg

            conn = await asyncpg.connect(host=self.host, port=self.port, user=self.user, password=self.password,
                                         database=self.database, ssl=False)
            try:
                for statement in statements:
                    await conn.execute(statement)
            finally:
                await conn.close()

        asyncio.run_coroutine_threadsafe(run(), self._loop).result(60)

    def create_user(self, name: str, password: str, *options: str) -> None:
        self.execute(f'CREATE USER "{name}" PASSWORD \'{password}\' {" ".join(options)}')

    def credentials(self, db_user: str, *, auto_create: bool = True, db_groups: list[str] = (),
                    db_name: str | None = None, seconds: int = 900) -> dict:
        """Temporary credentials as GetClusterCredentials returns them (DbUser, DbPassword)."""
        async def mint():
            minted = self._proxy.context.tokens.mint("IAMA" if auto_create else "IAM", db_user, db_name,
                                                     list(db_groups), seconds)
            await self._proxy.catalog.record_token(minted, db_name, list(db_groups), [])
            return {"DbUser": minted.db_user, "DbPassword": minted.password, "Expiration": minted.expiration}

        return asyncio.run_coroutine_threadsafe(mint(), self._loop).result(30)

    # ---------------------------------------------------------------- the local IdP

    @property
    def _idp(self) -> LocalIdp:
        if self._proxy is None or self._proxy.local_idp is None:
            raise RuntimeError("the local IdP is off: start the stand-in with local_idp=True")
        return self._proxy.local_idp

    def saml_login(self, user: str, *, role: str | None = None, **options) -> str:
        """A base64 SAMLResponse for user, signed by the local IdP (provider
        arn:aws:iam::<account>:saml-provider/shiftguard), for STS AssumeRoleWithSAML. Its Role
        attribute names role, or else every configured role whose trust names that provider.
        options: db_user, db_groups, auto_create, session_name, attributes, lifetime."""
        idp = self._idp
        roles = [role] if role else roles_trusting(idp.provider_arn, self._proxy.config)
        return idp.saml_response(user, roles, **options)

    def add_idp_user(self, name: str, password: str, **options) -> None:
        """A user of the local IdP's HTTPS sign-in form (redshift_connector's
        AdfsCredentialsProvider with idp_host 127.0.0.1, which reaches port 443 only: start the
        stand-in with iam=Iam(local_idp_listen="127.0.0.1:443")); options: db_user, db_groups,
        auto_create, ..."""
        self._idp.add_user(name, password, **options)

    @property
    def local_idp_port(self) -> int:
        return self._proxy.local_idp_address[1]

    def oidc_token(self, user: str, **options) -> str:
        """An OIDC ID token for user (sub) from the local IdP, audience sts.amazonaws.com, for STS
        AssumeRoleWithWebIdentity. options: audience, lifetime, claims."""
        return self._idp.oidc_token(user, **options)

