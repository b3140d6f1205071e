"""Topic administration: the topics radcds needs, with their partition counts and configs.

Every topic stamps its records with the broker's clock (``message.timestamp.type=LogAppendTime``, Kafka topic
configs): a producer whose host clock jumped ahead would otherwise be refused (Kafka 4 rejects a CreateTime more
than ``log.message.timestamp.after.max.ms``, 1 h by default, in the future; the fault suite's clock-jump scenario
met it) and could move time-based retention. The Helm chart's ``topics.config`` gives them the same.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Mapping
from dataclasses import dataclass, field

from kafka.admin import ConfigResource, ConfigResourceType, KafkaAdminClient, NewTopic
from kafka.errors import KafkaError, TopicAlreadyExistsError

from radcds.domain.events import EVENT_KINDS, dead_letter_topic

#: The configs of every radcds topic (see the module docstring).
TOPIC_CONFIG: Mapping[str, str] = {"message.timestamp.type": "LogAppendTime"}


@dataclass(frozen=True, slots=True)
class TopicSpec:
    """A topic, its partition count and its topic configs (replication factor comes from the cluster)."""

    name: str
    partitions: int
    config: Mapping[str, str] = field(default_factory=lambda: dict(TOPIC_CONFIG))


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
    """Create the topics that do not exist yet, with their configs; give existing ones the configs too."""
    admin = KafkaAdminClient(bootstrap_servers=bootstrap_servers.split(","), request_timeout_ms=15000)
    try:
        existing = set(admin.list_topics())
        missing = [
            NewTopic(
                t.name,
                num_partitions=t.partitions,
                replication_factor=replication_factor,
                topic_configs=dict(t.config),
            )
            for t in topics
            if t.name not in existing
        ]
        if missing:
            with contextlib.suppress(TopicAlreadyExistsError):
                admin.create_topics(missing, timeout_ms=30000)
        # AlterConfigs sets a topic's whole dynamic config: radcds topics have only these.
        older = [ConfigResource(ConfigResourceType.TOPIC, t.name, configs=dict(t.config)) for t in topics
                 if t.name in existing and t.config]  # fmt: skip
        if older:
            admin.alter_configs(older)
    finally:
        admin.close()
