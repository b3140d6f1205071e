"""Tables of the HL7 v2 layer (migration 0005): the outbound ORU queue and the inbound duplicate log."""

from __future__ import annotations

from sqlalchemy import Column, DateTime, Index, Integer, PrimaryKeyConstraint, String, Table, Text, UniqueConstraint

from radcds.adapters.db.tables import metadata

#: Outbound HL7 v2 messages, one row per message per destination. ``id`` orders the queue; a
#: message is sent only when no earlier message of the same order (``order_key``) to the same
#: destination is still waiting, so P always goes before F. ``control_id`` (MSH-10) is fixed at
#: enqueue and ``payload`` is sent unchanged on every attempt.
hl7_outbound_messages = Table(
    "hl7_outbound_messages",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("destination", String(255), nullable=False),
    Column("order_key", String(255), nullable=False),
    Column("control_id", String(20), nullable=False),
    Column("message_type", String(16), nullable=False),
    Column("result_status", String(1), nullable=False, default=""),
    Column("payload", Text, nullable=False),
    Column("state", String(16), nullable=False),
    Column("attempts", Integer, nullable=False, default=0),
    Column("next_attempt_at", DateTime(timezone=True), nullable=False),
    Column("last_ack_code", String(2), nullable=True),
    Column("last_error", String(255), nullable=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Column("delivered_at", DateTime(timezone=True), nullable=True),
    UniqueConstraint("destination", "control_id", name="uq_hl7_outbound_destination_control_id"),
)
Index("ix_hl7_outbound_pending", hl7_outbound_messages.c.destination, hl7_outbound_messages.c.state)
Index("ix_hl7_outbound_order", hl7_outbound_messages.c.destination, hl7_outbound_messages.c.order_key)

#: Accepted inbound messages by sender (MSH-3|MSH-4) and MSH-10, for duplicate detection.
hl7_inbound_messages = Table(
    "hl7_inbound_messages",
    metadata,
    Column("sender", String(255), nullable=False),
    Column("control_id", String(199), nullable=False),
    Column("accepted_at", DateTime(timezone=True), nullable=False),
    PrimaryKeyConstraint("sender", "control_id"),
)

#: Which process may send to a destination (migration 0007). Several replicas of the reporting service
#: share one queue; only the lease holder sends, so one message is in flight per destination and an
#: order's messages keep their order. A holder that dies loses the lease when ``expires_at`` passes.
hl7_delivery_leases = Table(
    "hl7_delivery_leases",
    metadata,
    Column("destination", String(255), primary_key=True),
    Column("holder", String(64), nullable=False),
    Column("expires_at", DateTime(timezone=True), nullable=False),
)
