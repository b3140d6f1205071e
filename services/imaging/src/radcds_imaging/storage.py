"""The instance storage port and its filesystem adapter."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Protocol


class InstanceStore(Protocol):
    """Where DICOM Part 10 files are kept, keyed by an opaque storage key."""

    def put(self, key: str, data: bytes) -> None:
        """Store ``data`` under ``key`` atomically: afterwards it is whole or absent."""

    def get(self, key: str) -> bytes:
        """Return the bytes stored under ``key`` (``FileNotFoundError`` if absent)."""

    def delete(self, key: str) -> None:
        """Remove ``key`` if present."""


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

    def get(self, key: str) -> bytes:
        return self._path(key).read_bytes()

    def delete(self, key: str) -> None:
        self._path(key).unlink(missing_ok=True)

    def writable(self) -> bool:
        """True when the root accepts writes (readiness)."""
        return os.access(self.root, os.W_OK)
