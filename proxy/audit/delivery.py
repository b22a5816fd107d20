"""Audit log delivery to the cluster's logging bucket (EnableLogging): each rotated log file,
gzipped, under Redshift's key layout in the directory the `s3` configuration key maps the bucket
to. Writes files only; whether logging is on, and where, comes from the cluster's stored state.
"""

from __future__ import annotations

import datetime
import gzip
import os
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class LogDelivery:
    directory: str   # the bucket's directory
    prefix: str      # S3KeyPrefix, checked by the API (no '..', no leading '/')
    account: str
    region: str
    cluster: str
    exports: tuple[str, ...] = ("connectionlog", "userlog", "useractivitylog")

    def key(self, log: str, moment: datetime.datetime) -> str:
        """Redshift's layout (Cluster Management Guide, "Database audit logging"):
        AWSLogs/ACCOUNT/redshift/REGION/YYYY/MM/DD/ACCOUNT_redshift_REGION_CLUSTER_LOG_YYYY-MM-DDTHH:MM.gz"""
        utc = moment.astimezone(datetime.timezone.utc)
        return (f"{self.prefix}AWSLogs/{self.account}/redshift/{self.region}/{utc:%Y/%m/%d}/"
                f"{self.account}_redshift_{self.region}_{self.cluster}_{log}_{utc:%Y-%m-%dT%H:%M}.gz")

    def deliver(self, log: str, rotated: Path, moment: datetime.datetime) -> str | None:
        """Put the rotated file into the bucket; the key written, or None for a log not exported.
        Two deliveries in one minute (several proxies of the cluster, a size rotation) go into
        the same object as further gzip members, which gunzip reads as one text. Raises OSError."""
        if log not in self.exports:
            return None
        key = self.key(log, moment)
        root = os.path.realpath(self.directory)
        target = os.path.realpath(os.path.join(root, key))
        if not target.startswith(root + os.sep):
            raise OSError(f"the key {key!r} leaves the bucket's directory")
        os.makedirs(os.path.dirname(target), exist_ok=True)
        with open(target, "ab") as handle:
            handle.write(gzip.compress(rotated.read_bytes()))
        return key
