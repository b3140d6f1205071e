"""The :class:`~radcds.ops.replay.DeadLetterLog` port on Kafka, with kafka-python (the client the kernel uses).

The dead-letter topic is read by manual assignment (no rebalance, no other member needed) under the replay job's
consumer group, whose offsets are committed to Kafka like any group's (``kafka-consumer-groups.sh --describe``
shows them). Records go back through the kernel's idempotent ``acks=all`` producer.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

from kafka import KafkaConsumer, KafkaProducer
from kafka.structs import OffsetAndMetadata, TopicPartition

from radcds.adapters.kafka.publisher import build_producer
from radcds.ops.replay import DeadLetter


class KafkaDeadLetterLog:
    """One dead-letter topic on Kafka, read and committed as consumer group ``group``."""

    def __init__(
        self,
        consumer: KafkaConsumer,
        producer: KafkaProducer,
        *,
        topic: str,
        timeout_s: float = 30.0,
    ) -> None:
        self._consumer = consumer
        self._producer = producer
        self._topic = topic
        self._timeout_s = timeout_s

    @classmethod
    def connect(
        cls, bootstrap_servers: str, *, topic: str, group: str, options: dict[str, Any], timeout_s: float = 30.0
    ) -> KafkaDeadLetterLog:
        """Consumer and producer for ``topic`` with the connection ``options`` of the kernel's settings."""
        consumer = KafkaConsumer(
            **options,
            bootstrap_servers=bootstrap_servers.split(","),
            group_id=group,
            client_id="radcds-replay",
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            request_timeout_ms=int(timeout_s * 1000),
        )
        producer = build_producer(
            bootstrap_servers, client_id="radcds-replay", request_timeout_ms=int(timeout_s * 1000), options=options
        )
        return cls(consumer, producer, topic=topic, timeout_s=timeout_s)

    def _tp(self, partition: int) -> TopicPartition:
        return TopicPartition(self._topic, partition)

    def partitions(self) -> list[int]:
        """The partitions of the dead-letter topic (empty when the topic does not exist)."""
        return sorted(self._consumer.partitions_for_topic(self._topic))

    def committed(self, partition: int) -> int | None:
        """The group's committed offset, None when it never committed."""
        offset = self._consumer.committed(self._tp(partition))
        return None if offset is None or offset < 0 else int(offset)

    def beginning(self, partition: int) -> int:
        """The first offset still held."""
        return int(self._consumer.beginning_offsets([self._tp(partition)])[self._tp(partition)])

    def end(self, partition: int) -> int:
        """The offset the next dead letter will get."""
        return int(self._consumer.end_offsets([self._tp(partition)])[self._tp(partition)])

    def offset_at(self, partition: int, timestamp_ms: int) -> int | None:
        """The first offset with a record time at or after ``timestamp_ms`` (Kafka's ListOffsets by time)."""
        found = self._consumer.offsets_for_times({self._tp(partition): timestamp_ms}).get(self._tp(partition))
        return None if found is None else int(found.offset)

    def read(self, partition: int, start: int, end: int) -> Iterator[DeadLetter]:
        """The records with ``start <= offset < end``; TimeoutError when the broker gives none for ``timeout_s``."""
        tp = self._tp(partition)
        self._consumer.assign([tp])
        self._consumer.seek(tp, start)
        idle_since = time.monotonic()
        while self._consumer.position(tp) < end:
            batch = self._consumer.poll(timeout_ms=1000).get(tp, [])
            if not batch:
                if time.monotonic() - idle_since > self._timeout_s:
                    raise TimeoutError(f"{self._topic}[{partition}]: no record at offset {self._consumer.position(tp)}")
                continue
            idle_since = time.monotonic()
            for record in batch:
                if record.offset >= end:
                    return
                yield DeadLetter(
                    partition=partition,
                    offset=record.offset,
                    timestamp_ms=record.timestamp,
                    key=record.key,
                    value=record.value,
                    headers=tuple((k, v or b"") for k, v in (record.headers or [])),
                )

    def send(self, topic: str, *, key: bytes | None, value: bytes | None, headers: list[tuple[str, bytes]]) -> None:
        """Produce one record and wait for the broker's acknowledgement."""
        self._producer.send(topic, key=key, value=value, headers=headers).get(timeout=self._timeout_s)

    def commit(self, partition: int, next_offset: int) -> None:
        """Commit the group's offset for ``partition``."""
        self._consumer.commit({self._tp(partition): OffsetAndMetadata(next_offset, "", -1)})

    def close(self) -> None:
        """Flush the producer and leave the broker."""
        self._producer.flush(timeout=self._timeout_s)
        self._producer.close(timeout=self._timeout_s)
        self._consumer.close(autocommit=False)
