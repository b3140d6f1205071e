"""Test support shared by the services' test suites: a migrated database on either backend."""

from __future__ import annotations

import importlib.util
import os
import shutil
import socket
import sys
import types
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Engine

from radcds.adapters.db.engine import make_engine, migrate, sqlite_url
from radcds.adapters.kafka.codec import validate_payload
from radcds.domain.events import EventKind

#: The shared migration chain of the releases before issue #12, frozen here for the upgrade tests (every service's
#: tables in one database; see :mod:`radcds.adapters.db.legacy`).
LEGACY_SHARED_CHAIN = "radcds_devstack.legacy"


def free_port() -> int:
    """A TCP port free on loopback right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def migrated_engine(
    service: str, backend: str, *, root: Path, scratch: Path, label: str, chain: str
) -> Iterator[Engine]:
    """A database of ``service`` migrated by ``chain``: SQLite under ``scratch``, or (``backend="postgresql"``) a
    throwaway PostgreSQL cluster under ``root/.run`` on a free port, removed afterwards."""
    if backend == "sqlite":
        engine = make_engine(sqlite_url(scratch / f"{service}.db"))
        migrate(engine, chain=chain)
        try:
            yield engine
        finally:
            engine.dispose()
        return
    from radcds_devstack.stack import LocalStack, Ports

    run_dir = root / ".run" / f"{service}-db-test-{os.getpid()}-{label}"
    stack = LocalStack(root=root, run_dir=run_dir, ports=Ports(postgres=free_port()), postgres=True)
    stack.postgres_cluster.start()
    try:
        stack.postgres_cluster.wait()
        url = stack.database_url(service)
        assert url is not None
        engine = make_engine(url)
        migrate(engine, chain=chain)
        try:
            yield engine
        finally:
            engine.dispose()
    finally:
        stack.down()
        stack.discard_postgres_data()
        shutil.rmtree(run_dir, ignore_errors=True)


def model_code(models_dir: Path, name: str, version: str = "1") -> types.ModuleType:
    """The numeric core of a Triton Python-backend model, ``<models_dir>/<name>/<version>/model.py``,
    imported without Triton (its ``triton_python_backend_utils`` import is lazy) for tests and
    benchmarks; loaded once per process."""
    module_name = f"radcds_model_{name}_v{version}"
    if module_name in sys.modules:
        return sys.modules[module_name]
    spec = importlib.util.spec_from_file_location(module_name, models_dir / name / version / "model.py")
    if spec is None or spec.loader is None:
        raise ImportError(f"no model code for {name} version {version} in {models_dir}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    spec.loader.exec_module(module)
    return module


class RecordingPublisher:
    """The one fake of our EventPublisher and BatchEventPublisher ports for tests: validates each payload against its
    JSON Schema and keeps ``(kind, payload, event_id, subject)`` in order. ``fail``: every publish raises
    ``ConnectionError`` (the broker is down); ``ack_limit``: a batch acknowledges only its first ``ack_limit``
    events (a partial batch, as a broker may answer); ``batches`` counts the batches."""

    def __init__(self, *, fail: bool = False, ack_limit: int | None = None) -> None:
        self.events: list[tuple[EventKind, dict[str, Any], str, str]] = []
        self.fail = fail
        self.ack_limit = ack_limit
        self.batches = 0

    def publish(self, kind: EventKind, payload: dict[str, Any], *, event_id: str, subject: str) -> None:
        """Record one event (or raise ``ConnectionError`` when ``fail``)."""
        if self.fail:
            raise ConnectionError("broker down")
        validate_payload(kind, payload)
        self.events.append((kind, payload, event_id, subject))

    def publish_many(
        self, kind: EventKind, items: list[tuple[dict[str, Any], str, str]], *, trace_carriers: Any = None
    ) -> list[str]:
        """Record a batch of ``(payload, event_id, subject)``; returns the acknowledged event ids."""
        self.batches += 1
        acked = items if self.ack_limit is None else items[: self.ack_limit]
        for payload, event_id, subject in acked:
            self.publish(kind, payload, event_id=event_id, subject=subject)
        return [event_id for _, event_id, _ in acked]

    def of(self, kind: EventKind) -> list[dict[str, Any]]:
        """The payloads of ``kind``, in order."""
        return [payload for k, payload, _, _ in self.events if k is kind]


class InMemoryReceivedMessageLog:
    """Fake of our :class:`~radcds_reporting.adapters.hl7v2.inbound.ReceivedMessageLog` port for tests: in-process
    and bounded (forgets the oldest beyond ``capacity``); the services use ``SqlReceivedMessageLog``."""

    def __init__(self, capacity: int = 100_000) -> None:
        self._seen: OrderedDict[tuple[str, str], None] = OrderedDict()
        self._capacity = capacity

    def was_accepted(self, *, sender: str, control_id: str) -> bool:
        """See :class:`~radcds_reporting.adapters.hl7v2.inbound.ReceivedMessageLog`."""
        return (sender, control_id) in self._seen

    def record_accepted(self, *, sender: str, control_id: str) -> None:
        """See :class:`~radcds_reporting.adapters.hl7v2.inbound.ReceivedMessageLog`."""
        self._seen[(sender, control_id)] = None
        while len(self._seen) > self._capacity:
            self._seen.popitem(last=False)


def presented_html(report: dict[str, Any]) -> str:
    """The text/html presented form of a DiagnosticReport, decoded and with HTML entities resolved."""
    import base64
    import html

    form = next(f for f in report["presentedForm"] if f["contentType"] == "text/html")
    return html.unescape(base64.b64decode(form["data"]).decode())


def html_section(page: str, key: str) -> str:
    """The ``<section data-section="key">`` of a rendered report, up to its end."""
    start = page.index(f'data-section="{key}"')
    return page[start : page.index("</section>", start)]
