"""Tables of the reporting service (SQLAlchemy Core). reporting's own migration chain creates them, with the
kernel's idempotency and outbox tables, in reporting's own database.

FHIR store (shared chain 0001, 0006, 0009): ``fhir_resources`` keeps the current version of each resource; the
other FHIR tables make the FHIR RESTful API's history (FHIR R4 3.1.0.9 "history") and search (FHIR R4 3.1.1
"Search") work from indexes instead of scanning JSON. Each indexed search parameter value of the current version
is one row, rewritten whenever the resource is written:

- token (FHIR R4 3.1.1.5.8): ``system`` and ``value`` (code, identifier value, status);
- reference (3.1.1.5.11): ``target`` as ``Type/id``;
- date (3.1.1.5.2): the value's implicit range ``[low, high]`` in UTC (a date means the whole day).

HL7 v2 layer (shared chain 0005, 0007): the outbound ORU queue, the inbound duplicate log and the delivery leases.
"""

from __future__ import annotations

from sqlalchemy import (
    Column,
    DateTime,
    Index,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
    UniqueConstraint,
)

metadata = MetaData()

# --- FHIR store ---

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

# --- HL7 v2 ---

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
