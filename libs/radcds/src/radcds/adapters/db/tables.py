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
