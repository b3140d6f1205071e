"""Referral: CDS consultations (PAMA consult ids, outbox for their events) and card feedback.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-28
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "cds_consultations",
        sa.Column("consultation_id", sa.String(64), primary_key=True),
        sa.Column("service_id", sa.String(64), nullable=False),
        sa.Column("hook", sa.String(32), nullable=False),
        sa.Column("hook_instance", sa.String(64), nullable=False),
        sa.Column("order_id", sa.String(128), nullable=False),
        sa.Column("rule_id", sa.String(64), nullable=False),
        sa.Column("rule_version", sa.String(16), nullable=False),
        sa.Column("rating", sa.String(32), nullable=False),
        sa.Column("card_uuid", sa.String(64), nullable=True),
        sa.Column("event_payload", sa.Text, nullable=False),
        sa.Column("published_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_cds_consultations_hook_instance", "cds_consultations", ["hook_instance"])
    op.create_index("ix_cds_consultations_rule_id", "cds_consultations", ["rule_id"])
    op.create_index("ix_cds_consultations_card_uuid", "cds_consultations", ["card_uuid"])
    op.create_table(
        "cds_feedback",
        sa.Column("service_id", sa.String(64), nullable=False),
        sa.Column("card_uuid", sa.String(64), nullable=False),
        sa.Column("outcome", sa.String(16), nullable=False),
        sa.Column("outcome_timestamp", sa.String(40), nullable=False),
        sa.Column("accepted_suggestions", sa.Text, nullable=False),
        sa.Column("override_reason_code", sa.String(64), nullable=True),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("card_uuid", "outcome", "outcome_timestamp"),
    )


def downgrade() -> None:
    op.drop_table("cds_feedback")
    op.drop_table("cds_consultations")
