"""The shared kernel's tables (SQLAlchemy Core): idempotency records and the transactional outbox, which every
service with a database creates in its own database through its own migration chain (:func:`create_kernel_tables`).
Each service's other tables are in ``radcds_<service>.db.tables``."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    Connection,
    DateTime,
    Index,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
)

metadata = MetaData()

#: Processed CloudEvent ids, written in the same transaction as the handler's side effect.
processed_events = Table(
    "processed_events",
    metadata,
    Column("consumer_group", String(128), nullable=False),
    Column("event_id", String(128), nullable=False),
    Column("processed_at", DateTime(timezone=True), nullable=False),
    PrimaryKeyConstraint("consumer_group", "event_id"),
)

#: Transactional outbox: events written in the same transaction as the state they describe, then
#: published by :class:`radcds.adapters.db.outbox.OutboxRelay` in ``seq`` order (at least once).
event_outbox = Table(
    "event_outbox",
    metadata,
    Column("seq", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
    Column("event_id", String(128), nullable=False, unique=True),
    Column("event_type", String(128), nullable=False),
    Column("subject", String(128), nullable=False),
    Column("payload", Text, nullable=False),
    #: W3C trace context (traceparent/tracestate) of the transaction that wrote the event, as JSON.
    Column("trace_context", Text, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("published_at", DateTime(timezone=True), nullable=True),
    Index("ix_event_outbox_published_at", "published_at"),
)


#: Tables of the shared kernel that every service with its own migration chain creates in its own database.
KERNEL_TABLES = (processed_events, event_outbox)


def create_kernel_tables(conn: Connection) -> None:
    """Create the kernel's tables (idempotency records, transactional outbox) in the database of ``conn``, for
    a service's own migration chain (version 1 of the kernel tables; a later change ships its own step)."""
    for table in KERNEL_TABLES:
        table.create(conn, checkfirst=True)
