"""Tables of the worklist service (SQLAlchemy Core). The worklist's own migration chain creates them, with the
kernel's idempotency and outbox tables, in its own database.

The worklist is a read model: it is built from the events of imaging, inference, fusion and reporting, and holds
only what it owns itself besides: reading locks, the radiologists' feedback on AI findings, and monitoring.
"""

from __future__ import annotations

from sqlalchemy import JSON, Boolean, Column, DateTime, Float, Index, Integer, MetaData, String, Table, Text

metadata = MetaData()

#: One row per study on the list (DICOM Study Instance UID), built from the events.
worklist_studies = Table(
    "worklist_studies",
    metadata,
    Column("study_uid", String(64), primary_key=True),
    Column("accession_number", String(64), nullable=False, default=""),
    #: DICOM Patient ID (MRN) and Patient's Name (PN, shown as "Family, Given").
    Column("patient_id", String(128), nullable=False, default=""),
    Column("patient_name", String(200), nullable=False, default=""),
    Column("modality", String(16), nullable=False, default=""),
    Column("body_part", String(64), nullable=False, default=""),
    Column("study_description", String(200), nullable=False, default=""),
    Column("study_date", String(8), nullable=False, default=""),
    #: When the worklist first heard of the study: "time waiting" counts from here.
    Column("received_at", DateTime(timezone=True), nullable=False),
    #: FHIR ServiceRequest.priority of the order (routine | urgent | asap | stat).
    Column("order_priority", String(16), nullable=False, default="routine"),
    Column("service_request_id", String(64), nullable=True),
    Column("report_id", String(64), nullable=True),
    #: FHIR DiagnosticReport.status ("" before reporting wrote one).
    Column("report_status", String(24), nullable=False, default=""),
    Column("report_version", String(16), nullable=False, default=""),
    Column("results_interpreter", String(256), nullable=False, default=""),
    #: A critical finding: since when, and the critical-result state ("" | notified | acknowledged | escalated).
    Column("critical", Boolean, nullable=False, default=False),
    Column("critical_since", DateTime(timezone=True), nullable=True),
    Column("critical_state", String(16), nullable=False, default=""),
    Column("communication_id", String(64), nullable=True),
    #: fusion's latest assessment of the study (comparison with priors, recommendations, missing context).
    Column("assessment", JSON, nullable=True),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Index("ix_worklist_studies_order", "critical", "order_priority", "received_at"),
    Index("ix_worklist_studies_report_status", "report_status"),
    Index("ix_worklist_studies_accession", "accession_number"),
)

#: Imaging orders (reporting's ImagingOrderReceived): the priority of a study whose order came first waits here.
worklist_orders = Table(
    "worklist_orders",
    metadata,
    Column("service_request_id", String(64), primary_key=True),
    #: DICOM Accession Number (0008,0050) / OBR-18 and Study Instance UID (ZDS-1), "" when the order gave none.
    Column("accession_number", String(64), nullable=False, default=""),
    Column("study_uid", String(64), nullable=False, default=""),
    #: FHIR ServiceRequest.priority (routine | urgent | asap | stat).
    Column("priority", String(16), nullable=False, default="routine"),
    #: FHIR ServiceRequest.status: active, or revoked after a cancel (ORC-1 CA).
    Column("status", String(16), nullable=False, default="active"),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Index("ix_worklist_orders_accession", "accession_number"),
    Index("ix_worklist_orders_study", "study_uid"),
)

#: One row per (series, model) analysis from inference (ImagingFindingsProduced).
worklist_findings = Table(
    "worklist_findings",
    metadata,
    #: Deterministic: study, series and model, so a redelivered event rewrites the same row.
    Column("finding_id", String(64), primary_key=True),
    Column("study_uid", String(64), nullable=False),
    Column("series_uid", String(64), nullable=False),
    Column("sop_instance_uid", String(64), nullable=False),
    Column("model_name", String(64), nullable=False),
    Column("model_version", String(32), nullable=False),
    Column("critical", Boolean, nullable=False, default=False),
    #: "" when analysed; otherwise why the model declined (outside its validated envelope).
    Column("not_analysed_reason", Text, nullable=False, default=""),
    #: Measurements, coded findings, location points and key image, as published.
    Column("data", JSON, nullable=False),
    Column("produced_at", DateTime(timezone=True), nullable=False),
    Index("ix_worklist_findings_study", "study_uid"),
    Index("ix_worklist_findings_model", "model_name", "model_version"),
)

