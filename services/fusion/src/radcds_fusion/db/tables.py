"""Tables of the fusion service (SQLAlchemy Core). fusion's own migration chain creates them, with the kernel's
idempotency and outbox tables, in fusion's own database."""

from __future__ import annotations

from sqlalchemy import JSON, Column, Date, DateTime, Index, Integer, MetaData, String, Table

metadata = MetaData()

#: Measured findings fusion has seen, per patient and study: the priors of later studies.
fusion_findings = Table(
    "fusion_findings",
    metadata,
    #: Deterministic: the source (findings event or SR) and the finding's place in it, so a redelivery rewrites.
    Column("id", String(200), primary_key=True),
    Column("patient_id", String(128), nullable=False),
    Column("study_uid", String(64), nullable=False),
    Column("study_date", Date, nullable=False),
    Column("code", String(64), nullable=False),
    Column("data", JSON, nullable=False),
    Index("ix_fusion_findings_patient", "patient_id", "study_date"),
    Index("ix_fusion_findings_study", "study_uid"),
)

#: Follow-up recommendations and their state (FHIR ServiceRequest, intent proposal).
fusion_recommendations = Table(
    "fusion_recommendations",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("patient_id", String(128), nullable=False),
    #: The identifier the EHR knows the patient by (MRN): referral's patient-view finds recommendations by it.
    Column("patient_identifier", String(128), nullable=True),
    #: The EHR's FHIR Patient id, when fusion found the patient in the EHR (CDS Hooks orders name it): fusion_0003.
    Column("ehr_patient_id", String(128), nullable=True),
    Column("state", String(16), nullable=False),
    Column("due_by", Date, nullable=False),
    Column("data", JSON, nullable=False),
    #: Incremented on every change (optimistic concurrency, FHIR versionId).
    Column("version", Integer, nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Index("ix_fusion_recommendations_patient", "patient_id"),
    Index("ix_fusion_recommendations_identifier", "patient_identifier"),
    Index("ix_fusion_recommendations_ehr_patient", "ehr_patient_id"),
    Index("ix_fusion_recommendations_state_due", "state", "due_by"),
)

#: The latest assessment of each study (its payload as published).
fusion_assessments = Table(
    "fusion_assessments",
    metadata,
    Column("study_uid", String(64), primary_key=True),
    Column("patient_id", String(128), nullable=False),
    Column("version", Integer, nullable=False),
    Column("payload", JSON, nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)
