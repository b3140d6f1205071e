"""Reporting: FHIR version history, search indexes, critical-result tracking (migration 0006) and
fusion assessments received (0009).

``fhir_resources`` (tables.py) keeps the current version of each resource; the tables here make
the FHIR RESTful API's history (FHIR R4 3.1.0.9 "history") and search (FHIR R4 3.1.1 "Search")
work from indexes instead of scanning JSON. Each indexed search parameter value of the current
version is one row, rewritten whenever the resource is written:

- token (FHIR R4 3.1.1.5.8): ``system`` and ``value`` (code, identifier value, status);
- reference (3.1.1.5.11): ``target`` as ``Type/id``;
- date (3.1.1.5.2): the value's implicit range ``[low, high]`` in UTC (a date means the whole day).
"""

from __future__ import annotations

from sqlalchemy import Column, DateTime, Index, Integer, PrimaryKeyConstraint, String, Table, Text

from radcds.adapters.db.tables import metadata

#: Every version of every resource (vread and ``_history``); the current one is also in ``fhir_resources``.
fhir_resource_versions = Table(
    "fhir_resource_versions",
    metadata,
    Column("resource_type", String(64), nullable=False),
    Column("id", String(64), nullable=False),
    Column("version_id", Integer, nullable=False),
    Column("last_updated", DateTime(timezone=True), nullable=False),
    Column("content", Text, nullable=False),
    PrimaryKeyConstraint("resource_type", "id", "version_id"),
)

#: Token search parameters (status, code, category, identifier, ...).
fhir_search_tokens = Table(
    "fhir_search_tokens",
    metadata,
    Column("resource_type", String(64), nullable=False),
    Column("resource_id", String(64), nullable=False),
    Column("param", String(64), nullable=False),
    Column("system", String(256), nullable=False, default=""),
    Column("value", String(256), nullable=False),
)
Index(
    "ix_fhir_search_tokens_lookup",
    fhir_search_tokens.c.resource_type,
    fhir_search_tokens.c.param,
    fhir_search_tokens.c.value,
    fhir_search_tokens.c.system,
)
Index("ix_fhir_search_tokens_resource", fhir_search_tokens.c.resource_type, fhir_search_tokens.c.resource_id)

#: Reference search parameters (subject, patient, based-on, result, ...), targets as ``Type/id``.
fhir_search_references = Table(
    "fhir_search_references",
    metadata,
    Column("resource_type", String(64), nullable=False),
    Column("resource_id", String(64), nullable=False),
    Column("param", String(64), nullable=False),
    Column("target", String(160), nullable=False),
)
Index(
    "ix_fhir_search_references_lookup",
    fhir_search_references.c.resource_type,
    fhir_search_references.c.param,
    fhir_search_references.c.target,
)
Index(
    "ix_fhir_search_references_resource", fhir_search_references.c.resource_type, fhir_search_references.c.resource_id
)

#: Date search parameters (date, issued, started, authored, sent, recorded) as UTC ranges.
fhir_search_dates = Table(
    "fhir_search_dates",
    metadata,
    Column("resource_type", String(64), nullable=False),
    Column("resource_id", String(64), nullable=False),
    Column("param", String(64), nullable=False),
    Column("low", DateTime(timezone=True), nullable=False),
    Column("high", DateTime(timezone=True), nullable=False),
)
Index("ix_fhir_search_dates_low", fhir_search_dates.c.resource_type, fhir_search_dates.c.param, fhir_search_dates.c.low)
Index(
    "ix_fhir_search_dates_high", fhir_search_dates.c.resource_type, fhir_search_dates.c.param, fhir_search_dates.c.high
)
Index("ix_fhir_search_dates_resource", fhir_search_dates.c.resource_type, fhir_search_dates.c.resource_id)

#: Critical results communicated (ACR communication of critical findings): one row per
#: Communication sent for a critical result, with its acknowledgement and escalation.
critical_result_alerts = Table(
    "critical_result_alerts",
    metadata,
    Column("communication_id", String(64), primary_key=True),
    Column("diagnostic_report_id", String(64), nullable=False, index=True),
    Column("study_instance_uid", String(64), nullable=False),
    Column("sent_at", DateTime(timezone=True), nullable=False, index=True),
    Column("acknowledged_at", DateTime(timezone=True), nullable=True),
    Column("acknowledged_by", String(256), nullable=True),
    Column("escalated_at", DateTime(timezone=True), nullable=True),
    Column("escalation_communication_id", String(64), nullable=True),
)

#: fusion's latest assessment of each study as reporting received it (``assessment.produced``,
#: migration 0009): the report's comparison, recommendations and missing-context sections come from
#: here, whichever of the findings and the assessment arrives first.
report_context_assessments = Table(
    "report_context_assessments",
    metadata,
    Column("study_instance_uid", String(64), primary_key=True),
    Column("patient_id", String(128), nullable=False),
    Column("version", Integer, nullable=False),
    Column("assessed_at", DateTime(timezone=True), nullable=False),
    #: The event payload (JSON) of that version.
    Column("payload", Text, nullable=False),
    Column("received_at", DateTime(timezone=True), nullable=False),
)
