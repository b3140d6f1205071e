"""Tables of every radcds service (SQLAlchemy Core). Alembic migrations create them."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
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

#: DICOM instances stored by imaging (PS3.3 C.12.1 SOP Common, C.7.2.1 General Study).
dicom_instances = Table(
    "dicom_instances",
    metadata,
    Column("sop_instance_uid", String(64), primary_key=True),
    Column("study_instance_uid", String(64), nullable=False, index=True),
    Column("series_instance_uid", String(64), nullable=False, index=True),
    Column("sop_class_uid", String(64), nullable=False),
    Column("transfer_syntax_uid", String(64), nullable=False),
    Column("modality", String(16), nullable=False, default=""),
    Column("patient_id", String(64), nullable=False, default=""),
    Column("accession_number", String(16), nullable=False, default="", index=True),
    Column("storage_key", String(512), nullable=False),
    Column("size_bytes", BigInteger, nullable=False),
    Column("sha256", String(64), nullable=False),
    Column("received_at", DateTime(timezone=True), nullable=False),
)

#: FHIR R4 resources served by reporting, stored as JSON with search columns.
fhir_resources = Table(
    "fhir_resources",
    metadata,
    Column("resource_type", String(64), nullable=False),
    Column("id", String(64), nullable=False),
    Column("version_id", Integer, nullable=False),
    Column("last_updated", DateTime(timezone=True), nullable=False),
    Column("subject", String(128), nullable=False, default="", index=True),
    Column("study_instance_uid", String(64), nullable=False, default="", index=True),
    Column("content", Text, nullable=False),
    PrimaryKeyConstraint("resource_type", "id"),
)

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
