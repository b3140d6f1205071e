"""The transactional outbox: events written with their state are published afterwards, in order."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider

from radcds.adapters.db.engine import make_engine, sqlite_url
from radcds.adapters.db.outbox import OutboxRelay, enqueue, pending_count
from radcds.adapters.db.tables import create_kernel_tables
from radcds.domain.events import FINDINGS_PRODUCED, INSTANCE_STORED, EventKind


class BatchPublisher:
    """Fake of our BatchEventPublisher port; refuses everything while ``down``."""

    def __init__(self) -> None:
        self.down = False
        self.sent: list[tuple[str, str, dict[str, str]]] = []

    def publish(self, kind: EventKind, payload: dict[str, Any], *, event_id: str, subject: str) -> None:
        raise AssertionError("the relay publishes in batches")

    def publish_many(
        self, kind: EventKind, items: list[tuple[dict[str, Any], str, str]], *, trace_carriers: Any = None
    ) -> list[str]:
        if self.down:
            raise ConnectionError("broker down")
        for (_, event_id, _), carrier in zip(items, trace_carriers, strict=True):
            self.sent.append((kind.type, event_id, carrier))
        return [event_id for _, event_id, _ in items]


def _engine(tmp_path):
    engine = make_engine(sqlite_url(tmp_path / "outbox.db"))
    with engine.begin() as conn:
        create_kernel_tables(conn)
    return engine


def test_events_of_two_kinds_are_published_in_the_order_they_were_written(tmp_path):
    engine = _engine(tmp_path)
    with engine.begin() as conn:
        enqueue(conn, INSTANCE_STORED, [({"n": 1}, "a", "s"), ({"n": 2}, "b", "s")])
        enqueue(conn, FINDINGS_PRODUCED, [({"n": 3}, "c", "s")])
        enqueue(conn, INSTANCE_STORED, [({"n": 4}, "d", "s")])
    publisher = BatchPublisher()
    assert OutboxRelay(engine, publisher).drain() == 4
    assert [event_id for _, event_id, _ in publisher.sent] == ["a", "b", "c", "d"]
    assert pending_count(engine) == 0


def test_events_written_while_the_broker_is_down_stay_pending_and_go_out_once(tmp_path):
    engine = _engine(tmp_path)
    publisher = BatchPublisher()
    relay = OutboxRelay(engine, publisher)
    publisher.down = True
    with engine.begin() as conn:
        enqueue(conn, INSTANCE_STORED, [({}, "a", "s")])
    relay.notify()
    assert pending_count(engine) == 1 and relay.failures == 1
    publisher.down = False
    relay.drain()
    relay.drain()
    assert [event_id for _, event_id, _ in publisher.sent] == ["a"]


def test_a_rolled_back_transaction_leaves_no_event(tmp_path):
    engine = _engine(tmp_path)
    try:
        with engine.begin() as conn:
            enqueue(conn, INSTANCE_STORED, [({}, "a", "s")])
            raise RuntimeError("the state change failed")
    except RuntimeError:
        pass
    assert pending_count(engine) == 0


def test_event_carries_the_trace_it_was_written_in(tmp_path):
    engine = _engine(tmp_path)
    tracer = TracerProvider().get_tracer("test")
    with tracer.start_as_current_span("store") as span, engine.begin() as conn:
        enqueue(conn, INSTANCE_STORED, [({}, "a", "s")])
        trace_id = format(span.get_span_context().trace_id, "032x")
    publisher = BatchPublisher()
    OutboxRelay(engine, publisher).drain()
    ((_, _, carrier),) = publisher.sent
    assert carrier["traceparent"].split("-")[1] == trace_id
    assert trace.get_current_span().get_span_context().is_valid is False


def test_published_events_are_removed_after_the_retention_period(tmp_path):
    engine = _engine(tmp_path)
    with engine.begin() as conn:
        enqueue(conn, INSTANCE_STORED, [({}, "a", "s")])
    OutboxRelay(engine, BatchPublisher(), retention=timedelta(0)).drain()
    from sqlalchemy import func, select

    from radcds.adapters.db.tables import event_outbox

    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(event_outbox)).scalar_one() == 0


class OneByOnePublisher:
    """Fake of our EventPublisher port without batches: records each event with the trace it is published in."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, str]] = []

    def publish(self, kind: EventKind, payload: dict[str, Any], *, event_id: str, subject: str) -> None:
        span = trace.get_current_span().get_span_context()
        self.sent.append((event_id, format(span.trace_id, "032x")))


def test_publisher_without_batches_gets_each_event_in_order_inside_the_trace_that_wrote_it(tmp_path):
    engine = _engine(tmp_path)
    tracer = TracerProvider().get_tracer("test")
    with tracer.start_as_current_span("write") as span, engine.begin() as conn:
        enqueue(conn, INSTANCE_STORED, [({}, "a", "s"), ({}, "b", "s")])
        written_in = format(span.get_span_context().trace_id, "032x")
    publisher = OneByOnePublisher()

    assert OutboxRelay(engine, publisher).drain() == 2
    assert publisher.sent == [("a", written_in), ("b", written_in)]


def test_published_rows_are_purged_at_most_once_per_purge_interval(tmp_path):
    # Purging is a write transaction of its own: once a minute, not after every drain (issue #15: each drain's
    # purge raced the next request's transaction).
    from sqlalchemy import func, select

    from radcds.adapters.db.tables import event_outbox

    engine = _engine(tmp_path)
    relay = OutboxRelay(engine, BatchPublisher(), retention=timedelta(0), purge_interval=timedelta(hours=1))
    for event_id in ("a", "b"):
        with engine.begin() as conn:
            enqueue(conn, INSTANCE_STORED, [({}, event_id, "s")])
        relay.drain()
    with engine.connect() as conn:
        kept = conn.execute(select(event_outbox.c.event_id)).scalars().all()
    assert kept == ["b"]  # "a" went with the first drain's purge; "b" waits for the next purge interval
    assert pending_count(engine) == 0
    relay_now = OutboxRelay(engine, BatchPublisher(), retention=timedelta(0), purge_interval=timedelta(0))
    relay_now.drain()
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(event_outbox)).scalar_one() == 0


class CountingPublisher(BatchPublisher):
    def __init__(self) -> None:
        super().__init__()
        self.batches: list[list[str]] = []

    def publish_many(
        self, kind: EventKind, items: list[tuple[dict[str, Any], str, str]], *, trace_carriers: Any = None
    ) -> list[str]:
        self.batches.append([event_id for _, event_id, _ in items])
        return super().publish_many(kind, items, trace_carriers=trace_carriers)


def test_notifications_within_the_coalescing_window_are_published_in_one_batch(tmp_path):
    import time

    engine = _engine(tmp_path)
    publisher = CountingPublisher()
    relay = OutboxRelay(engine, publisher, interval_s=3600, coalesce_s=2.0)
    relay.start()
    try:
        for event_id in ("a", "b", "c"):
            with engine.begin() as conn:
                enqueue(conn, INSTANCE_STORED, [({}, event_id, "s")])
            relay.notify()
        deadline = time.monotonic() + 30
        while pending_count(engine) and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        relay.stop()
    assert publisher.batches == [["a", "b", "c"]]
