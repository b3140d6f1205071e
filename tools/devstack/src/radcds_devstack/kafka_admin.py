"""Topic administration: the topics radcds needs, with their partition counts."""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass

from kafka.admin import KafkaAdminClient, NewTopic
from kafka.errors import KafkaError, TopicAlreadyExistsError

from radcds.domain.events import EVENT_KINDS, dead_letter_topic


@dataclass(frozen=True, slots=True)
class TopicSpec:
    """A topic and its partition count (replication factor comes from the cluster)."""

    name: str
    partitions: int


#: Event topics are keyed by Study Instance UID; 6 partitions let up to 6 consumers share a
#: group. Dead-letter topics are low volume and keep one partition so their order is total.
EVENT_TOPIC_PARTITIONS = 6
DEAD_LETTER_PARTITIONS = 1


def radcds_topics() -> list[TopicSpec]:
    """Every topic radcds uses."""
    topics: list[TopicSpec] = []
    for kind in EVENT_KINDS.values():
        if any(t.name == kind.topic for t in topics):
            continue  # several event kinds may share a topic
        topics.append(TopicSpec(kind.topic, EVENT_TOPIC_PARTITIONS))
        topics.append(TopicSpec(dead_letter_topic(kind.topic), DEAD_LETTER_PARTITIONS))
    return topics


def wait_for_cluster(bootstrap_servers: str, *, timeout_s: float = 90.0) -> None:
    """Block until the broker answers a DescribeCluster request (the port opens earlier)."""
    deadline = time.monotonic() + timeout_s
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            admin = KafkaAdminClient(bootstrap_servers=bootstrap_servers.split(","), request_timeout_ms=5000)
            try:
                admin.describe_cluster()
                return
            finally:
                admin.close()
        except (KafkaError, OSError, ValueError) as exc:
            last = exc
            time.sleep(1.0)
    raise TimeoutError(f"Kafka at {bootstrap_servers} not ready after {timeout_s:.0f}s: {last}")


def ensure_topics(bootstrap_servers: str, topics: list[TopicSpec], *, replication_factor: int = 1) -> None:
    """Create the topics that do not exist yet."""
    admin = KafkaAdminClient(bootstrap_servers=bootstrap_servers.split(","), request_timeout_ms=15000)
    try:
        existing = set(admin.list_topics())
        missing = [
            NewTopic(t.name, num_partitions=t.partitions, replication_factor=replication_factor)
            for t in topics
            if t.name not in existing
        ]
        if missing:
            with contextlib.suppress(TopicAlreadyExistsError):
                admin.create_topics(missing, timeout_ms=30000)
    finally:
        admin.close()
