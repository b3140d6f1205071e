"""A wall clock that jumps forward under running services: Debian's libfaketime, preloaded with a timestamp file.

Each service of the scenario runs with ``LD_PRELOAD`` = our ``clockshim.c`` (see there why) and libfaketime,
``FAKETIME_TIMESTAMP_FILE`` naming a file that holds the offset (``+0`` at first) and ``FAKETIME_NO_CACHE=1``, so
writing ``+400d`` to the file moves the realtime clock (``time.time``, ``datetime.now``) of every process at once,
while ``CLOCK_MONOTONIC`` (timeouts, backoff, ``time.monotonic``) stays true, as when NTP steps a host's clock or
a virtual machine resumes. Kafka and PostgreSQL keep the true time: another host's clock did not jump.
"""

from __future__ import annotations

import glob
import shutil
import subprocess
from pathlib import Path

HERE = Path(__file__).resolve().parent
_LIBFAKETIME_GLOB = "/usr/lib/*/faketime/libfaketime.so.1"


def libfaketime() -> Path:
    """Debian's libfaketime (package ``libfaketime``, installed by deploy/local/system-deps.sh)."""
    found = sorted(glob.glob(_LIBFAKETIME_GLOB))
    assert found, f"libfaketime not found ({_LIBFAKETIME_GLOB}): run deploy/local/system-deps.sh"
    return Path(found[0])


class JumpingClock:
    """The offset file and the environment that makes a process read its realtime clock through it."""

    def __init__(self, run_dir: Path) -> None:
        self.dir = run_dir / "clock"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.offset_file = self.dir / "offset"
        self.offset_s = 0
        self.set(0)
        self.shim = self.dir / "clockshim.so"
        compiler = shutil.which("cc") or shutil.which("gcc")
        assert compiler, "a C compiler is needed for tests/faults/clockshim.c: run deploy/local/system-deps.sh"
        subprocess.run(
            [compiler, "-shared", "-fPIC", "-O2", "-o", str(self.shim), str(HERE / "clockshim.c"), "-ldl"],
            check=True,
        )

    def env(self) -> dict[str, str]:
        return {
            "LD_PRELOAD": f"{self.shim} {libfaketime()}",
            "FAKETIME_TIMESTAMP_FILE": str(self.offset_file),
            "FAKETIME_NO_CACHE": "1",
            "FAKETIME_DONT_FAKE_MONOTONIC": "1",
        }

    def set(self, offset_s: int) -> None:
        """Put the clock of every process started with :meth:`env` ``offset_s`` seconds from the true time
        (libfaketime's relative ``+<n>`` / ``-<n>``, seconds): a larger offset than before is a jump forward, a
        smaller one a step back."""
        tmp = self.offset_file.with_suffix(".tmp")
        tmp.write_text(f"{offset_s:+d}\n")
        tmp.replace(self.offset_file)
        self.offset_s = offset_s
