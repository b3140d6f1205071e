"""Helpers of the edge fault scenarios (tests/faults/test_edges_*.py): each module runs only the processes it needs.

Every module gets its own run folder under ``.run/faults-edges/`` and its own real Apache Kafka KRaft node (the
services refuse to start without a broker to publish to), on ports in 23000-23999, below Linux's ephemeral range
and used by nothing else in the repository.
"""

from __future__ import annotations

import json
import shutil
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from radcds_devstack.devkeys import sign_client_jwt
from radcds_devstack.stack import LocalStack, Ports

ROOT = Path(__file__).resolve().parents[2]
T = TypeVar("T")


@contextmanager
def edge_stack(name: str, ports: Ports, extra_env: dict[str, str] | None = None) -> Iterator[LocalStack]:
    """A fresh run folder and a running Kafka node; the caller starts its services. Everything stops afterwards."""
    run_dir = ROOT / ".run" / "faults-edges" / name
    shutil.rmtree(run_dir, ignore_errors=True)
    stack = LocalStack(root=ROOT, run_dir=run_dir, ports=ports, triton=False, extra_env=dict(extra_env or {}))
    stack.kafka_broker.start()
    try:
        stack.kafka_broker.wait()
        yield stack
    finally:
        stack.down()
        shutil.rmtree(run_dir, ignore_errors=True)


def log_entries(stack: LocalStack, name: str) -> list[dict[str, Any]]:
    """The JSON log lines (radcds.runtime.logging) a process of ``stack`` wrote so far."""
    path = stack.run_dir / "logs" / f"{name}.log"
    entries = []
    for line in path.read_text(errors="replace").splitlines() if path.exists() else []:
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if isinstance(entry, dict):
            entries.append(entry)
    return entries


def cds_client_token(stack: LocalStack, url: str, **claims: Any) -> str:
    """A CDS Hooks JWT (ES384) of the stack's development EHR for ``url``; ``claims`` go to ``sign_client_jwt``."""
    key_path, issuers_path = stack.dev_issuer()
    issuer = json.loads(issuers_path.read_text())[0]
    kid = issuer["jwks"]["keys"][0]["kid"]
    return sign_client_jwt(key_path.read_bytes(), kid=kid, iss=issuer["iss"], aud=url, **claims)


def eventually(probe: Callable[[], T | None], *, timeout_s: float = 60.0, what: str = "condition") -> T:
    """Poll ``probe`` until it returns something truthy (a generous bound, not a timing assertion)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = probe()
        if value:
            return value
        time.sleep(0.25)
    raise AssertionError(f"{what} did not happen within {timeout_s:.0f}s")


class BlackHole:
    """A TCP server that accepts every connection and never sends a byte: an EHR FHIR server that hangs."""

    def __init__(self, host: str, port: int) -> None:
        self._server = socket.create_server((host, port), backlog=1024)
        self._server.settimeout(0.2)
        self._held: list[socket.socket] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept, name="black-hole", daemon=True)
        self.url = f"http://{host}:{port}/fhir"

    @property
    def accepted(self) -> int:
        """Connections accepted so far."""
        return len(self._held)

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._server.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self._held.append(conn)  # held open, never read, never answered

    def __enter__(self) -> BlackHole:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self._server.close()
        for conn in self._held:
            conn.close()
