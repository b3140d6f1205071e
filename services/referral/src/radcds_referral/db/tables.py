"""Tables of the referral service (SQLAlchemy Core). referral's own migration chain creates them, with the kernel's
idempotency and outbox tables, in referral's own database."""

from __future__ import annotations

from sqlalchemy import Column, DateTime, MetaData, PrimaryKeyConstraint, String, Table, Text

metadata = MetaData()

#: One row per order evaluated by referral: the PAMA consultation (Argonaut pama-rating-consult-id).
cds_consultations = Table(
    "cds_consultations",
    metadata,
    Column("consultation_id", String(64), primary_key=True),
    Column("service_id", String(64), nullable=False),
    Column("hook", String(32), nullable=False),
    Column("hook_instance", String(64), nullable=False, index=True),
    Column("order_id", String(128), nullable=False),
    Column("rule_id", String(64), nullable=False, index=True),
    Column("rule_version", String(16), nullable=False),
    Column("rating", String(32), nullable=False),
    Column("card_uuid", String(64), nullable=True, index=True),
    Column("event_payload", Text, nullable=False),
    #: Written until the shared chain's migration 0008; the event now goes through ``event_outbox`` (kept for old
    #: rows).
    Column("published_at", DateTime(timezone=True), nullable=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
)

#: CDS Hooks feedback (CDS Hooks 2.0 "Feedback"), stored once per card, outcome and timestamp.
cds_feedback = Table(
    "cds_feedback",
    metadata,
    Column("service_id", String(64), nullable=False),
    Column("card_uuid", String(64), nullable=False),
    Column("outcome", String(16), nullable=False),
    Column("outcome_timestamp", String(40), nullable=False),
    Column("accepted_suggestions", Text, nullable=False, default="[]"),
    Column("override_reason_code", String(64), nullable=True),
    Column("received_at", DateTime(timezone=True), nullable=False),
    PrimaryKeyConstraint("card_uuid", "outcome", "outcome_timestamp"),
)
