"""Ports the services' handlers depend on; adapters implement them (hexagonal architecture)."""

from __future__ import annotations

from typing import Any, Protocol

from radcds.domain.events import EventKind


class EventPublisher(Protocol):
    """Publish one event keyed by its subject and wait for the broker's acknowledgement."""

    def publish(self, kind: EventKind, payload: dict[str, Any], *, event_id: str, subject: str) -> None:
        """Send ``payload`` as an event of ``kind`` with a stable ``event_id``."""


class BatchEventPublisher(EventPublisher, Protocol):
    """An :class:`EventPublisher` that can also send many events and wait for them together."""

    def publish_many(self, kind: EventKind, items: list[tuple[dict[str, Any], str, str]]) -> list[str]:
        """Send ``(payload, event_id, subject)`` items; return the ids the broker acknowledged, in order,
        stopping at the first failure."""
