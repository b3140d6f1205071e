"""At-least-once Kafka consumer loop with bounded retries, backoff and a dead-letter topic.

- Offsets are committed only after the handler succeeded (or the record was dead-lettered),
  so a crash redelivers; handlers must be idempotent.
- :class:`RetryableError` means a dependency is unavailable: the record is retried with capped
  backoff until it succeeds or the service stops, and is never dead-lettered (nothing is lost).
  While it waits, the consumer pauses its partitions and keeps polling, so an outage longer
  than ``max.poll.interval.ms`` does not evict it from the group; if a rebalance takes the
  partition away meanwhile, the uncommitted record goes to the new owner.
- Any other handler error is retried ``max_retries`` times, then the record goes to
  ``<topic>.dlt`` with headers naming the original topic, partition, offset and error.
- A record that is not a valid radcds CloudEvent goes to the dead-letter topic at once.
- A retriable client error (the broker restarting or unreachable: ``KafkaConnectionError``,
  ``KafkaTimeoutError``, ``NodeNotReadyError`` ...) raised while polling, dead-lettering or committing
  never ends the loop: the unprocessed records of the batch are rewound and the loop waits with the
  policy's backoff, so a broker outage of any length delays records and loses none.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from kafka import KafkaConsumer
from kafka.consumer.fetcher import ConsumerRecord
from kafka.errors import CommitFailedError, IllegalStateError, KafkaError
from kafka.structs import OffsetAndMetadata
from opentelemetry import trace
from opentelemetry.trace import SpanKind, Status, StatusCode

from radcds.adapters.kafka.codec import DecodedEvent, InvalidEvent, decode
from radcds.adapters.kafka.publisher import KafkaEventPublisher
from radcds.domain.events import dead_letter_topic
from radcds.runtime.metrics import ServiceMetrics
from radcds.runtime.settings import ServiceSettings
from radcds.runtime.telemetry import attach, detach, extract_context

log = logging.getLogger(__name__)
tracer = trace.get_tracer("radcds.kafka")

#: Headers added to a dead-lettered record (documented in docs/architecture.md).
DLT_TOPIC = "radcds-dlt-original-topic"
DLT_PARTITION = "radcds-dlt-original-partition"
DLT_OFFSET = "radcds-dlt-original-offset"
DLT_GROUP = "radcds-dlt-consumer-group"
DLT_ERROR = "radcds-dlt-error"
DLT_ERROR_CLASS = "radcds-dlt-error-class"
DLT_TIME = "radcds-dlt-time"


class RetryableError(Exception):
    """A dependency is unavailable: retry later, never dead-letter."""


EventHandler = Callable[[DecodedEvent], None]


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Bounded retries with exponential backoff."""

    max_retries: int = 3
    initial_s: float = 0.2
    max_s: float = 10.0

    def delay(self, attempt: int) -> float:
        """Backoff before retry number ``attempt`` (1-based)."""
        return float(min(self.max_s, self.initial_s * 2 ** (attempt - 1)))


def build_consumer(
    bootstrap_servers: str,
    *,
    group_id: str,
    client_id: str,
    topics: list[str],
    options: dict[str, Any] | None = None,
) -> KafkaConsumer:
    """A consumer that never auto-commits and starts from the earliest offset of a new group."""
    consumer = KafkaConsumer(
        **(options or {}),
        bootstrap_servers=bootstrap_servers.split(","),
        group_id=group_id,
        client_id=client_id,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        session_timeout_ms=10_000,
        heartbeat_interval_ms=1_000,
        max_poll_records=50,
        max_poll_interval_ms=600_000,
        # A consumer that joins its group before it has a subscribed topic's metadata is assigned no partition of
        # it ("No partition metadata for topic ...") and rebalances only at the next metadata refresh: 5 minutes
        # by default, minutes of nothing consumed after a start (seen in the fault suite's CI). 5 s bounds that.
        metadata_max_age_ms=5_000,
    )
    consumer.subscribe(topics)
    return consumer


