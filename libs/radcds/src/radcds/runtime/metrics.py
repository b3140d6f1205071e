"""Prometheus metrics, one registry per service instance (built in the composition root)."""

from __future__ import annotations

from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Histogram


@dataclass
class ServiceMetrics:
    """Counters and histograms every service exposes at ``/metrics``."""

    registry: CollectorRegistry = field(default_factory=CollectorRegistry)

    def __post_init__(self) -> None:
        self.events_consumed = Counter(
            "radcds_events_consumed",
            "Kafka records handled, by topic and outcome",
            ["topic", "outcome"],
            registry=self.registry,
        )
        self.handler_seconds = Histogram(
            "radcds_event_handler_seconds",
            "Time spent in an event handler",
            ["topic"],
            registry=self.registry,
        )
