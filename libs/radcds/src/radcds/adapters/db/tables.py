"""Tables of every radcds service (SQLAlchemy Core). Alembic migrations create them."""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Column,
    Connection,
    DateTime,
    ForeignKey,
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
    #: Written until migration 0008; the event now goes through ``event_outbox`` (kept for old rows).
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

# --- Imaging: QIDO-RS attributes and study assembly (migration 0003) ---

#: QIDO-RS (PS3.18 10.6) finds patients, studies and series by PatientID on ``dicom_instances``.
Index("ix_dicom_instances_patient_id", dicom_instances.c.patient_id)

#: Header attributes of each stored instance that QIDO-RS matches and returns and ImagingStudy maps
#: (PS3.3 C.7.1.1 Patient, C.7.2.1 General Study, C.7.3.1 General Series, C.7.6.1 General Image,
#: C.7.6.3 Image Pixel). Text columns hold the value as read ("" when absent).
dicom_instance_attributes = Table(
    "dicom_instance_attributes",
    metadata,
    Column(
        "sop_instance_uid",
        String(64),
        ForeignKey("dicom_instances.sop_instance_uid", ondelete="CASCADE"),
        primary_key=True,
    ),
    Column("issuer_of_patient_id", String(64), nullable=False, default=""),
    Column("patient_name", String(324), nullable=False, default=""),
    Column("patient_birth_date", String(8), nullable=False, default=""),
    Column("patient_sex", String(16), nullable=False, default=""),
    Column("study_date", String(8), nullable=False, default="", index=True),
    Column("study_time", String(16), nullable=False, default=""),
    Column("timezone_offset_from_utc", String(16), nullable=False, default=""),
    Column("study_id", String(16), nullable=False, default=""),
    Column("study_description", String(64), nullable=False, default=""),
    Column("referring_physician_name", String(324), nullable=False, default=""),
    Column("procedure_codes", JSON, nullable=False, default=list),
    Column("series_number", Integer, nullable=True),
    Column("series_description", String(64), nullable=False, default=""),
    Column("series_date", String(8), nullable=False, default=""),
    Column("series_time", String(16), nullable=False, default=""),
    Column("body_part_examined", String(16), nullable=False, default=""),
    Column("laterality", String(16), nullable=False, default=""),
    Column("instance_number", Integer, nullable=True),
    Column("number_of_frames", Integer, nullable=True),
    Column("rows", Integer, nullable=True),
    Column("columns", Integer, nullable=True),
    Column("bits_allocated", Integer, nullable=True),
)

#: Study assembly: one row per study, touched by every newly stored instance. A study is
#: announced once no instance arrived for the quiet period; ``change_seq`` counts the stored
#: instances noted and ``announced_seq`` is its value at the last announcement.
imaging_studies_assembly = Table(
    "imaging_studies_assembly",
    metadata,
    Column("study_instance_uid", String(64), primary_key=True),
    Column("first_received_at", DateTime(timezone=True), nullable=False),
    Column("last_received_at", DateTime(timezone=True), nullable=False, index=True),
    Column("change_seq", Integer, nullable=False, default=1),
    Column("announced_seq", Integer, nullable=True),
    Column("announced_at", DateTime(timezone=True), nullable=True),
    Column("announced_instance_count", Integer, nullable=False, default=0),
    Column("version", Integer, nullable=False, default=0),
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
