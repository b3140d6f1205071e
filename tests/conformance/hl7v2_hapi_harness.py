"""Python side of the HAPI HL7v2 2.6.0 harness (``deploy/local/hapi-hl7v2/Hl7v2Harness.java``).

One JVM per pytest module or session, started with the JDK's single-file source launcher over the
jars ``make deps`` copies to ``.cache/hapi-hl7v2/lib`` (Maven Central ``ca.uhn.hapi:hapi-base:2.6.0``
and ``ca.uhn.hapi:hapi-structures-v251:2.6.0``, see ``deploy/local/hapi-hl7v2/pom.xml``). It talks
JSON lines over stdin/stdout: messages go in base64 (UTF-8), reports come back as JSON. Used by
``tests/conformance/test_hl7v2_hapi.py`` (validator) and ``tests/integration/test_hapi_mllp.py``
(HAPI as a real MLLP receiver and sender).
"""

from __future__ import annotations

import base64
import json
import queue
import shutil
import subprocess
import threading
from pathlib import Path
from typing import IO, Any

ROOT = Path(__file__).resolve().parents[2]
HARNESS = ROOT / "deploy" / "local" / "hapi-hl7v2" / "Hl7v2Harness.java"
LIB = ROOT / ".cache" / "hapi-hl7v2" / "lib"
TABLE_0396 = ROOT / "services/reporting/src/radcds_reporting/adapters/hl7v2/tables/hl7-table-0396.json"
#: First run compiles the harness in memory (a few seconds on 2 cores); every reply after that is fast.
REPLY_TIMEOUT_S = 120.0


def missing() -> str | None:
    """Why the harness cannot run here (no JDK, no jars), or None."""
    if shutil.which("java") is None:
        return "no java on PATH (make system-deps)"
    if not (LIB / "hapi-base-2.6.0.jar").exists() or not (LIB / "hapi-structures-v251-2.6.0.jar").exists():
        return "HAPI HL7v2 jars missing in .cache/hapi-hl7v2/lib (make deps)"
    return None


def encode(text: str) -> str:
    """A message as one protocol line."""
    return base64.b64encode(text.encode("utf-8")).decode("ascii")


def decode(line: str) -> str:
    """A protocol line back to the message text."""
    return base64.b64decode(line).decode("utf-8")


class HapiHl7v2:
    """One HAPI JVM in ``validate``, ``server PORT`` or ``send HOST PORT`` mode."""

    def __init__(self, *mode: str, log: Path) -> None:
        reason = missing()
        if reason is not None:
            raise RuntimeError(reason)
        self._log: IO[bytes] = log.open("ab")
        self._proc = subprocess.Popen(
            ["java", "-cp", f"{LIB}/*", str(HARNESS), mode[0], str(TABLE_0396), *mode[1:]],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._log,
            text=True,
            encoding="utf-8",
            cwd=log.parent,  # HAPI's home (anything it writes stays out of the checkout)
        )
        self._lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        assert self._proc.stdout is not None
        for line in self._proc.stdout:
            self._lines.put(line)

    def read(self, timeout: float = REPLY_TIMEOUT_S) -> dict[str, Any]:
        """The next JSON line the JVM printed."""
        try:
            line = self._lines.get(timeout=timeout)
        except queue.Empty as exc:
            raise TimeoutError(f"HAPI harness sent nothing in {timeout:.0f} s (see {self._log.name})") from exc
        result: dict[str, Any] = json.loads(line)
        return result

    def send_line(self, text: str) -> None:
        """Hand one message to the JVM."""
        assert self._proc.stdin is not None
        self._proc.stdin.write(encode(text) + "\n")
        self._proc.stdin.flush()

    def validate(self, text: str) -> dict[str, Any]:
        """HAPI's report on one ER7 message (``validate`` mode)."""
        self.send_line(text)
        return self.read()

    def close(self) -> None:
        """Close stdin (the JVM stops by itself) and wait for it."""
        if self._proc.stdin is not None and not self._proc.stdin.closed:
            self._proc.stdin.close()
        try:
            self._proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()
        self._log.close()
