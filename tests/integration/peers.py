"""Peers the integration tests share: the test EHR (HAPI FHIR JPA 8.8.0 from deploy/local/hapi-fhir-jpa, loaded with
the patients of fhir/ehr_patients.py), loopback HTTP apps in front of it (uvicorn in a thread), and the ORU
receiver that stands for the integration engine (a python-hl7 asyncio MLLP server)."""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from types import ModuleType
from typing import Any

import hl7
import httpx
import uvicorn
from hl7.mllp import start_hl7_server
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response

from radcds_devstack.samples import orm_o01
from radcds_devstack.testing import free_port
from radcds_reporting.adapters.hl7v2.ack import parse_ack

ROOT = Path(__file__).resolve().parents[2]
__all__ = ["orm_o01"]  # re-exported: the tests build their orders with it
VENV_BIN = Path(sys.executable).parent

PEER = ROOT / "deploy" / "local" / "hapi-fhir-jpa"
LIB = ROOT / ".cache" / "hapi-fhir-jpa" / "lib"
CLASSES = ROOT / ".cache" / "hapi-fhir-jpa" / "classes"
#: Fixed port of the test EHR (the session stack's ports are 2xxxx too; this one is free there).
HAPI_PORT = 28091
HAPI_START_TIMEOUT_S = 300


def load_patients() -> ModuleType:
    spec = importlib.util.spec_from_file_location("ehr_patients", Path(__file__).parent / "fhir" / "ehr_patients.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


patients = load_patients()


@dataclass
class Hapi:
    base: str
    log: Path


@contextlib.contextmanager
def run_hapi() -> Iterator[Hapi]:
    """A HAPI FHIR JPA server (about a minute to start on 2 cores), loaded with the test patients."""
    assert LIB.is_dir(), "the HAPI FHIR JPA jars are missing: run make deps"
    java, javac = shutil.which("java"), shutil.which("javac")
    assert java and javac, "a JDK is needed (make deps installs it)"
    source = PEER / "HapiFhirJpaMain.java"
    compiled = CLASSES / "radcds" / "ehr" / "HapiFhirJpaMain.class"
    if not compiled.exists() or compiled.stat().st_mtime < source.stat().st_mtime:
        subprocess.run(
            [javac, "-proc:none", "-nowarn", "-cp", f"{LIB}/*", "-d", str(CLASSES), str(source)],
            check=True,
            capture_output=True,
        )
    run_dir = ROOT / ".run"
    run_dir.mkdir(exist_ok=True)
    log = run_dir / f"hapi-fhir-jpa-{os.getpid()}.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [
                java,
                "-XX:+UseSerialGC",
                "-XX:TieredStopAtLevel=1",
                "-Xss1m",
                "-Xmx768m",
                "-cp",
                f"{CLASSES}:{LIB}/*",
                "radcds.ehr.HapiFhirJpaMain",
                str(HAPI_PORT),
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    base = f"http://127.0.0.1:{HAPI_PORT}/fhir"
    try:
        deadline = time.monotonic() + HAPI_START_TIMEOUT_S
        while b"HAPI FHIR JPA READY" not in log.read_bytes():
            assert proc.poll() is None, f"HAPI FHIR JPA exited with {proc.returncode}; see {log}"
            assert time.monotonic() < deadline, f"HAPI FHIR JPA did not start; see {log}"
            time.sleep(1)
        response = httpx.post(
            base,
            json=patients.transaction_bundle(date.today()),
            headers={"Content-Type": "application/fhir+json", "Accept": "application/fhir+json"},
            timeout=120,
        )
        assert response.status_code == 200, response.text[:2000]
        statuses = [e["response"]["status"] for e in response.json()["entry"]]
        assert all(s.startswith(("200", "201")) for s in statuses), statuses
        yield Hapi(base=base, log=log)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@dataclass
class Proxy:
    """A loopback HTTP app in front of HAPI (uvicorn in a thread)."""

    base: str
    origin: str
    state: dict[str, Any] = field(default_factory=dict)


class _Uvicorn(uvicorn.Server):
    def install_signal_handlers(self) -> None:  # the test thread is not the main thread
        pass


def serve(app: Starlette, *, port: int | None = None) -> Iterator[str]:
    """Serve ``app`` on loopback (``port``, else a free one) while the generator is open; yields its origin."""
    port = port or free_port()
    server = _Uvicorn(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert time.monotonic() < deadline, "the loopback app did not start"
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


async def forward(request: Request, hapi_base: str) -> Response:
    """Forward a FHIR GET to HAPI with the proxy's Host, so HAPI's paging links name the proxy."""
    path = request.path_params["path"]
    async with httpx.AsyncClient(timeout=60) as client:
        upstream = await client.get(
            f"{hapi_base}/{path}",
            params=list(request.query_params.multi_items()),
            headers={"Accept": "application/fhir+json", "Host": request.headers["host"]},
        )
    return Response(upstream.content, status_code=upstream.status_code, media_type="application/fhir+json")


class IntegrationEngine:
    """A python-hl7 asyncio MLLP server in its own thread; answers every message with AA."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.messages: list[hl7.Message] = []
        self._lock = threading.Lock()
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name="oru-peer", daemon=True)

    async def _handle(self, reader, writer) -> None:  # type: ignore[no-untyped-def]
        try:
            while not writer.is_closing():
                message = await reader.readmessage()
                with self._lock:
                    self.messages.append(message)
                writer.writemessage(message.create_ack())
                await writer.drain()
        except asyncio.IncompleteReadError:
            writer.close()

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._server = self._loop.run_until_complete(
            start_hl7_server(self._handle, "127.0.0.1", self.port, encoding="utf-8")
        )
        self._ready.set()
        self._loop.run_forever()

    def start(self) -> None:
        self._thread.start()
        assert self._ready.wait(20), "the ORU peer did not start"

    def stop(self) -> None:
        if not self._thread.is_alive():
            return

        async def close() -> None:
            self._server.close()
            others = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in others:  # open connections
                task.cancel()
            await asyncio.gather(*others, return_exceptions=True)
            await self._server.wait_closed()

        asyncio.run_coroutine_threadsafe(close(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    def orus_for(self, accession: str) -> list[hl7.Message]:
        with self._lock:
            return [m for m in self.messages if str(m.segment("OBR")[18]) == accession]


def mllp_send(stack: Any, path: Path) -> list[Any]:
    """Send the messages of ``path`` to the stack's MLLP listener with python-hl7's ``mllp_send`` CLI; the ACKs."""
    done = subprocess.run(
        [str(VENV_BIN / "mllp_send"), "--loose", "-p", str(stack.ports.reporting_mllp), "-f", str(path), stack.host],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return [parse_ack("MSH|" + chunk) for chunk in done.stdout.split("MSH|")[1:]]
