"""The persisted outbound HL7 v2 queue and its delivery worker (HL7 v2.5.1 2.10.1 sequencing); the log of
received messages is :mod:`radcds_reporting.adapters.hl7v2.received`.

Each message is stored once per destination with its MSH-10 fixed, then sent unchanged until it
is delivered or parked:

* AA/CA → ``delivered``;
* AE/CE → ``parked`` (the receiver refuses the content; an operator must act) and an alert is logged;
* AR/CR, a timeout or a connection error → ``retrying`` with exponential backoff, the same MSH-10,
  until ``max_attempts`` is reached, then ``parked``.

Per destination and per order (``order_key``) the queue is first in, first out: a message is
due only when no earlier message of the same order is still queued or retrying, so a final
report never overtakes its preliminary one. Messages of other orders are not held up. State lives
in the database, so a restart resumes where it stopped; a message sent but not yet recorded is
sent again with the same MSH-10, which receivers discard as a duplicate.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum

from sqlalchemy import Connection, Engine, and_, func, insert, or_, select, update
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from radcds_reporting.adapters.hl7v2.ack import parse_msh
from radcds_reporting.adapters.hl7v2.mllp import Delivery, MLLPSender, SendOutcome
from radcds_reporting.db.tables import hl7_delivery_leases, hl7_outbound_messages

logger = logging.getLogger(__name__)


class QueueState(StrEnum):
    """Where an outbound message stands."""

    QUEUED = "queued"
    RETRYING = "retrying"
    DELIVERED = "delivered"
    PARKED = "parked"


_PENDING = (QueueState.QUEUED.value, QueueState.RETRYING.value)


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Exponential backoff: ``initial_delay * 2**(attempt-1)`` seconds, capped; park after ``max_attempts``."""

    initial_delay: float = 1.0
    max_delay: float = 300.0
    max_attempts: int = 20

    def delay(self, attempts: int) -> float:
        """Seconds to wait after the ``attempts``-th failed try."""
        return float(min(self.max_delay, self.initial_delay * (2 ** max(0, attempts - 1))))


#: The longest retry delay of the default :class:`RetryPolicy` (seconds): a next attempt further ahead means the
#: clock stepped back.
DEFAULT_LONGEST_WAIT_S = RetryPolicy().max_delay


@dataclass(frozen=True, slots=True)
class OutboundMessage:
    """One queued message as stored."""

    id: int
    destination: str
    order_key: str
    control_id: str
    payload: str
    state: QueueState
    attempts: int
    next_attempt_at: datetime
    last_ack_code: str | None


def _aware(moment: datetime) -> datetime:
    # SQLite returns naive datetimes for timezone=True columns; radcds stores UTC.
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


