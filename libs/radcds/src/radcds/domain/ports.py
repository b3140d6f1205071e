"""Ports the services' handlers depend on; adapters implement them (hexagonal architecture)."""

from __future__ import annotations

from typing import Any, Protocol

from radcds.domain.events import EventKind


class EventPublisher(Protocol):
    """Publish one event keyed by its subject and wait for the broker's acknowledgement."""

    def publish(self, kind: EventKind, payload: dict[str, Any], *, event_id: str, subject: str) -> None:
        """Send ``payload`` as an event of ``kind`` with a stable ``event_id``."""
