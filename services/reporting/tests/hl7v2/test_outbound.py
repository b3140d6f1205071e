"""The persisted outbound queue and the delivery worker (SQLite file; loopback MLLP peers of our own)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine

from radcds.adapters.db.engine import make_engine, migrate, sqlite_url
from radcds_reporting.adapters.hl7v2.ack import AckCode, ReceivedAck
from radcds_reporting.adapters.hl7v2.mllp import Delivery, MLLPSender, MLLPServer, SendOutcome
from radcds_reporting.adapters.hl7v2.outbound import (
    DeliveryWorker,
    OutboundMessage,
    OutboundQueue,
    QueueState,
    RetryPolicy,
    parked_message_counts,
)
from radcds_reporting.adapters.hl7v2.received import SqlReceivedMessageLog

from .test_mllp import _AckAll

DEST = "127.0.0.1:1"


def _msg(control_id: str) -> str:
    # Written for this test: the smallest ORU header the queue reads (MSH-10 is what matters).
    return f"MSH|^~\\&|RADCDS|HOSP|RIS|HOSP|20260101120000||ORU^R01^ORU_R01|{control_id}|P|2.5.1\rPID|1||X"


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    eng = make_engine(sqlite_url(tmp_path / "hl7.db"))
    migrate(eng, chain="radcds_reporting.db")
    yield eng
    eng.dispose()


class _Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 1, 1, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


def _outcome(delivery: Delivery, code: AckCode | None = None) -> SendOutcome:
    ack = ReceivedAck(code, "x") if code else None
    return SendOutcome(delivery, ack=ack, reason="test")


def test_final_is_not_due_before_preliminary_of_the_same_order(engine: Engine) -> None:
    queue = OutboundQueue(engine)
    p = queue.enqueue(destination=DEST, order_key="o1", payload=_msg("P1"), result_status="P")
    queue.enqueue(destination=DEST, order_key="o1", payload=_msg("F1"), result_status="F")
    other = queue.enqueue(destination=DEST, order_key="o2", payload=_msg("P2"), result_status="P")
    head = queue.next_due(DEST)
    assert head is not None and head.id == p
    queue.record(head, _outcome(Delivery.RETRY, AckCode.AR), RetryPolicy(initial_delay=60))
    # P1 waits for its backoff; F1 must still wait behind it, but the other order may go.
    nxt = queue.next_due(DEST)
    assert nxt is not None and nxt.id == other


def test_retry_backs_off_exponentially_then_parks_at_max_attempts(engine: Engine) -> None:
    clock = _Clock()
    queue = OutboundQueue(engine, clock=clock)
    queue.enqueue(destination=DEST, order_key="o1", payload=_msg("R1"))
    policy = RetryPolicy(initial_delay=1, max_delay=100, max_attempts=3)
    delays = []
    for _ in range(3):
        msg = queue.next_due(DEST)
        assert msg is not None
        state = queue.record(msg, _outcome(Delivery.RETRY), policy)
        wake = queue.next_wakeup(DEST)
        if wake is not None:
            delays.append((wake - clock.now).total_seconds())
            clock.now = wake
    assert delays == [1.0, 2.0]
    assert state is QueueState.PARKED
    assert queue.counts(DEST)["parked"] == 1


def test_rejected_message_is_parked_logged_without_content_and_counted(
    engine: Engine, caplog: pytest.LogCaptureFixture
) -> None:
    queue = OutboundQueue(engine)
    queue.enqueue(destination=DEST, order_key="o1", payload=_msg("AE1"))
    msg = queue.next_due(DEST)
    assert msg is not None
    with caplog.at_level(logging.ERROR):
        assert queue.record(msg, _outcome(Delivery.REJECTED, AckCode.AE), RetryPolicy()) is QueueState.PARKED
    record = next(r for r in caplog.records if r.getMessage() == "hl7 outbound message parked")
    assert record.__dict__["control_id"] == "AE1" and "PID" not in str(record.__dict__)
    assert parked_message_counts(engine) == {DEST: 1}
    assert [m.control_id for m in queue.parked()] == ["AE1"]
    assert queue.next_due(DEST) is None


def test_message_queued_before_the_clock_stepped_back_is_due_at_once_not_when_the_clock_is_back(
    engine: Engine,
) -> None:
    clock = _Clock()
    queue = OutboundQueue(engine, clock=clock)
    queued = queue.enqueue(destination=DEST, order_key="o1", payload=_msg("B1"))
    clock.now -= timedelta(hours=2)  # NTP steps the clock back: its next attempt is 2 hours ahead
    (due,) = queue.next_due_batch(DEST, 10, longest_wait_s=300)
    assert due.id == queued


def test_message_backing_off_is_not_due_early_after_a_small_step_back(engine: Engine) -> None:
    clock = _Clock()
    queue = OutboundQueue(engine, clock=clock)
    queue.enqueue(destination=DEST, order_key="o1", payload=_msg("B2"))
    policy = RetryPolicy(initial_delay=60, max_delay=300)
    head = queue.next_due(DEST)
    assert head is not None
    queue.record(head, _outcome(Delivery.RETRY), policy)  # next attempt in 60 s
    clock.now -= timedelta(seconds=30)  # 90 s ahead now: within the longest wait
    assert queue.next_due_batch(DEST, 10, longest_wait_s=policy.max_delay) == []
    clock.now += timedelta(seconds=90)
    assert len(queue.next_due_batch(DEST, 10, longest_wait_s=policy.max_delay)) == 1


def test_enqueue_of_same_control_id_twice_keeps_one_row(engine: Engine) -> None:
    queue = OutboundQueue(engine)
    assert queue.enqueue(destination=DEST, order_key="o", payload=_msg("D1")) == queue.enqueue(
        destination=DEST, order_key="o", payload=_msg("D1")
    )
    assert queue.counts(DEST)["queued"] == 1


def test_worker_keeps_each_orders_messages_in_order_and_a_new_worker_resumes_after_a_stop(engine: Engine) -> None:
    async def scenario() -> list[str]:
        queue = OutboundQueue(engine)
        async with MLLPServer(_AckAll("AA")) as server:
            dest = f"127.0.0.1:{server.port}"
            for cid in ("P1", "F1", "P2"):
                queue.enqueue(destination=dest, order_key=cid[1], payload=_msg(cid))
            first = DeliveryWorker(queue, MLLPSender("127.0.0.1", server.port), destination=dest)
            assert await first.run_once() is QueueState.DELIVERED
            await first.stop()  # "restart": a new worker over the same database
            second = DeliveryWorker(queue, MLLPSender("127.0.0.1", server.port), destination=dest, idle_poll=0.05)
            second.start()
            while queue.counts(dest)["delivered"] < 3:  # noqa: ASYNC110 - the database is the state polled
                await asyncio.sleep(0.02)
            await second.stop()
            return queue.delivered_control_ids(dest)

    delivered = asyncio.run(scenario())
    # FIFO per order: P1 before F1; another order's message may go in between.
    assert sorted(delivered) == ["F1", "P1", "P2"]
    assert delivered.index("P1") < delivered.index("F1")


def test_sql_received_message_log_remembers_accepted_messages(engine: Engine) -> None:
    log = SqlReceivedMessageLog(engine)
    assert not log.was_accepted(sender="RIS|HOSP", control_id="1")
    log.record_accepted(sender="RIS|HOSP", control_id="1")
    log.record_accepted(sender="RIS|HOSP", control_id="1")
    assert log.was_accepted(sender="RIS|HOSP", control_id="1")
    assert not log.was_accepted(sender="OTHER|HOSP", control_id="1")


def test_retry_policy_caps_the_delay() -> None:
    policy = RetryPolicy(initial_delay=1, max_delay=10)
    assert [policy.delay(n) for n in (1, 2, 3, 4, 5, 6)] == [1, 2, 4, 8, 10, 10]
    assert timedelta(seconds=policy.delay(1)) == timedelta(seconds=1)


def test_worker_batch_stops_at_the_first_message_that_is_not_delivered(engine: Engine) -> None:
    async def scenario() -> tuple[dict[str, int], list[str]]:
        queue = OutboundQueue(engine)
        async with MLLPServer(_AckAll("AE")) as server:
            dest = f"127.0.0.1:{server.port}"
            for cid in ("A1", "B1", "C1"):
                queue.enqueue(destination=dest, order_key=cid[0], payload=_msg(cid))
            worker = DeliveryWorker(queue, MLLPSender("127.0.0.1", server.port), destination=dest)
            assert await worker.run_once() is QueueState.PARKED
            await worker.stop()
            return queue.counts(dest), [m.control_id for m in queue.parked(dest)]

    counts, parked = asyncio.run(scenario())
    assert parked == ["A1"]  # the other two were not sent in that batch
    assert counts["parked"] == 1 and counts["queued"] == 2


def test_delivery_lease_is_held_by_one_holder_until_it_expires_or_is_released(engine: Engine) -> None:
    from radcds_reporting.adapters.hl7v2.outbound import hold_lease, release_lease

    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    assert hold_lease(engine, destination="ris:6661", holder="a", ttl_s=30, now=t0)
    assert not hold_lease(engine, destination="ris:6661", holder="b", ttl_s=30, now=t0 + timedelta(seconds=10))
    assert hold_lease(engine, destination="ris:6661", holder="a", ttl_s=30, now=t0 + timedelta(seconds=20))  # renew
    assert not hold_lease(engine, destination="ris:6661", holder="b", ttl_s=30, now=t0 + timedelta(seconds=45))
    assert hold_lease(engine, destination="ris:6661", holder="b", ttl_s=30, now=t0 + timedelta(seconds=51))  # expired
    assert hold_lease(engine, destination="other:1", holder="a", ttl_s=30, now=t0)  # per destination
    release_lease(engine, destination="ris:6661", holder="b")
    assert hold_lease(engine, destination="ris:6661", holder="a", ttl_s=30, now=t0 + timedelta(seconds=52))


def test_two_workers_on_one_queue_send_each_message_once_and_in_order(engine: Engine) -> None:
    # Two replicas of the reporting service share the database: only the lease holder sends.
    class _Recording(_AckAll):
        def __init__(self) -> None:
            super().__init__("AA")
            self.received: list[str] = []

        async def handle(self, data: bytes) -> list[bytes]:
            self.received.append(data.split(b"\r")[0].split(b"|")[9].decode())
            return await super().handle(data)

    app = _Recording()

    async def scenario() -> list[str]:
        queue = OutboundQueue(engine)
        async with MLLPServer(app) as server:
            dest = f"127.0.0.1:{server.port}"
            for i in range(20):
                queue.enqueue(destination=dest, order_key=f"o{i % 3}", payload=_msg(f"M{i:02d}"))
            workers = [
                DeliveryWorker(
                    queue, MLLPSender("127.0.0.1", server.port), destination=dest, idle_poll=0.05, batch_size=4
                )
                for _ in range(2)
            ]
            for w in workers:
                w.start()
            while queue.counts(dest)["delivered"] < 20:  # noqa: ASYNC110 - the database is the state polled
                await asyncio.sleep(0.02)
            for w in workers:
                await w.stop()
            return app.received

    received = asyncio.run(scenario())
    assert sorted(received) == [f"M{i:02d}" for i in range(20)]  # none twice
    for order in range(3):
        mine = [r for r in received if int(r[1:]) % 3 == order]
        assert mine == sorted(mine)  # each order's messages in enqueue order


def test_stop_returns_even_when_a_cancellation_is_lost_inside_a_send(engine: Engine) -> None:
    # Python 3.11's asyncio.wait_for can swallow a cancellation that arrives as its inner await
    # completes; stop() must still end the worker (it re-cancels and the loop checks a stop flag).
    class SwallowingSender(MLLPSender):
        async def send(self, message: str) -> SendOutcome:
            with contextlib.suppress(asyncio.CancelledError):  # the lost cancellation
                await asyncio.sleep(0.2)
            return SendOutcome(Delivery.DELIVERED, ack=None, reason="")

    async def scenario() -> dict[str, int]:
        queue = OutboundQueue(engine)
        for i in range(5):
            queue.enqueue(destination="lost:1", order_key=f"o{i}", payload=_msg(f"L{i}"))
        worker = DeliveryWorker(queue, SwallowingSender("127.0.0.1", 9), destination="lost:1", idle_poll=0.05)
        worker.start()
        await asyncio.sleep(0.1)  # inside the first send
        await asyncio.wait_for(worker.stop(), timeout=10)
        return queue.counts("lost:1")

    counts = asyncio.run(scenario())
    assert counts["delivered"] <= 1 and counts["delivered"] + counts["queued"] == 5


def test_worker_survives_its_database_being_unavailable_and_delivers_once_it_is_back(
    engine: Engine, caplog: pytest.LogCaptureFixture
) -> None:
    # A PostgreSQL restart (issue #15's fault suite): the queue's first reads fail with SQLAlchemy's
    # OperationalError. The worker must keep running, log the outage and deliver when the database answers.
    from sqlalchemy.exc import OperationalError

    class _Restarting(OutboundQueue):
        def __init__(self, eng: Engine, failures: int) -> None:
            super().__init__(eng)
            self.failures = failures

        def next_due_batch(self, destination: str, limit: int, *, longest_wait_s: float = 300) -> list[OutboundMessage]:
            if self.failures:
                self.failures -= 1
                raise OperationalError("SELECT 1", {}, Exception("server closed the connection unexpectedly"))
            return super().next_due_batch(destination, limit, longest_wait_s=longest_wait_s)

    async def scenario() -> tuple[bool, dict[str, int]]:
        queue = _Restarting(engine, failures=2)
        async with MLLPServer(_AckAll("AA")) as server:
            dest = f"127.0.0.1:{server.port}"
            queue.enqueue(destination=dest, order_key="o1", payload=_msg("DB1"))
            worker = DeliveryWorker(
                queue,
                MLLPSender("127.0.0.1", server.port),
                destination=dest,
                idle_poll=0.05,
                policy=RetryPolicy(initial_delay=0.01, max_delay=0.05),
            )
            task = worker.start()
            while queue.counts(dest)["delivered"] < 1:
                assert not task.done(), "the worker ended on a database error"
                await asyncio.sleep(0.02)
            alive = not task.done()
            await worker.stop()
            return alive, queue.counts(dest)

    with caplog.at_level(logging.WARNING, logger="radcds_reporting.adapters.hl7v2.outbound"):
        alive, counts = asyncio.run(scenario())
    assert alive
    assert counts["delivered"] == 1
    outages = [r for r in caplog.records if "database unavailable" in r.getMessage()]
    assert len(outages) == 2
    assert all(getattr(r, "error_class", "") == "OperationalError" for r in outages)
