"""fusion's first schema: the kernel's idempotency and outbox tables, findings, recommendations, assessments.

Revision ID: fusion_0001
Revises:
Create Date: 2026-12-01
"""

import sqlalchemy as sa
from alembic import op

from radcds.adapters.db.tables import create_kernel_tables

revision = "fusion_0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    create_kernel_tables(op.get_bind())
    op.create_table(
        "fusion_findings",
        sa.Column("id", sa.String(200), primary_key=True),
        sa.Column("patient_id", sa.String(128), nullable=False),
        sa.Column("study_uid", sa.String(64), nullable=False),
        sa.Column("study_date", sa.Date, nullable=False),
        sa.Column("code", sa.String(64), nullable=False),
        sa.Column("data", sa.JSON, nullable=False),
    )
    op.create_index("ix_fusion_findings_patient", "fusion_findings", ["patient_id", "study_date"])
    op.create_index("ix_fusion_findings_study", "fusion_findings", ["study_uid"])
    op.create_table(
        "fusion_recommendations",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("patient_id", sa.String(128), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("due_by", sa.Date, nullable=False),
        sa.Column("data", sa.JSON, nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_fusion_recommendations_patient", "fusion_recommendations", ["patient_id"])
    op.create_index("ix_fusion_recommendations_state_due", "fusion_recommendations", ["state", "due_by"])
    op.create_table(
        "fusion_assessments",
        sa.Column("study_uid", sa.String(64), primary_key=True),
        sa.Column("patient_id", sa.String(128), nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("payload", sa.JSON, nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    for table in ("fusion_assessments", "fusion_recommendations", "fusion_findings"):
        op.drop_table(table)
