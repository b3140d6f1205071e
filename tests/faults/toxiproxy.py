"""Toxiproxy 2.5.0 (Shopify; its ``server`` built from the Go module proxy by ``make peer-deps`` into
``.cache/toxiproxy/bin``) in front of two loopback connections of the fault stack: reporting's ORU^R01 to the
integration engine (MLLP) and inference's gRPC to Triton. Without a toxic a proxy only forwards; a scenario adds a
``latency``, ``reset_peer`` or ``timeout`` toxic through the HTTP API (github.com/Shopify/toxiproxy README, "HTTP
API" and "Toxics") and removes it again.

Kafka is not proxied: a client connects to the broker its metadata advertises (``advertised.listeners``), so a
proxy in front of the bootstrap port would be bypassed after the first request unless the broker advertised the
proxy's port, which would put every connection of the stack (the tests' own too) through it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from radcds_devstack import processes

BINARY = Path(__file__).resolve().parents[2] / ".cache" / "toxiproxy" / "bin" / "server"


@dataclass(frozen=True)
class Toxiproxy:
    """One toxiproxy server, its API on ``host:port``, logging to ``run_dir/logs/toxiproxy.log``."""

    run_dir: Path
    host: str
    port: int
    name: str = "toxiproxy"

    @property
    def api(self) -> str:
        """Base URL of the HTTP API."""
        return f"http://{self.host}:{self.port}"

    def start(self) -> None:
        """Start the server and wait for its API."""
        if not BINARY.exists():
            raise RuntimeError(f"toxiproxy missing at {BINARY}: run `make peer-deps`")
        processes.start(
            self.name,
            [str(BINARY), "-host", self.host, "-port", str(self.port)],
            run_dir=self.run_dir,
            env={"PATH": "/usr/bin:/bin"},
            cwd=self.run_dir,
        )
        processes.wait_until(
            lambda: httpx.get(f"{self.api}/version", timeout=2).status_code == 200,
            timeout_s=30,
            what="toxiproxy",
            alive=(self.name, self.run_dir),
        )

    def stop(self) -> None:
        """Stop the server."""
        processes.stop(self.name, self.run_dir)

    def proxy(self, name: str, *, listen: int, upstream: int) -> None:
        """Create (or replace) the proxy ``name`` from ``listen`` to ``upstream`` on loopback."""
        httpx.delete(f"{self.api}/proxies/{name}", timeout=5)
        body = {"name": name, "listen": f"{self.host}:{listen}", "upstream": f"{self.host}:{upstream}"}
        response = httpx.post(f"{self.api}/proxies", json=body | {"enabled": True}, timeout=5)
        response.raise_for_status()

    def add_toxic(self, proxy: str, kind: str, *, stream: str = "downstream", **attributes: Any) -> str:
        """Add a toxic of ``kind`` to every connection of ``proxy``; returns its name."""
        name = f"{kind}_{stream}"
        body = {"name": name, "type": kind, "stream": stream, "toxicity": 1.0, "attributes": attributes}
        response = httpx.post(f"{self.api}/proxies/{proxy}/toxics", json=body, timeout=5)
        response.raise_for_status()
        return name

    def remove_toxic(self, proxy: str, name: str) -> None:
        """Remove a toxic (connections flow normally again)."""
        httpx.delete(f"{self.api}/proxies/{proxy}/toxics/{name}", timeout=5).raise_for_status()

    @contextlib.contextmanager
    def toxic(self, proxy: str, kind: str, *, stream: str = "downstream", **attributes: Any) -> Iterator[None]:
        """A toxic for the block."""
        name = self.add_toxic(proxy, kind, stream=stream, **attributes)
        try:
            yield
        finally:
            self.remove_toxic(proxy, name)
