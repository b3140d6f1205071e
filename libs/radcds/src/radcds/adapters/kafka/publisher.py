"""Publishing events to Kafka: the adapter behind the services' ``EventPublisher`` port."""

from __future__ import annotations

import logging
import socket
from collections.abc import Mapping, Sequence
from typing import Any

from kafka import KafkaProducer
from kafka.errors import KafkaError
from opentelemetry import propagate, trace
from opentelemetry.trace import SpanKind

from radcds.adapters.kafka import codec
from radcds.domain.events import EventKind
from radcds.runtime.settings import ServiceSettings
from radcds.runtime.telemetry import inject_headers

log = logging.getLogger(__name__)
tracer = trace.get_tracer("radcds.kafka")


def kafka_reachable(bootstrap_servers: str, *, timeout_s: float = 1.0) -> bool:
    """True when a TCP connection to any bootstrap broker succeeds (readiness probe)."""
    for server in bootstrap_servers.split(","):
        host, _, port = server.strip().rpartition(":")
        try:
            with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout_s):
                return True
        except OSError:
            continue
    return False


def build_producer(
    bootstrap_servers: str, *, client_id: str, request_timeout_ms: int, options: dict[str, Any] | None = None
) -> KafkaProducer:
    """An idempotent producer with ``acks=all`` (no duplicates from producer retries)."""
    return KafkaProducer(
        **(options or {}),
        bootstrap_servers=bootstrap_servers.split(","),
        client_id=client_id,
        acks="all",
        enable_idempotence=True,
        # publish_many's records wait up to 5 ms to share produce requests (a STOW-RS request of 35 instances:
        # one request per partition instead of one per record; imaging's CPU per request -6 %); publish() and
        # send_raw() flush, so a single event never waits.
        linger_ms=5,
        request_timeout_ms=request_timeout_ms,
        max_block_ms=request_timeout_ms,
    )


def publisher_for(settings: ServiceSettings, *, service: str, source: str) -> KafkaEventPublisher:
    """A :class:`KafkaEventPublisher` configured from a service's settings."""
    producer = build_producer(
        settings.kafka_bootstrap_servers,
        client_id=f"radcds-{service}",
        request_timeout_ms=settings.kafka_request_timeout_ms,
        options=settings.kafka_client_options(),
    )
    return KafkaEventPublisher(producer, source=source)


class KafkaEventPublisher:
    """Validates, encodes (CloudEvents binary mode) and sends events; waits for the broker ack."""

    def __init__(self, producer: KafkaProducer, *, source: str, timeout_s: float = 30.0) -> None:
        self._producer = producer
        self._source = source
        self._timeout_s = timeout_s

    def publish(self, kind: EventKind, payload: dict[str, Any], *, event_id: str, subject: str) -> None:
        """Send one event keyed by ``subject`` and block until Kafka has it."""
        message = codec.encode(kind, payload, event_id=event_id, source=self._source, subject=subject)
        with tracer.start_as_current_span(
            f"{kind.topic} publish",
            kind=SpanKind.PRODUCER,
            attributes=self._span_attributes(kind, event_id),
        ):
            headers = [(k, v) for k, v in message.headers.items()]
            inject_headers(headers)
            key = message.key.encode() if isinstance(message.key, str) else message.key
            future = self._producer.send(kind.topic, key=key, value=message.value, headers=headers)
            self._producer.flush(timeout=self._timeout_s)  # now, not after linger_ms
            meta = future.get(timeout=self._timeout_s)
            log.info(
                "event published",
                extra={
                    "event_id": event_id,
                    "event_type": kind.type,
                    "topic": kind.topic,
                    "partition": meta.partition,
                    "offset": meta.offset,
                },
            )

    def publish_many(
        self,
        kind: EventKind,
        items: list[tuple[dict[str, Any], str, str]],
        *,
        trace_carriers: Sequence[Mapping[str, str]] | None = None,
    ) -> list[str]:
        """Send ``(payload, event_id, subject)`` items, then wait for all acks; returns the acknowledged ids
        in order up to the first failure (the producer is idempotent and keeps per-partition order).

        With ``trace_carriers``, each event gets a PRODUCER span in the trace its carrier names."""
        futures = []
        for index, (payload, event_id, subject) in enumerate(items):
            message = codec.encode(kind, payload, event_id=event_id, source=self._source, subject=subject)
            headers = list(message.headers.items())
            key = message.key.encode() if isinstance(message.key, str) else message.key
            if trace_carriers is not None:
                parent = propagate.extract(dict(trace_carriers[index]))
                with tracer.start_as_current_span(
                    f"{kind.topic} publish",
                    context=parent,
                    kind=SpanKind.PRODUCER,
                    attributes=self._span_attributes(kind, event_id),
                ):
                    inject_headers(headers)
            else:
                inject_headers(headers)
            futures.append((event_id, self._producer.send(kind.topic, key=key, value=message.value, headers=headers)))
        self._producer.flush(timeout=self._timeout_s)
        acked: list[str] = []
        for event_id, future in futures:
            try:
                future.get(timeout=self._timeout_s)
            except Exception:
                log.warning("event not acknowledged", extra={"event_id": event_id, "event_type": kind.type})
                break
            acked.append(event_id)
        return acked

    @staticmethod
    def _span_attributes(kind: EventKind, event_id: str) -> dict[str, str]:
        """OpenTelemetry messaging semantic conventions for one published event."""
        return {
            "messaging.system": "kafka",
            "messaging.operation.type": "publish",
            "messaging.destination.name": kind.topic,
            "messaging.message.id": event_id,
            "cloudevents.event_type": kind.type,
        }

    def send_raw(self, topic: str, *, key: bytes | None, value: bytes | None, headers: list[tuple[str, bytes]]) -> None:
        """Send a record as it is (used for dead-lettering)."""
        future = self._producer.send(topic, key=key, value=value, headers=headers)
        self._producer.flush(timeout=self._timeout_s)
        future.get(timeout=self._timeout_s)

    def warm_up(self, topic: str) -> None:
        """Fetch metadata for ``topic`` now, so the first publish does not wait for it (best effort:
        with Kafka down the service still starts and reports not ready)."""
        try:
            self._producer.partitions_for(topic)
        except KafkaError as exc:
            log.warning("Kafka metadata not available yet", extra={"topic": topic, "error_class": type(exc).__name__})

    def close(self) -> None:
        """Flush and close the producer."""
        self._producer.flush(timeout=self._timeout_s)
        self._producer.close(timeout=self._timeout_s)