#: "Assign to me": one radiologist reads a study at a time; a lock expires unless renewed.
reading_locks = Table(
    "reading_locks",
    metadata,
    Column("study_uid", String(64), primary_key=True),
    Column("user_id", String(128), nullable=False),
    Column("user_name", String(200), nullable=False),
    Column("acquired_at", DateTime(timezone=True), nullable=False),
    Column("expires_at", DateTime(timezone=True), nullable=False),
)

#: Every change an open page must show, in order: the live stream's ``id`` is ``seq`` (SSE ``Last-Event-ID``).
live_events = Table(
    "live_events",
    metadata,
    Column("seq", Integer, primary_key=True, autoincrement=True),
    Column("occurred_at", DateTime(timezone=True), nullable=False),
    #: study | finding | report | critical | assessment | lock | feedback | alert
    Column("kind", String(24), nullable=False),
    Column("study_uid", String(64), nullable=True),
    Column("data", JSON, nullable=False),
)

#: A radiologist's decision on one AI finding: accepted, edited or rejected (with a coded reason).
finding_feedback = Table(
    "finding_feedback",
    metadata,
    Column("feedback_id", String(64), primary_key=True),
    Column("finding_id", String(64), nullable=False),
    Column("study_uid", String(64), nullable=False),
    Column("model_name", String(64), nullable=False),
    Column("model_version", String(32), nullable=False),
    #: The coded finding (SNOMED CT) or measurement the decision is about; "" for the analysis as a whole.
    Column("finding_code", String(64), nullable=False, default=""),
    Column("action", String(16), nullable=False),
    Column("reason_code", String(32), nullable=False, default=""),
    Column("reason_text", Text, nullable=False, default=""),
    Column("user_id", String(128), nullable=False),
    Column("user_name", String(200), nullable=False),
    Column("practitioner", String(256), nullable=False, default=""),
    Column("report_id", String(64), nullable=True),
    Column("recorded_at", DateTime(timezone=True), nullable=False),
    #: The FHIR R4 resource the feedback was recorded as.
    Column("resource", JSON, nullable=False),
    Index("ix_finding_feedback_model", "model_name", "model_version", "recorded_at"),
    Index("ix_finding_feedback_finding", "finding_id"),
)

#: What each analysed (or declined) series looked like, for input-drift monitoring against the model card.
input_profiles = Table(
    "input_profiles",
    metadata,
    Column("finding_id", String(64), primary_key=True),
    Column("study_uid", String(64), nullable=False),
    Column("model_name", String(64), nullable=False),
    Column("model_version", String(32), nullable=False),
    Column("manufacturer", String(64), nullable=False, default=""),
    Column("manufacturer_model", String(64), nullable=False, default=""),
    Column("kvp", Float, nullable=True),
    Column("slice_thickness_mm", Float, nullable=True),
    Column("patient_age_years", Float, nullable=True),
    Column("outside_envelope_reason", Text, nullable=False, default=""),
    Column("recorded_at", DateTime(timezone=True), nullable=False),
    Index("ix_input_profiles_model", "model_name", "model_version", "recorded_at"),
)

#: Thresholds an admin sets per model and metric (e.g. rejection rate 0.3); crossing one raises an alert.
monitoring_thresholds = Table(
    "monitoring_thresholds",
    metadata,
    Column("model_name", String(64), primary_key=True),
    Column("metric", String(48), primary_key=True),
    Column("threshold", Float, nullable=False),
    Column("updated_by", String(128), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)

#: Alerts raised when a monitored rate crossed its threshold (also published as an event and a metric).
model_alerts = Table(
    "model_alerts",
    metadata,
    Column("alert_id", String(64), primary_key=True),
    Column("model_name", String(64), nullable=False),
    Column("model_version", String(32), nullable=False),
    Column("metric", String(48), nullable=False),
    Column("value", Float, nullable=False),
    Column("threshold", Float, nullable=False),
    Column("raised_at", DateTime(timezone=True), nullable=False),
    Index("ix_model_alerts_model", "model_name", "model_version", "raised_at"),
)
