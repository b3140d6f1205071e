"""Ports of reporting's use cases (structural types; the adapters implement them)."""

from __future__ import annotations

from typing import Protocol


class OutboxNotifier(Protocol):
    """Wakes the transactional outbox's relay after a commit that wrote events (``radcds.adapters.db.outbox``)."""

    def notify(self) -> None:
        """Events were committed: publish them now or soon."""
