"""Processed-event records: the idempotency half of at-least-once delivery."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import Connection, insert, select

from radcds.adapters.db.tables import processed_events


def already_processed(conn: Connection, *, consumer_group: str, event_id: str) -> bool:
    """True if this group already handled ``event_id``."""
    row = conn.execute(
        select(processed_events.c.event_id).where(
            processed_events.c.consumer_group == consumer_group,
            processed_events.c.event_id == event_id,
        )
    ).first()
    return row is not None


def mark_processed(conn: Connection, *, consumer_group: str, event_id: str) -> None:
    """Record ``event_id`` in the caller's transaction (commits with the side effect)."""
    conn.execute(
        insert(processed_events).values(
            consumer_group=consumer_group, event_id=event_id, processed_at=datetime.now(UTC)
        )
    )
