"""The Redshift stand-in's local S3: buckets mapped to directories on the database server (the
`s3` configuration key), the files a COPY prefix names, the file an UNLOAD writes, and the signed
tickets that let the private schema's file functions (catalog/s3.sql) touch exactly those files.

It only reads the file system (listing, realpath): the directories an UNLOAD prefix needs are
made by catalog/s3.sql when the statement runs, inside the bucket's directory. It decides
nothing about tables: reading and writing rows happens in PostgreSQL as the user.
A path that leaves its bucket's directory (a `..` component, an absolute key, a symlink pointing
out) is refused. The directories are the operator's: database users cannot create symlinks in
them (PostgreSQL's COPY writes regular files only), so a check here holds until the server opens
the file.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field

from .policy.signing import signer
from .policy.tokens import GrammarError
from .protocol import sqlstate

UNDEFINED_FILE = "58P01"


def _escape_refused(url: str) -> GrammarError:
    return GrammarError(f"the S3 location {url!r} leaves its bucket's directory (through '..' or a symlink), "
                        f"which is not supported by shiftguard", sqlstate.FEATURE_NOT_SUPPORTED)


@dataclass
class LocalS3:
    """buckets: bucket name -> directory. secret: the backend secret (catalog/store.py) that
    signs tickets; catalog/s3.sql verifies them with the same key."""

    buckets: dict[str, str] = field(default_factory=dict)
    secret: bytes = b""

    def _root(self, bucket: str) -> str:
        directory = self.buckets.get(bucket)
        if directory is None:
            # S3's NoSuchBucket wording.
            raise GrammarError(f"The specified bucket does not exist: {bucket}", UNDEFINED_FILE,
                               hint="map the bucket to a directory in the s3 configuration key")
        return os.path.realpath(directory)

    def check_bucket(self, bucket: str) -> None:
        """NoSuchBucket for a bucket not mapped (S3 says so before it judges any permission)."""
        self._root(bucket)

    def _path(self, root: str, bucket: str, key: str) -> str:
        url = f"s3://{bucket}/{key}"
        parts = key.split("/")
        if any(part in ("..", ".") for part in parts) or key.startswith("/") or "\0" in key:
            raise _escape_refused(url)
        return root + "/" + key

    @staticmethod
    def _inside(root: str, path: str) -> bool:
        real = os.path.realpath(path)
        return real == root or real.startswith(root + os.sep)

    def source_files(self, bucket: str, prefix: str) -> list[tuple[str, str]]:
        """(key, real path) of every file whose key starts with prefix (Redshift's COPY prefix
        semantics), by key."""
        root = self._root(bucket)
        url = f"s3://{bucket}/{prefix}"
        self._path(root, bucket, prefix)
        directory, _, _ = prefix.rpartition("/")
        top = root + ("/" + directory if directory else "")
        if not self._inside(root, top):
            raise _escape_refused(url)
        found = []
        for current, dirs, files in os.walk(top, followlinks=False):
            dirs.sort()
            for name in files:
                path = os.path.join(current, name)
                key = os.path.relpath(path, root).replace(os.sep, "/")
                if not key.startswith(prefix):
                    continue
                if not self._inside(root, path):
                    raise _escape_refused(f"s3://{bucket}/{key}")
                if os.path.isfile(path):
                    found.append((key, os.path.realpath(path)))
        if not found:
            # UNVERIFIED wording (Redshift reports an S3ServiceException naming the prefix).
            raise GrammarError(f"The specified S3 prefix '{prefix}' does not exist in bucket {bucket}",
                               UNDEFINED_FILE)
        return sorted(found)

    def target_key(self, bucket: str, prefix: str, parallel: bool, gzip: bool) -> tuple[str, str]:
        """The key and the path of the file UNLOAD writes. Redshift writes <prefix>0000_part_00
        (one or more per slice; here there is one slice) or, with PARALLEL OFF, <prefix>000; GZIP
        adds .gz. Reads the file system, changes nothing: the directories the key needs are
        made by catalog/s3.sql when the statement runs."""
        root = self._root(bucket)
        key = prefix + ("0000_part_00" if parallel else "000") + (".gz" if gzip else "")
        path = self._path(root, bucket, key)
        existing = os.path.dirname(path)
        while not os.path.exists(existing):
            existing = os.path.dirname(existing)
        if not self._inside(root, existing) or (os.path.lexists(path) and not self._inside(root, path)):
            raise _escape_refused(f"s3://{bucket}/{key}")
        return key, path

    @staticmethod
    def check_target(path: str, overwrite: bool) -> None:
        """Refuse to replace a file without ALLOWOVERWRITE (after the caller may list the prefix)."""
        if os.path.exists(path) and not overwrite:
            raise existing_files_error()

    def ticket(self, payload: dict) -> tuple[str, str]:
        """payload as JSON and its HMAC-SHA-256 under the backend secret ('s3:' separates it
        from the backend passwords made with the same key)."""
        text = json.dumps(payload, separators=(",", ":"), sort_keys=True)
        return text, signer(self.secret)("s3", text)


def existing_files_error() -> GrammarError:
    # Redshift's wording (UNVERIFIED), also raised by catalog/s3.sql when the file appears later.
    return GrammarError("Specified unload destination on S3 is not empty. Consider using a different bucket / "
                        "prefix, manually removing the target files in S3, or using the ALLOWOVERWRITE option.",
                        "58P02")
