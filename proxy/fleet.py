"""The clusters CreateCluster makes beside the configured one (embedded backend only). Each is a
Proxy (server.py) of its own: an embedded PostgreSQL in data_dir/clusters/IDENTIFIER, a client
listener on a port of its own, its own admin, catalog state, security groups, parameter group
and tokens; the configured cluster's API answers for it. Owns their records (cluster.json in
that directory, read again at the next start), their status (creating, available, deleting)
and their removal; what a running cluster does is its Proxy's business."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import os
import shutil
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from .backend.embedded import server_directory
from .config import Config

log = logging.getLogger(__name__)

RECORD = "cluster.json"


@dataclass(frozen=True)
class ClusterSpec:
    """What CreateCluster chose for a cluster; kept in its record."""

    identifier: str
    admin_user: str
    database: str
    security_groups: tuple[str, ...]
    port: int = 0  # the listener's, once known: the next start takes it again if it is free


class Member:
    """A created cluster: its spec, its status as DescribeClusters shows it, its Proxy once
    started (None while it is starting, after it failed, and once deleted)."""

    def __init__(self, spec: ClusterSpec, status: str):
        self.spec = spec
        self.status = status
        self.proxy = None
        self.task: asyncio.Task | None = None

    @property
    def api(self):
        """Its RedshiftApi while it is available, else None."""
        return self.proxy.redshift if self.status == "available" else None


def member_config(config: Config, spec: ClusterSpec, data_dir: Path) -> Config:
    """The configured cluster's configuration made the created cluster's: its identifier, admin,
    database and security groups, a listener on the configured listener's host, a data
    directory of its own (so its own TLS certificate, token key and audit logs, unless these are
    configured: a configured audit directory gets a subdirectory per created cluster), no
    init_sql (Redshift runs nothing in a new cluster)."""
    audit = config.audit
    if audit.dir:
        audit = dataclasses.replace(audit, dir=str(Path(audit.dir) / spec.identifier))
    host = config.listen_addresses[0].host
    cluster = dataclasses.replace(config.cluster, identifier=spec.identifier, admin_user=spec.admin_user,
                                  database=spec.database, security_groups=list(spec.security_groups),
                                  iam_roles=[], default_iam_role=None)
    return dataclasses.replace(config, cluster=cluster, listen=[f"[{host}]:{spec.port}" if ":" in host
                                                                 else f"{host}:{spec.port}"],
                               data_dir=str(data_dir), audit=audit, init_sql=[], init_sql_file=None)


class Fleet:
    def __init__(self, config: Config, make: Callable[[Config, str | None], object]):
        """make(config, master_password): a Proxy, not started, for a created cluster
        (master_password None at a restart: its admin's stored password stays)."""
        self.config = config
        self.make = make
        self.directory = Path(config.data_dir) / "clusters"
        self.members: dict[str, Member] = {}
        self.stopping = False  # shiftguard is stopping: no cluster is made any more

    def identifiers(self) -> list[str]:
        return sorted(self.members)

    def get(self, identifier: str) -> Member | None:
        return self.members.get(identifier)

    def restore(self) -> None:
        """At start: start again the clusters made before (each is 'rebooting' until it runs).
        One whose creation never finished (shiftguard stopped first) is removed."""
        if not self.directory.is_dir():
            return
        for record in sorted(self.directory.glob(f"*/{RECORD}")):
            try:
                stored = json.loads(record.read_text())
                spec = ClusterSpec(**{**stored["spec"], "security_groups": tuple(stored["spec"]["security_groups"])})
            except (OSError, ValueError, KeyError, TypeError) as exc:
                log.error("cluster record %s cannot be read (%s); that cluster is not started", record, exc)
                continue
            if spec.identifier != record.parent.name:
                log.error("cluster record %s names cluster %s, not its directory's; that cluster is not started",
                          record, spec.identifier)
                continue
            if spec.identifier == self.config.cluster.identifier:
                log.error("cluster %s in %s has the configured cluster's identifier now; it is not started (rename "
                          "cluster.identifier, or remove that directory)", spec.identifier, record.parent)
                continue
            if not stored.get("ready"):
                log.warning("cluster %s was being created when shiftguard stopped; it is removed", spec.identifier)
                self._remove_files(spec.identifier)
                continue
            member = self.members[spec.identifier] = Member(spec, "rebooting")
            member.task = asyncio.create_task(self._run(member, None))

    def create(self, spec: ClusterSpec, master_password: str,
               then: Callable[[object], Awaitable[None]] | None = None) -> Member:
        """Start making a cluster (the caller checked that the identifier is free); it is
        'creating' until its server and listener run and then(its RedshiftApi) is done."""
        self._remove_files(spec.identifier)  # what a deletion cut short left behind
        directory = self.directory / spec.identifier
        directory.mkdir(parents=True)
        os.chmod(directory, 0o700)
        self._write(spec, ready=False)
        member = self.members[spec.identifier] = Member(spec, "creating")
        member.task = asyncio.create_task(self._run(member, master_password, then))
        return member

    def delete(self, member: Member) -> None:
        """Stop the cluster and remove its data (the caller checked that it is not starting); it is
        'deleting' until it is gone. Its record goes first: a stop halfway does not bring it back."""
        (self.directory / member.spec.identifier / RECORD).unlink(missing_ok=True)
        member.status = "deleting"
        member.task = asyncio.create_task(self._delete(member))

    def rename(self, member: Member, new: str) -> None:
        """ModifyCluster NewClusterIdentifier (the caller checked that the name is free and the
        cluster available): its stored state takes the new name, it stops, its directory takes
        the new name and it starts again; 'renaming' until it runs."""
        old = member.spec.identifier
        del self.members[old]
        member.spec = dataclasses.replace(member.spec, identifier=new)
        member.status = "renaming"
        self.members[new] = member
        member.task = asyncio.create_task(self._rename(member, old))

    async def stop(self, grace: float) -> None:
        """At shutdown: clusters still starting stop where they are, the others as the
        configured one does (their sessions get grace to finish); deletions complete."""
        self.stopping = True
        members = list(self.members.values())
        for member in members:
            if member.status in ("creating", "rebooting") and member.task is not None:
                member.task.cancel()
        await asyncio.gather(*(m.task for m in members if m.task is not None), return_exceptions=True)
        await asyncio.gather(*(m.proxy.stop(grace) for m in members if m.status == "available"),
                             return_exceptions=True)

    async def _run(self, member: Member, master_password: str | None,
                   then: Callable[[object], Awaitable[None]] | None = None) -> None:
        spec = member.spec
        try:
            proxy = await self._start(spec, master_password, then)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - any failure: logged, shown as the cluster's status
            log.error("cluster %s did not start: %s: %s", spec.identifier, type(exc).__name__, exc)
            # UNVERIFIED: Redshift's status for a cluster that cannot run; DeleteCluster removes it.
            member.status = "hardware-failure"
            return
        member.proxy = proxy
        member.spec = dataclasses.replace(spec, port=proxy.addresses[0][1])
        self._write(member.spec, ready=True)
        member.status = "available"
        log.info("cluster %s available on %s:%d", spec.identifier, *proxy.addresses[0])

    async def _start(self, spec: ClusterSpec, master_password: str | None,
                     then: Callable[[object], Awaitable[None]] | None):
        """Its Proxy, started on the port it had (or any, when that one is taken now), once
        then(its RedshiftApi) is done."""
        for port in dict.fromkeys((spec.port, 0)):
            proxy = self.make(member_config(self.config, dataclasses.replace(spec, port=port),
                                            self.directory / spec.identifier), master_password)
            try:
                await proxy.start()
                if then is not None:
                    await then(proxy.redshift)
                return proxy
            except BaseException as exc:
                await asyncio.shield(proxy.stop(grace=0))
                if not (isinstance(exc, OSError) and port):
                    raise
                log.warning("cluster %s: port %d is taken now (%s); it listens on another", spec.identifier,
                            port, exc)

    async def _rename(self, member: Member, old: str) -> None:
        new = member.spec.identifier
        try:
            await member.proxy.catalog.rename_cluster(old, new)
        except Exception as exc:  # noqa: BLE001 - its database failed: the cluster stays as it was
            log.error("cluster %s could not be renamed %s: %s: %s", old, new, type(exc).__name__, exc)
            del self.members[new]
            member.spec = dataclasses.replace(member.spec, identifier=old)
            self.members[old], member.status = member, "available"
            return
        proxy, member.proxy = member.proxy, None
        await proxy.stop(grace=0)  # UNVERIFIED: Redshift restarts a cluster it renames; its sessions end
        before, after = self.directory / old, self.directory / new
        try:
            for source, target in ((server_directory(before), server_directory(after)), (before, after)):
                if source != target and source.exists():
                    source.rename(target)
            self._write(member.spec, ready=True)
        except OSError as exc:
            log.error("cluster %s could not be moved to %s: %s", old, after, exc)
            member.status = "hardware-failure"
            return
        log.info("cluster %s renamed %s", old, new)
        await self._run(member, None)

    async def _delete(self, member: Member) -> None:
        if member.proxy is not None:
            # Redshift ends the sessions of a cluster it deletes.
            await member.proxy.stop(grace=0)
            member.proxy = None
        await asyncio.to_thread(self._remove_files, member.spec.identifier)
        del self.members[member.spec.identifier]
        log.info("cluster %s deleted", member.spec.identifier)

    def _remove_files(self, identifier: str) -> None:
        """The cluster's directory and its server's (elsewhere when shiftguard runs as root in a
        directory the server's OS user cannot reach)."""
        directory = self.directory / identifier
        for path in (server_directory(directory), directory):
            shutil.rmtree(path, ignore_errors=True)

    def _write(self, spec: ClusterSpec, ready: bool) -> None:
        """The record, replaced whole (a crash leaves the old one or the new one)."""
        record = self.directory / spec.identifier / RECORD
        partial = record.with_suffix(".partial")
        partial.write_text(json.dumps({"spec": dataclasses.asdict(spec), "ready": ready}) + "\n")
        partial.replace(record)
