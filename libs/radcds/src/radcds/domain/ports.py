"""Ports the services' handlers depend on; adapters implement them (hexagonal architecture)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from radcds.domain.events import EventKind


class EventPublisher(Protocol):
    """Publish one event keyed by its subject and wait for the broker's acknowledgement."""

    def publish(self, kind: EventKind, payload: dict[str, Any], *, event_id: str, subject: str) -> None:
        """Send ``payload`` as an event of ``kind`` with a stable ``event_id``."""


class BatchEventPublisher(EventPublisher, Protocol):
    """An :class:`EventPublisher` that can also send many events and wait for them together."""

    def publish_many(
        self,
        kind: EventKind,
        items: list[tuple[dict[str, Any], str, str]],
        *,
        trace_carriers: Sequence[Mapping[str, str]] | None = None,
    ) -> list[str]:
        """Send ``(payload, event_id, subject)`` items; return the ids the broker acknowledged, in order,
        stopping at the first failure. ``trace_carriers`` (one W3C trace-context carrier per item) put each
        event in the trace it was written in (an outbox publishes later, from another thread)."""
