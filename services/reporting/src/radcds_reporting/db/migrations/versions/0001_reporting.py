"""reporting's first schema: the kernel's idempotency and outbox tables, the FHIR store (current versions,
history, search indexes), critical-result alerts, fusion's assessments as received, the HL7 v2 queues and
delivery leases, each as the shared chain (0001, 0005, 0006, 0007, 0009) left it at its last revision.

A database the shared chain brought to its last revision already holds these tables with their rows: it is
adopted as it is (:func:`radcds.adapters.db.legacy.adopts_legacy_shared_schema`).

Revision ID: reporting_0001
Revises:
Create Date: 2026-12-01
"""

import sqlalchemy as sa
from alembic import op

from radcds.adapters.db.legacy import adopts_legacy_shared_schema
from radcds.adapters.db.tables import create_kernel_tables

revision = "reporting_0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    if adopts_legacy_shared_schema(op.get_bind()):
        return
    create_kernel_tables(op.get_bind())
    _fhir_store()
    _hl7()


def _fhir_store() -> None:
    """FHIR resources, their history and search indexes (shared 0001, 0006), critical results (0006) and
    fusion's assessments (0009)."""
    op.create_table(
        "fhir_resources",
        sa.Column("resource_type", sa.String(64), nullable=False),
        sa.Column("id", sa.String(64), nullable=False),
        sa.Column("version_id", sa.Integer, nullable=False),
        sa.Column("last_updated", sa.DateTime(timezone=True), nullable=False),
        sa.Column("subject", sa.String(128), nullable=False),
        sa.Column("study_instance_uid", sa.String(64), nullable=False),
        sa.Column("content", sa.Text, nullable=False),
        sa.PrimaryKeyConstraint("resource_type", "id"),
    )
    op.create_index("ix_fhir_resources_subject", "fhir_resources", ["subject"])
    op.create_index("ix_fhir_resources_study_instance_uid", "fhir_resources", ["study_instance_uid"])
    op.create_table(
        "fhir_resource_versions",
        sa.Column("resource_type", sa.String(64), nullable=False),
        sa.Column("id", sa.String(64), nullable=False),
        sa.Column("version_id", sa.Integer, nullable=False),
        sa.Column("last_updated", sa.DateTime(timezone=True), nullable=False),
        sa.Column("content", sa.Text, nullable=False),
        sa.PrimaryKeyConstraint("resource_type", "id", "version_id"),
    )
    op.create_table(
        "fhir_search_tokens",
        sa.Column("resource_type", sa.String(64), nullable=False),
        sa.Column("resource_id", sa.String(64), nullable=False),
        sa.Column("param", sa.String(64), nullable=False),
        sa.Column("system", sa.String(256), nullable=False),
        sa.Column("value", sa.String(256), nullable=False),
    )
    op.create_index("ix_fhir_search_tokens_lookup", "fhir_search_tokens", ["resource_type", "param", "value", "system"])
    op.create_index("ix_fhir_search_tokens_resource", "fhir_search_tokens", ["resource_type", "resource_id"])
    op.create_table(
        "fhir_search_references",
        sa.Column("resource_type", sa.String(64), nullable=False),
        sa.Column("resource_id", sa.String(64), nullable=False),
        sa.Column("param", sa.String(64), nullable=False),
        sa.Column("target", sa.String(160), nullable=False),
    )
    op.create_index("ix_fhir_search_references_lookup", "fhir_search_references", ["resource_type", "param", "target"])
    op.create_index("ix_fhir_search_references_resource", "fhir_search_references", ["resource_type", "resource_id"])
    op.create_table(
        "fhir_search_dates",
        sa.Column("resource_type", sa.String(64), nullable=False),
        sa.Column("resource_id", sa.String(64), nullable=False),
        sa.Column("param", sa.String(64), nullable=False),
        sa.Column("low", sa.DateTime(timezone=True), nullable=False),
        sa.Column("high", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_fhir_search_dates_low", "fhir_search_dates", ["resource_type", "param", "low"])
    op.create_index("ix_fhir_search_dates_high", "fhir_search_dates", ["resource_type", "param", "high"])
    op.create_index("ix_fhir_search_dates_resource", "fhir_search_dates", ["resource_type", "resource_id"])
    op.create_table(
        "critical_result_alerts",
        sa.Column("communication_id", sa.String(64), primary_key=True),
        sa.Column("diagnostic_report_id", sa.String(64), nullable=False),
        sa.Column("study_instance_uid", sa.String(64), nullable=False),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("acknowledged_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("acknowledged_by", sa.String(256), nullable=True),
        sa.Column("escalated_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("escalation_communication_id", sa.String(64), nullable=True),
    )
    op.create_index(
        "ix_critical_result_alerts_diagnostic_report_id", "critical_result_alerts", ["diagnostic_report_id"]
    )
    op.create_index("ix_critical_result_alerts_sent_at", "critical_result_alerts", ["sent_at"])
    op.create_table(
        "report_context_assessments",
        sa.Column("study_instance_uid", sa.String(64), primary_key=True),
        sa.Column("patient_id", sa.String(128), nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("assessed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("payload", sa.Text, nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
    )


def _hl7() -> None:
    """The HL7 v2 outbound queue and inbound duplicate log (shared 0005) and delivery leases (0007)."""
    op.create_table(
        "hl7_outbound_messages",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("destination", sa.String(255), nullable=False),
        sa.Column("order_key", sa.String(255), nullable=False),
        sa.Column("control_id", sa.String(20), nullable=False),
        sa.Column("message_type", sa.String(16), nullable=False),
        sa.Column("result_status", sa.String(1), nullable=False),
        sa.Column("payload", sa.Text, nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_ack_code", sa.String(2), nullable=True),
        sa.Column("last_error", sa.String(255), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("delivered_at", sa.DateTime(timezone=True), nullable=True),
        sa.UniqueConstraint("destination", "control_id", name="uq_hl7_outbound_destination_control_id"),
    )
    op.create_index("ix_hl7_outbound_pending", "hl7_outbound_messages", ["destination", "state"])
    op.create_index("ix_hl7_outbound_order", "hl7_outbound_messages", ["destination", "order_key"])
    op.create_table(
        "hl7_inbound_messages",
        sa.Column("sender", sa.String(255), nullable=False),
        sa.Column("control_id", sa.String(199), nullable=False),
        sa.Column("accepted_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("sender", "control_id"),
    )
    op.create_table(
        "hl7_delivery_leases",
        sa.Column("destination", sa.String(255), primary_key=True),
        sa.Column("holder", sa.String(64), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    for table in (
        "hl7_delivery_leases",
        "hl7_inbound_messages",
        "hl7_outbound_messages",
        "report_context_assessments",
        "critical_result_alerts",
        "fhir_search_dates",
        "fhir_search_references",
        "fhir_search_tokens",
        "fhir_resource_versions",
        "fhir_resources",
    ):
        op.drop_table(table)
