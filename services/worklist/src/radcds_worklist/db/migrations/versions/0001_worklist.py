"""The worklist"s first schema: the kernel"s idempotency and outbox tables, the studies and findings of the list,
reading locks, the live stream, feedback on AI findings, input profiles, monitoring thresholds and alerts.

Revision ID: worklist_0001
Revises:
Create Date: 2026-12-02
"""

import sqlalchemy as sa
from alembic import op

from radcds.adapters.db.tables import create_kernel_tables

revision = "worklist_0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    create_kernel_tables(op.get_bind())
    op.create_table(
        "worklist_studies",
        sa.Column("study_uid", sa.String(64), primary_key=True),
        sa.Column("accession_number", sa.String(64), nullable=False),
        sa.Column("patient_id", sa.String(128), nullable=False),
        sa.Column("patient_name", sa.String(200), nullable=False),
        sa.Column("modality", sa.String(16), nullable=False),
        sa.Column("body_part", sa.String(64), nullable=False),
        sa.Column("study_description", sa.String(200), nullable=False),
        sa.Column("study_date", sa.String(8), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("order_priority", sa.String(16), nullable=False),
        sa.Column("service_request_id", sa.String(64), nullable=True),
        sa.Column("report_id", sa.String(64), nullable=True),
        sa.Column("report_status", sa.String(24), nullable=False),
        sa.Column("report_version", sa.String(16), nullable=False),
        sa.Column("results_interpreter", sa.String(256), nullable=False),
        sa.Column("critical", sa.Boolean, nullable=False),
        sa.Column("critical_since", sa.DateTime(timezone=True), nullable=True),
        sa.Column("critical_state", sa.String(16), nullable=False),
        sa.Column("communication_id", sa.String(64), nullable=True),
        sa.Column("assessment", sa.JSON, nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_worklist_studies_order", "worklist_studies", ["critical", "order_priority", "received_at"])
    op.create_index("ix_worklist_studies_report_status", "worklist_studies", ["report_status"])
    op.create_index("ix_worklist_studies_accession", "worklist_studies", ["accession_number"])
    op.create_table(
        "worklist_findings",
        sa.Column("finding_id", sa.String(64), primary_key=True),
        sa.Column("study_uid", sa.String(64), nullable=False),
        sa.Column("series_uid", sa.String(64), nullable=False),
        sa.Column("sop_instance_uid", sa.String(64), nullable=False),
        sa.Column("model_name", sa.String(64), nullable=False),
        sa.Column("model_version", sa.String(32), nullable=False),
        sa.Column("critical", sa.Boolean, nullable=False),
        sa.Column("not_analysed_reason", sa.Text, nullable=False),
        sa.Column("data", sa.JSON, nullable=False),
        sa.Column("produced_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_worklist_findings_study", "worklist_findings", ["study_uid"])
    op.create_index("ix_worklist_findings_model", "worklist_findings", ["model_name", "model_version"])
    op.create_table(
        "reading_locks",
        sa.Column("study_uid", sa.String(64), primary_key=True),
        sa.Column("user_id", sa.String(128), nullable=False),
        sa.Column("user_name", sa.String(200), nullable=False),
        sa.Column("acquired_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
    )

    op.create_table(
        "live_events",
        sa.Column("seq", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("kind", sa.String(24), nullable=False),
        sa.Column("study_uid", sa.String(64), nullable=True),
        sa.Column("data", sa.JSON, nullable=False),
    )

    op.create_table(
        "finding_feedback",
        sa.Column("feedback_id", sa.String(64), primary_key=True),
        sa.Column("finding_id", sa.String(64), nullable=False),
        sa.Column("study_uid", sa.String(64), nullable=False),
        sa.Column("model_name", sa.String(64), nullable=False),
        sa.Column("model_version", sa.String(32), nullable=False),
        sa.Column("finding_code", sa.String(64), nullable=False),
        sa.Column("action", sa.String(16), nullable=False),
        sa.Column("reason_code", sa.String(32), nullable=False),
        sa.Column("reason_text", sa.Text, nullable=False),
        sa.Column("user_id", sa.String(128), nullable=False),
        sa.Column("user_name", sa.String(200), nullable=False),
        sa.Column("practitioner", sa.String(256), nullable=False),
        sa.Column("report_id", sa.String(64), nullable=True),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("resource", sa.JSON, nullable=False),
    )
    op.create_index("ix_finding_feedback_model", "finding_feedback", ["model_name", "model_version", "recorded_at"])
    op.create_index("ix_finding_feedback_finding", "finding_feedback", ["finding_id"])
    op.create_table(
        "input_profiles",
        sa.Column("finding_id", sa.String(64), primary_key=True),
        sa.Column("study_uid", sa.String(64), nullable=False),
        sa.Column("model_name", sa.String(64), nullable=False),
        sa.Column("model_version", sa.String(32), nullable=False),
        sa.Column("manufacturer", sa.String(64), nullable=False),
        sa.Column("manufacturer_model", sa.String(64), nullable=False),
        sa.Column("kvp", sa.Float, nullable=True),
        sa.Column("slice_thickness_mm", sa.Float, nullable=True),
        sa.Column("patient_age_years", sa.Float, nullable=True),
        sa.Column("outside_envelope_reason", sa.Text, nullable=False),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_input_profiles_model", "input_profiles", ["model_name", "model_version", "recorded_at"])
    op.create_table(
        "monitoring_thresholds",
        sa.Column("model_name", sa.String(64), primary_key=True),
        sa.Column("metric", sa.String(48), primary_key=True),
        sa.Column("threshold", sa.Float, nullable=False),
        sa.Column("updated_by", sa.String(128), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )

    op.create_table(
        "model_alerts",
        sa.Column("alert_id", sa.String(64), primary_key=True),
        sa.Column("model_name", sa.String(64), nullable=False),
        sa.Column("model_version", sa.String(32), nullable=False),
        sa.Column("metric", sa.String(48), nullable=False),
        sa.Column("value", sa.Float, nullable=False),
        sa.Column("threshold", sa.Float, nullable=False),
        sa.Column("raised_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_model_alerts_model", "model_alerts", ["model_name", "model_version", "raised_at"])


def downgrade() -> None:
    for table in (
        "model_alerts",
        "monitoring_thresholds",
        "input_profiles",
        "finding_feedback",
        "live_events",
        "reading_locks",
        "worklist_findings",
        "worklist_studies",
    ):
        op.drop_table(table)
