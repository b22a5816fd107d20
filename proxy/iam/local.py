"""`shiftguard credentials`: temporary credentials made on this machine, without the API, for
scripts and tests. Signs with the cluster's key and records the token in the backing database
(which must be running: the embedded one is reached through the data directory)."""

from __future__ import annotations

import json
from pathlib import Path

from ..backend.embedded import MANAGEMENT_ROLE, EmbeddedPostgres
from ..backend.session import BackendAddress, parse_dsn
from ..catalog.store import Catalog
from ..config import Config
from .api import iso8601


async def open_catalog(config: Config) -> Catalog:
    if config.backend.dsn:
        dsn = parse_dsn(config.backend.dsn)
        return await Catalog.open(dsn.address, dsn.user, dsn.password, dsn.database, "createrole",
                                  config.cluster.track_table_writes)
    embedded = EmbeddedPostgres(Path(config.data_dir), config.embedded.bin_dir, config.embedded.os_user)
    password_file = embedded.data_dir / "management.password"
    if not password_file.exists():
        raise FileNotFoundError(f"no cluster in {embedded.data_dir}: start `shiftguard serve` there first")
    address = BackendAddress(socket_dir=embedded.socket_dir, port=embedded.port)
    return await Catalog.open(address, MANAGEMENT_ROLE, password_file.read_text().strip(), config.cluster.database,
                              "superuser", config.cluster.track_table_writes)


async def credentials(config: Config, *, db_user: str | None, db_name: str | None, groups: list[str],
                      auto_create: bool, duration: int, revoke: bool, token_id: str | None) -> str:
    from ..server import token_authority

    catalog = await open_catalog(config)
    try:
        if revoke:
            count = await catalog.revoke_tokens(db_user=db_user, token_id=token_id)
            return json.dumps({"Revoked": count})
        if not 900 <= duration <= 3600:
            raise ValueError("--duration must be between 900 and 3600 seconds")
        minted = token_authority(config, Path(config.data_dir)).mint(
            "IAMA" if auto_create else "IAM", db_user, db_name, groups, duration)
        await catalog.record_token(minted, db_name, groups, [])
        return json.dumps({"DbUser": minted.db_user, "DbPassword": minted.password,
                           "Expiration": iso8601(minted.expiration)}, indent=4)
    finally:
        await catalog.close()