def consumer_for(
    settings: ServiceSettings,
    *,
    service: str,
    group_id: str,
    topics: list[str],
    handler: EventHandler,
    dead_letters: KafkaEventPublisher,
    metrics: ServiceMetrics,
) -> EventConsumer:
    """An :class:`EventConsumer` configured from a service's settings."""
    return EventConsumer(
        build_consumer(
            settings.kafka_bootstrap_servers,
            group_id=group_id,
            client_id=f"radcds-{service}",
            topics=topics,
            options=settings.kafka_client_options(),
        ),
        handler,
        dead_letters,
        group_id=group_id,
        policy=RetryPolicy(
            settings.consumer_max_retries, settings.consumer_backoff_initial_s, settings.consumer_backoff_max_s
        ),
        metrics=metrics,
    )


class EventConsumer:
    """Runs ``handler`` for each record of the subscribed topics, at least once."""

    def __init__(
        self,
        consumer: KafkaConsumer,
        handler: EventHandler,
        dead_letters: KafkaEventPublisher,
        *,
        group_id: str,
        policy: RetryPolicy,
        metrics: ServiceMetrics,
    ) -> None:
        self._consumer = consumer
        self._handler = handler
        self._dead_letters = dead_letters
        self._group_id = group_id
        self._policy = policy
        self._metrics = metrics
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.healthy = True

    def start(self) -> None:
        """Run the loop in a daemon thread."""
        self._thread = threading.Thread(target=self._run, name=f"consumer-{self._group_id}", daemon=True)
        self._thread.start()

    def stop(self, timeout_s: float = 15.0) -> None:
        """Ask the loop to stop, wait for it, and close the consumer (uncommitted records come back)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout_s)

    @property
    def alive(self) -> bool:
        """True while the loop thread runs."""
        return self._thread is not None and self._thread.is_alive()

    def _run(self) -> None:
        outages = 0
        try:
            while not self._stop.is_set():
                try:
                    stopped = self._poll_once()
                except KafkaError as exc:
                    if not exc.retriable:
                        raise
                    outages += 1
                    delay = self._policy.delay(min(outages, 16))
                    log.warning(
                        "kafka unavailable, will retry",
                        extra={"group": self._group_id, "error_class": type(exc).__name__, "delay_s": delay},
                    )
                    if self._stop.wait(delay):
                        return
                    continue
                outages = 0
                if stopped:
                    return
        except Exception:
            self.healthy = False
            log.exception("consumer loop failed", extra={"group": self._group_id})
            raise
        finally:
            self._consumer.close(autocommit=False)

    def _poll_once(self) -> bool:
        """Poll one batch and handle it record by record; True when asked to stop.

        On a retriable :class:`KafkaError` every partition of the batch is rewound to its first record
        not yet handled before the error propagates, so nothing polled is skipped."""
        batches = self._consumer.poll(timeout_ms=500)
        pending = {tp: records[0].offset for tp, records in batches.items() if records}
        try:
            for tp, records in batches.items():
                for record in records:
                    if self._stop.is_set():
                        return True
                    if not self._process(record):
                        # stopping mid-retry: rewind so the record is read again later
                        self._consumer.seek(tp, record.offset)
                        return True
                    pending[tp] = record.offset + 1
                    self._consumer.commit({tp: OffsetAndMetadata(record.offset + 1, None, -1)})
        except (CommitFailedError, IllegalStateError) as exc:
            # A rebalance happened while a record waited for a dependency: the partition's
            # owner (maybe us again) reads from the last committed offset. Drop this batch.
            log.warning("commit failed after a rebalance", extra={"error_class": type(exc).__name__})
        except KafkaError as exc:
            if exc.retriable:
                self._rewind(pending)
            raise
        return False

    def _rewind(self, pending: dict[Any, int]) -> None:
        """Seek each still-assigned partition back to its first record not yet handled."""
        assigned = set(self._consumer.assignment())
        for tp, offset in pending.items():
            if tp in assigned:
                self._consumer.seek(tp, offset)

    def _process(self, record: ConsumerRecord) -> bool:
        """Handle one record; False only when asked to stop before it was handled."""
        headers = list(record.headers or [])
        ctx = extract_context(headers)
        token = attach(ctx)
        try:
            with tracer.start_as_current_span(
                f"{record.topic} process",
                kind=SpanKind.CONSUMER,
                attributes={
                    "messaging.system": "kafka",
                    "messaging.operation.type": "process",
                    "messaging.destination.name": record.topic,
                    "messaging.consumer.group.name": self._group_id,
                    "messaging.destination.partition.id": str(record.partition),
                    "messaging.kafka.offset": record.offset,
                },
            ) as span:
                try:
                    event = decode(headers, record.key, record.value)
                except InvalidEvent as exc:
                    span.set_status(Status(StatusCode.ERROR, "invalid event"))
                    self._dead_letter(record, exc)
                    return True
                span.set_attribute("messaging.message.id", event.id)
                return self._handle_with_retries(record, event, span)
        finally:
            detach(token)

    def _handle_with_retries(self, record: ConsumerRecord, event: DecodedEvent, span: trace.Span) -> bool:
        attempt = 0
        unavailable = 0
        while True:
            started = time.perf_counter()
            try:
                self._handler(event)
            except RetryableError as exc:
                unavailable += 1
                delay = self._policy.delay(min(unavailable, 16))
                log.warning(
                    "dependency unavailable, will retry",
                    extra={"event_id": event.id, "topic": record.topic, "error": str(exc), "delay_s": delay},
                )
                self._metrics.events_consumed.labels(record.topic, "retry").inc()
                if self._wait_in_group(delay):
                    return False
                continue
            except Exception as exc:
                attempt += 1
                self._metrics.events_consumed.labels(record.topic, "error").inc()
                if attempt > self._policy.max_retries:
                    span.record_exception(exc)
                    span.set_status(Status(StatusCode.ERROR, type(exc).__name__))
                    self._dead_letter(record, exc)
                    return True
                log.warning(
                    "handler failed, retrying",
                    extra={
                        "event_id": event.id,
                        "topic": record.topic,
                        "attempt": attempt,
                        "error_class": type(exc).__name__,
                    },
                )
                if self._stop.wait(self._policy.delay(attempt)):
                    return False
                continue
            self._metrics.handler_seconds.labels(record.topic).observe(time.perf_counter() - started)
            self._metrics.events_consumed.labels(record.topic, "ok").inc()
            return True

    def _wait_in_group(self, delay_s: float) -> bool:
        """Wait ``delay_s`` while polling with every partition paused (keeps group membership);
        True when asked to stop. Records of partitions assigned meanwhile are rewound, never skipped."""
        deadline = time.monotonic() + delay_s
        paused = set(self._consumer.assignment())
        self._consumer.pause(*paused)
        try:
            while (remaining := deadline - time.monotonic()) > 0:
                if self._stop.wait(min(remaining, 1.0)):
                    return True
                for tp, records in self._consumer.poll(timeout_ms=0).items():
                    self._consumer.seek(tp, records[0].offset)
            return False
        finally:
            self._consumer.resume(*(paused & set(self._consumer.assignment())))

    def _dead_letter(self, record: ConsumerRecord, exc: BaseException) -> None:
        topic = dead_letter_topic(record.topic)
        headers = [
            *(record.headers or []),
            (DLT_TOPIC, record.topic.encode()),
            (DLT_PARTITION, str(record.partition).encode()),
            (DLT_OFFSET, str(record.offset).encode()),
            (DLT_GROUP, self._group_id.encode()),
            (DLT_ERROR, str(exc)[:1000].encode("utf-8", "replace")),
            (DLT_ERROR_CLASS, type(exc).__name__.encode()),
            (DLT_TIME, datetime.now(UTC).isoformat().encode()),
        ]
        self._dead_letters.send_raw(topic, key=record.key, value=record.value, headers=headers)
        self._metrics.events_consumed.labels(record.topic, "dead-lettered").inc()
        log.error(
            "record dead-lettered",
            extra={
                "topic": record.topic,
                "partition": record.partition,
                "offset": record.offset,
                "dead_letter_topic": topic,
                "error_class": type(exc).__name__,
            },
        )