class OutboundQueue:
    """Database operations of the outbound queue (SQLAlchemy Core; SQLite and PostgreSQL)."""

    def __init__(self, engine: Engine, *, clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self._engine = engine
        self._clock = clock

    @property
    def engine(self) -> Engine:
        """The queue's database (delivery leases live there too)."""
        return self._engine

    def enqueue(self, *, destination: str, order_key: str, payload: str, result_status: str = "") -> int:
        """Store ``payload`` for ``destination``; its MSH-10 is read from the payload and never changes.

        Enqueueing the same MSH-10 for the same destination again is a no-op returning the existing id.
        """
        with self._engine.begin() as conn:
            return self.enqueue_in(
                conn, destination=destination, order_key=order_key, payload=payload, result_status=result_status
            )

    def enqueue_in(
        self, conn: Connection, *, destination: str, order_key: str, payload: str, result_status: str = ""
    ) -> int:
        """:meth:`enqueue` inside the caller's transaction (the message exists exactly when the caller commits).

        Callers that store the state a message reports (a DiagnosticReport version) enqueue in the
        same transaction, then wake the worker after the commit (:meth:`DeliveryWorker.notify`).
        """
        header = parse_msh(payload)
        if not header.control_id:
            raise ValueError("the message has no MSH-10")
        now = self._clock()
        existing = conn.execute(
            select(hl7_outbound_messages.c.id).where(
                hl7_outbound_messages.c.destination == destination,
                hl7_outbound_messages.c.control_id == header.control_id,
            )
        ).scalar()
        if existing is not None:
            return int(existing)
        result = conn.execute(
            insert(hl7_outbound_messages).values(
                destination=destination,
                order_key=order_key,
                control_id=header.control_id,
                message_type=f"{header.message_code}^{header.trigger_event}",
                result_status=result_status,
                payload=payload,
                state=QueueState.QUEUED.value,
                attempts=0,
                next_attempt_at=now,
                created_at=now,
                updated_at=now,
            )
        )
        assert result.inserted_primary_key is not None
        return int(result.inserted_primary_key[0])

    def _heads(self, destination: str):  # type: ignore[no-untyped-def]
        """The oldest pending message of each order for ``destination``."""
        t = hl7_outbound_messages
        heads = (
            select(func.min(t.c.id).label("id"))
            .where(t.c.destination == destination, t.c.state.in_(_PENDING))
            .group_by(t.c.order_key)
            .subquery()
        )
        return select(t).join(heads, t.c.id == heads.c.id)

    def next_due(self, destination: str) -> OutboundMessage | None:
        """The message to send now: the oldest due head of any order (FIFO per order), or None."""
        batch = self.next_due_batch(destination, 1)
        return batch[0] if batch else None

    def next_due_batch(
        self, destination: str, limit: int, *, longest_wait_s: float = DEFAULT_LONGEST_WAIT_S
    ) -> list[OutboundMessage]:
        """Up to ``limit`` due heads (at most one per order, so an order's messages never overtake).

        A head is due when its next attempt has come, or when that attempt lies more than ``longest_wait_s``
        (the retry policy's longest delay) ahead: no delay set it there, so the clock stepped back since it was
        set (NTP, a restored virtual machine), and the message is sent now instead of once the clock is back."""
        t = hl7_outbound_messages
        now = self._clock()
        stmt = (
            self._heads(destination)
            .where(or_(t.c.next_attempt_at <= now, t.c.next_attempt_at > now + timedelta(seconds=longest_wait_s)))
            .order_by(t.c.id)
            .limit(limit)
        )
        with self._engine.connect() as conn:
            rows = conn.execute(stmt).mappings().all()
        return [
            OutboundMessage(
                id=row["id"],
                destination=row["destination"],
                order_key=row["order_key"],
                control_id=row["control_id"],
                payload=row["payload"],
                state=QueueState(row["state"]),
                attempts=row["attempts"],
                next_attempt_at=_aware(row["next_attempt_at"]),
                last_ack_code=row["last_ack_code"],
            )
            for row in rows
        ]

    def next_wakeup(self, destination: str) -> datetime | None:
        """When the earliest pending head becomes due (None when nothing is pending)."""
        heads = self._heads(destination).subquery()
        with self._engine.connect() as conn:
            value = conn.execute(select(func.min(heads.c.next_attempt_at))).scalar()
        return _aware(value) if value is not None else None

    def record(self, message: OutboundMessage, outcome: SendOutcome, policy: RetryPolicy) -> QueueState:
        """Store the outcome of one attempt and return the new state."""
        return self.record_many([(message, outcome)], policy)[0]

    def record_many(self, results: list[tuple[OutboundMessage, SendOutcome]], policy: RetryPolicy) -> list[QueueState]:
        """Store the outcomes of several attempts in one transaction; return their new states."""
        planned = [(message, *self._outcome_values(message, outcome, policy)) for message, outcome in results]
        with self._engine.begin() as conn:
            for message, _, values in planned:
                conn.execute(
                    update(hl7_outbound_messages).where(hl7_outbound_messages.c.id == message.id).values(**values)
                )
        for message, state, values in planned:
            if state is QueueState.PARKED:
                # An alert for operators; identifiers only (queue id, MSH-10, ACK code), never report content.
                logger.error(
                    "hl7 outbound message parked",
                    extra={
                        "alert": "hl7_message_parked",
                        "destination": message.destination,
                        "queue_id": message.id,
                        "control_id": message.control_id,
                        "ack_code": values["last_ack_code"] or "",
                        "attempts": values["attempts"],
                    },
                )
        return [state for _, state, _ in planned]

    def _outcome_values(
        self, message: OutboundMessage, outcome: SendOutcome, policy: RetryPolicy
    ) -> tuple[QueueState, dict[str, object]]:
        now = self._clock()
        attempts = message.attempts + 1
        ack_code = outcome.ack.code.value if outcome.ack else None
        reason = (outcome.reason or "")[:255]
        values: dict[str, object] = {"attempts": attempts, "updated_at": now, "last_ack_code": ack_code}
        if outcome.delivery is Delivery.DELIVERED:
            state = QueueState.DELIVERED
            values |= {"delivered_at": now, "last_error": None}
        elif outcome.delivery is Delivery.REJECTED:
            state = QueueState.PARKED
            values |= {"last_error": reason or "rejected by the receiver"}
        elif attempts >= policy.max_attempts:
            state = QueueState.PARKED
            values |= {"last_error": f"gave up after {attempts} attempts: {reason}"[:255]}
        else:
            state = QueueState.RETRYING
            values |= {"last_error": reason, "next_attempt_at": now + timedelta(seconds=policy.delay(attempts))}
        values["state"] = state.value
        return state, values

    def counts(self, destination: str | None = None) -> dict[str, int]:
        """Messages per state (for metrics), optionally for one destination."""
        t = hl7_outbound_messages
        stmt = select(t.c.state, func.count()).group_by(t.c.state)
        if destination is not None:
            stmt = stmt.where(t.c.destination == destination)
        with self._engine.connect() as conn:
            found = {state: int(n) for state, n in conn.execute(stmt)}
        return {state.value: found.get(state.value, 0) for state in QueueState}

    def parked(self, destination: str | None = None) -> list[OutboundMessage]:
        """Parked messages, oldest first (for operators and alerts)."""
        t = hl7_outbound_messages
        stmt = select(t).where(t.c.state == QueueState.PARKED.value).order_by(t.c.id)
        if destination is not None:
            stmt = stmt.where(t.c.destination == destination)
        with self._engine.connect() as conn:
            rows = conn.execute(stmt).mappings().all()
        return [
            OutboundMessage(
                id=r["id"],
                destination=r["destination"],
                order_key=r["order_key"],
                control_id=r["control_id"],
                payload=r["payload"],
                state=QueueState.PARKED,
                attempts=r["attempts"],
                next_attempt_at=_aware(r["next_attempt_at"]),
                last_ack_code=r["last_ack_code"],
            )
            for r in rows
        ]

    def delivered_control_ids(self, destination: str) -> list[str]:
        """MSH-10 of the delivered messages in delivery order (tests and audits)."""
        t = hl7_outbound_messages
        stmt = (
            select(t.c.control_id)
            .where(and_(t.c.destination == destination, t.c.state == QueueState.DELIVERED.value))
            .order_by(t.c.delivered_at, t.c.id)
        )
        with self._engine.connect() as conn:
            return [str(v) for v in conn.execute(stmt).scalars()]


def hold_lease(engine: Engine, *, destination: str, holder: str, ttl_s: float, now: datetime | None = None) -> bool:
    """Take or renew the sending lease of ``destination`` for ``holder``; False when another holder has it.

    One atomic UPDATE (free, expired or already ours) or an INSERT for a destination never leased; two
    processes racing for a new destination meet at the primary key and one of them gets False.
    """
    now = now or datetime.now(UTC)
    t = hl7_delivery_leases
    expires = now + timedelta(seconds=ttl_s)
    try:
        with engine.begin() as conn:
            taken = conn.execute(
                update(t)
                .where(t.c.destination == destination, or_(t.c.holder == holder, t.c.expires_at < now))
                .values(holder=holder, expires_at=expires)
            ).rowcount
            if taken:
                return True
            exists = conn.execute(select(t.c.destination).where(t.c.destination == destination)).first()
            if exists is not None:
                return False
            conn.execute(insert(t).values(destination=destination, holder=holder, expires_at=expires))
            return True
    except IntegrityError:
        return False


def release_lease(engine: Engine, *, destination: str, holder: str) -> None:
    """Give the lease up (at shutdown), so another replica takes over at once."""
    t = hl7_delivery_leases
    with engine.begin() as conn:
        conn.execute(
            update(t)
            .where(t.c.destination == destination, t.c.holder == holder)
            .values(expires_at=datetime(1970, 1, 1, tzinfo=UTC))
        )


def parked_message_counts(engine: Engine) -> dict[str, int]:
    """Parked messages per destination: the figure to export as a gauge and alert on."""
    t = hl7_outbound_messages
    stmt = select(t.c.destination, func.count()).where(t.c.state == QueueState.PARKED.value).group_by(t.c.destination)
    with engine.connect() as conn:
        return {str(dest): int(n) for dest, n in conn.execute(stmt)}


#: The longest wait between two tries of a worker whose database is unavailable (seconds).
DB_RETRY_MAX_S = 5.0


class DeliveryWorker:
    """Drains one destination's queue through one :class:`MLLPSender`, one message at a time."""

    def __init__(
        self,
        queue: OutboundQueue,
        sender: MLLPSender,
        *,
        destination: str,
        policy: RetryPolicy | None = None,
        idle_poll: float = 1.0,
        batch_size: int = 64,
        lease_s: float = 30.0,
    ) -> None:
        self._queue = queue
        self._batch_size = batch_size
        self._lease_s = lease_s
        self._holder = f"{socket.gethostname()[:40]}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self._lease_until = 0.0  # monotonic time until which this worker may send
        self._sender = sender
        self._destination = destination
        self._policy = policy or RetryPolicy()
        self._idle_poll = idle_poll
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._stopping = False

    def notify(self) -> None:
        """Wake the worker after an enqueue (otherwise it polls every ``idle_poll`` seconds)."""
        self._wake.set()

    async def run_once(self) -> QueueState | None:
        """Send the due heads of up to ``batch_size`` orders, one in flight at a time, then record the
        outcomes in one transaction; returns the last outcome's state (None when nothing was due).

        The batch stops at the first message that is not delivered (the receiver or the connection is
        in trouble). A crash before the outcomes are recorded resends those messages with the same
        MSH-10, which receivers treat as duplicates (HL7 v2.5.1 2.10.1).
        """
        batch = await asyncio.to_thread(
            self._queue.next_due_batch, self._destination, self._batch_size, longest_wait_s=self._policy.max_delay
        )
        if not batch:
            return None
        results: list[tuple[OutboundMessage, SendOutcome]] = []
        for message in batch:
            if self._stopping:
                break
            if results and self._lease_until and time.monotonic() > self._lease_until - self._lease_s / 2:
                break  # renew the lease before sending more (a slow receiver must not outlive it)
            outcome = await self._sender.send(message.payload)
            results.append((message, outcome))
            if outcome.delivery is not Delivery.DELIVERED:
                break
        if not results:
            return None
        states = await asyncio.to_thread(self._queue.record_many, results, self._policy)
        return states[-1]

    async def _hold_lease(self) -> bool:
        started = time.monotonic()
        held = await asyncio.to_thread(
            hold_lease, self._queue.engine, destination=self._destination, holder=self._holder, ttl_s=self._lease_s
        )
        self._lease_until = started + self._lease_s if held else 0.0
        return held

    async def run(self) -> None:
        """Deliver until cancelled or stopped, while holding the destination's lease (other replicas wait).

        The database being unavailable (a PostgreSQL restart or failover) never ends the loop: the worker
        forgets its lease, waits (the retry policy's backoff, at most :data:`DB_RETRY_MAX_S`) and starts
        again. Messages sent whose outcomes could not be recorded are resent later with the same MSH-10
        (HL7 v2.5.1 2.10.1)."""
        failures = 0
        while not self._stopping:
            try:
                await self._step()
                failures = 0
            except SQLAlchemyError as exc:
                failures += 1
                self._lease_until = 0.0
                delay = min(DB_RETRY_MAX_S, self._policy.delay(failures))
                logger.warning(
                    "outbound queue database unavailable, will retry",
                    extra={"destination": self._destination, "error_class": type(exc).__name__, "delay_s": delay},
                )
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), timeout=delay)

    async def _step(self) -> None:
        """One turn of :meth:`run`: hold the lease, send a batch or wait for the next due message."""
        if not await self._hold_lease():
            await self._sender.close()  # another replica sends; keep no idle connection open
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=self._lease_s / 3)
            return
        if await self.run_once() is not None:
            return
        wakeup = await asyncio.to_thread(self._queue.next_wakeup, self._destination)
        delay = self._idle_poll
        if wakeup is not None:
            delay = max(0.0, min(delay, (wakeup - datetime.now(UTC)).total_seconds()))
        self._wake.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), timeout=delay)

    def start(self) -> asyncio.Task[None]:
        """Run in a background task."""
        self._task = asyncio.create_task(self.run(), name=f"hl7-delivery-{self._destination}")
        return self._task

    async def stop(self) -> None:
        """Cancel the task and close the connection; a message in flight is sent again after a restart."""
        if self._task is not None:
            # The flag ends the loop at its next step even when a cancellation is lost (Python 3.11's
            # asyncio.wait_for can swallow one that arrives as its inner await completes).
            self._stopping = True
            self._wake.set()
            while not self._task.done():
                self._task.cancel()
                await asyncio.wait({self._task}, timeout=0.5)
            with contextlib.suppress(asyncio.CancelledError):
                self._task.result()
            self._task = None
            self._stopping = False
        await self._sender.close()
        if self._lease_until:
            await asyncio.to_thread(
                release_lease, self._queue.engine, destination=self._destination, holder=self._holder
            )
            self._lease_until = 0.0
