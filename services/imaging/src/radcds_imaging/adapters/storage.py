"""The instance storage port and its adapters: a filesystem folder (default) or an S3-compatible bucket."""

from __future__ import annotations

import base64
import hashlib
import os
import tempfile
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Protocol


class InstanceStore(Protocol):
    """Where DICOM Part 10 files are kept, keyed by an opaque storage key."""

    def put(self, key: str, data: bytes) -> None:
        """Store ``data`` under ``key`` atomically: afterwards it is whole or absent."""

    def get(self, key: str) -> bytes:
        """Return the bytes stored under ``key`` (``FileNotFoundError`` if absent)."""

    def delete(self, key: str) -> None:
        """Remove ``key`` if present."""

    def put_many(self, items: Sequence[tuple[str, bytes]]) -> None:
        """Store several objects; on failure none of them is left (all or nothing)."""


class FilesystemInstanceStore:
    """Files under a root folder, written to a temporary file, fsynced, then renamed."""

    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)

    def _path(self, key: str) -> Path:
        path = (self.root / key).resolve()
        if self.root.resolve() not in path.parents:
            raise ValueError("storage key escapes the storage root")
        return path

    def put(self, key: str, data: bytes) -> None:
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".incoming-")
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def put_many(self, items: Sequence[tuple[str, bytes]]) -> None:
        """Write every file to a temporary name, fsync them concurrently (the journal commits them
        together), rename them into place, then fsync their folders so the renames are durable."""
        staged: list[tuple[str, Path]] = []
        try:
            for key, data in items:
                path = self._path(key)
                path.parent.mkdir(parents=True, exist_ok=True)
                fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".incoming-")
                staged.append((tmp, path))
                with os.fdopen(fd, "wb") as fh:
                    fh.write(data)
            with ThreadPoolExecutor(max_workers=min(8, max(1, len(staged)))) as pool:
                list(pool.map(_fsync_path, [tmp for tmp, _ in staged]))
            for tmp, path in staged:
                os.replace(tmp, path)
            for folder in {path.parent for _, path in staged}:
                _fsync_path(str(folder))
        except BaseException:
            for tmp, path in staged:
                Path(tmp).unlink(missing_ok=True)
                path.unlink(missing_ok=True)
            raise

    def get(self, key: str) -> bytes:
        return self._path(key).read_bytes()

    def delete(self, key: str) -> None:
        self._path(key).unlink(missing_ok=True)

    def writable(self) -> bool:
        """True when the root accepts writes (readiness)."""
        return os.access(self.root, os.W_OK)


class S3InstanceStore:
    """Objects in an S3-compatible bucket (AWS S3, MinIO, Ceph RGW, S3Proxy).

    A PUT is atomic in S3: an object is whole or absent. Each upload carries ``Content-MD5`` so the
    store refuses a body damaged in transit (``BadDigest``). ``client`` is a boto3 S3 client.
    """

    def __init__(self, client: Any, *, bucket: str, prefix: str = "", max_workers: int = 8) -> None:
        self._client = client
        self.bucket = bucket
        self._prefix = prefix.strip("/") + "/" if prefix.strip("/") else ""
        self._workers = max_workers

    def _key(self, key: str) -> str:
        if key.startswith("/") or ".." in key.split("/"):
            raise ValueError("storage key escapes the storage root")
        return self._prefix + key

    def put(self, key: str, data: bytes) -> None:
        md5 = base64.b64encode(hashlib.md5(data, usedforsecurity=False).digest()).decode()
        self._client.put_object(
            Bucket=self.bucket, Key=self._key(key), Body=data, ContentMD5=md5, ContentType="application/dicom"
        )

    def put_many(self, items: Sequence[tuple[str, bytes]]) -> None:
        """Upload concurrently; if any upload fails, the ones that succeeded are deleted again."""
        done: list[str] = []

        def upload(item: tuple[str, bytes]) -> str:
            self.put(*item)
            return item[0]

        with ThreadPoolExecutor(max_workers=min(self._workers, max(1, len(items)))) as pool:
            futures = [pool.submit(upload, item) for item in items]
            errors = []
            for future in futures:
                try:
                    done.append(future.result())
                except Exception as exc:
                    errors.append(exc)
        if errors:
            for key in done:
                self.delete(key)
            raise errors[0]

    def get(self, key: str) -> bytes:
        try:
            response = self._client.get_object(Bucket=self.bucket, Key=self._key(key))
        except self._client.exceptions.NoSuchKey as exc:
            raise FileNotFoundError(key) from exc
        return bytes(response["Body"].read())

    def delete(self, key: str) -> None:
        self._client.delete_object(Bucket=self.bucket, Key=self._key(key))

    def writable(self) -> bool:
        """True when the bucket answers (readiness)."""
        try:
            self._client.head_bucket(Bucket=self.bucket)
        except Exception:
            return False
        return True

    def ensure_bucket(self) -> None:
        """Create the bucket if it does not exist (development and tests; production buckets are provisioned)."""
        if not self.writable():
            self._client.create_bucket(Bucket=self.bucket)


def _fsync_path(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
