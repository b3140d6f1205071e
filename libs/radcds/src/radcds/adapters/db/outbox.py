"""Transactional outbox: write events with the state they describe, publish them afterwards.

A handler calls :func:`enqueue` inside its database transaction, so an event exists exactly when
its state change was committed. :class:`OutboxRelay` then publishes pending events in the order
they were written (``seq``), at least once: a crash between the broker's acknowledgement and the
``published_at`` update sends the same event id again, and consumers dedupe by event id.

The request path therefore never waits for Kafka, and a broker outage delays events instead of
refusing the work (the pattern of *Microservices Patterns*, ch. 3 "Transactional outbox").
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import propagate
from sqlalchemy import Connection, Engine, delete, func, insert, select, update

from radcds.adapters.db.tables import event_outbox
from radcds.domain.events import EVENT_KINDS, EventKind
from radcds.domain.ports import EventPublisher

log = logging.getLogger(__name__)
_O = event_outbox.c


def enqueue(conn: Connection, kind: EventKind, items: Sequence[tuple[dict[str, Any], str, str]]) -> None:
    """Add ``(payload, event_id, subject)`` events of ``kind`` in the caller's transaction."""
    if not items:
        return
    now = datetime.now(UTC)
    carrier: dict[str, str] = {}
    propagate.inject(carrier)  # the current trace continues when the relay publishes
    trace_context = json.dumps(carrier)
    conn.execute(
        insert(event_outbox),
        [
            {
                "event_id": event_id,
                "event_type": kind.type,
                "subject": subject,
                "payload": json.dumps(payload, separators=(",", ":")),
                "trace_context": trace_context,
                "created_at": now,
                "published_at": None,
            }
            for payload, event_id, subject in items
        ],
    )


def pending_count(engine: Engine) -> int:
    """Events written but not yet acknowledged by the broker (a metric and a test probe)."""
    with engine.connect() as conn:
        return int(
            conn.execute(select(func.count()).select_from(event_outbox).where(_O.published_at.is_(None))).scalar_one()
        )


class OutboxRelay:
    """Publishes pending outbox events in ``seq`` order, from a daemon thread or inline.

    :meth:`notify` after a commit wakes the thread at once; without a running thread it drains
    inline (unit tests and one-shot tools see their events published before it returns).
    Published rows are kept for ``retention`` (audit, replay by hand), then removed.
    """

    def __init__(
        self,
        engine: Engine,
        publisher: EventPublisher,
        *,
        name: str = "outbox",
        interval_s: float = 1.0,
        batch_size: int = 500,
        retention: timedelta = timedelta(hours=1),
        coalesce_s: float = 0.05,
        purge_interval: timedelta = timedelta(minutes=1),
    ) -> None:
        self._engine = engine
        self._publisher = publisher
        self._name = name
        self._interval_s = interval_s
        self._batch_size = batch_size
        self._retention = retention
        self._coalesce_s = coalesce_s
        self._purge_interval = purge_interval
        self._purged_at: float | None = None
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self.failures = 0

    def notify(self) -> None:
        """Events were committed: publish them now (wake the thread, or drain inline without one)."""
        if self._thread is not None and self._thread.is_alive():
            self._wake.set()
            return
        self.drain()

    def drain(self) -> int:
        """Publish pending events until none is left or the broker refuses; returns how many were acknowledged."""
        total = 0
        with self._lock:  # one drainer at a time keeps the order
            while True:
                sent, complete = self._drain_batch()
                total += sent
                if not complete or sent == 0:
                    break
            now = time.monotonic()
            if self._purged_at is None or now - self._purged_at >= self._purge_interval.total_seconds():
                self._purge()
                self._purged_at = now
        return total

    def _drain_batch(self) -> tuple[int, bool]:
        with self._engine.connect() as conn:
            rows = conn.execute(
                select(_O.seq, _O.event_id, _O.event_type, _O.subject, _O.payload, _O.trace_context)
                .where(_O.published_at.is_(None))
                .order_by(_O.seq)
                .limit(self._batch_size)
            ).all()
        if not rows:
            return 0, True
        acked: list[int] = []
        complete = True
        # Consecutive events of one kind go out as one batch; the order across kinds is kept.
        i = 0
        while i < len(rows):
            j = i
            while j < len(rows) and rows[j].event_type == rows[i].event_type:
                j += 1
            group = rows[i:j]
            kind = EVENT_KINDS.get(group[0].event_type)
            if kind is None:
                log.error("outbox event of an unknown type left pending", extra={"event_type": group[0].event_type})
                complete = False
                break
            ids = self._publish(
                kind,
                [(json.loads(r.payload), r.event_id, r.subject) for r in group],
                [json.loads(r.trace_context) for r in group],
            )
            acked += [r.seq for r in group[: len(ids)]]
            if len(ids) < len(group):
                complete = False
                break
            i = j
        if acked:
            with self._engine.begin() as conn:
                conn.execute(update(event_outbox).where(_O.seq.in_(acked)).values(published_at=datetime.now(UTC)))
        return len(acked), complete

    def _publish(
        self, kind: EventKind, items: list[tuple[dict[str, Any], str, str]], carriers: list[dict[str, str]]
    ) -> list[str]:
        """Publish in order, each event in the trace it was written in; returns the acknowledged ids up to
        the first failure."""
        try:
            publish_many = getattr(self._publisher, "publish_many", None)
            if publish_many is not None:
                return list(publish_many(kind, items, trace_carriers=carriers))
            sent: list[str] = []
            for (payload, event_id, subject), carrier in zip(items, carriers, strict=True):
                token = otel_context.attach(propagate.extract(carrier))
                try:
                    self._publisher.publish(kind, payload, event_id=event_id, subject=subject)
                finally:
                    otel_context.detach(token)
                sent.append(event_id)
            return sent
        except Exception as exc:
            self.failures += 1
            log.warning(
                "outbox events not published yet", extra={"outbox": self._name, "error_class": type(exc).__name__}
            )
            return []

    def _purge(self) -> None:
        cutoff = datetime.now(UTC) - self._retention
        with self._engine.begin() as conn:
            conn.execute(delete(event_outbox).where(_O.published_at.is_not(None), _O.published_at < cutoff))

    def start(self) -> None:
        """Drain whenever notified, and every ``interval_s`` (retries after a broker outage)."""

        def loop() -> None:
            while not self._stop.is_set():
                woken = self._wake.wait(self._interval_s)
                if woken and self._coalesce_s > 0:
                    # Gather the events of the requests that commit meanwhile into one drain: one publish batch
                    # and one UPDATE for all of them, instead of a write transaction racing each next request.
                    self._stop.wait(self._coalesce_s)
                self._wake.clear()
                if self._stop.is_set():
                    break
                try:
                    self.drain()
                except Exception:
                    log.exception("outbox relay failed", extra={"outbox": self._name})

        self._thread = threading.Thread(target=loop, name=self._name, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop the thread after a last drain (what is left goes out at the next start)."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(10)
            self._thread = None
        try:
            self.drain()
        except Exception:
            log.warning("last outbox drain failed; events stay stored", extra={"outbox": self._name})
