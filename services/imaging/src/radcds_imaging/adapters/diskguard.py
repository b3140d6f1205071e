"""Free-space guard for the instance store.

Before storing, imaging checks that the volume holding the store keeps enough free space; when it
does not, STOW-RS answers failure reason A700 "Out of resources" (PS3.18 Table 10.5.3-2) and DIMSE
C-STORE answers status A700 (PS3.4 Table B.2-1) instead of filling the disk.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from os import PathLike


@dataclass(frozen=True, slots=True)
class DiskSpace:
    """Free and total bytes of one volume at one moment."""

    free_bytes: int
    total_bytes: int

    @property
    def free_ratio(self) -> float:
        """Free bytes as a fraction of the volume (0.0 for an empty-sized volume)."""
        return self.free_bytes / self.total_bytes if self.total_bytes else 0.0


class DiskSpaceGuard:
    """Says whether the volume holding ``path`` still has room to store instances.

    Both thresholds must hold: at least ``min_free_bytes`` free and at least ``min_free_ratio``
    (0.0 to 1.0) of the volume free. After :meth:`check` returns False, :attr:`reason` explains why.
    """

    def __init__(self, path: str | PathLike[str], *, min_free_bytes: int, min_free_ratio: float) -> None:
        if min_free_bytes < 0:
            raise ValueError("min_free_bytes must not be negative")
        if not 0.0 <= min_free_ratio <= 1.0:
            raise ValueError("min_free_ratio must lie between 0.0 and 1.0")
        self.path = path
        self.min_free_bytes = min_free_bytes
        self.min_free_ratio = min_free_ratio
        self.reason = ""

    def usage(self) -> DiskSpace:
        """Current free and total bytes of the volume (``OSError`` if the path is unusable)."""
        du = shutil.disk_usage(self.path)
        return DiskSpace(free_bytes=du.free, total_bytes=du.total)

    def check(self, incoming_bytes: int = 0) -> bool:
        """True when both thresholds still hold after ``incoming_bytes`` more are written; otherwise False with
        :attr:`reason` set."""
        try:
            du = self.usage()
        except OSError as exc:
            self.reason = f"cannot read free space of {self.path}: {exc.strerror or exc}"
            return False
        space = DiskSpace(free_bytes=max(0, du.free_bytes - incoming_bytes), total_bytes=du.total_bytes)
        if space.free_bytes < self.min_free_bytes:
            after = f" after the {incoming_bytes} bytes to store" if incoming_bytes else ""
            self.reason = (
                f"only {space.free_bytes} bytes free on the volume of {self.path}{after}, "
                f"below the minimum of {self.min_free_bytes} bytes"
            )
            return False
        if space.free_ratio < self.min_free_ratio:
            self.reason = (
                f"only {space.free_ratio:.1%} of the volume of {self.path} free, "
                f"below the minimum of {self.min_free_ratio:.1%}"
            )
            return False
        self.reason = ""
        return True
