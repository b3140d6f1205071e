"""referral's first schema: the kernel's idempotency and outbox tables, consultations and card feedback.

The two referral tables are spelled as the legacy shared chain left them at its head (its revisions 0002 and
0008): same columns, types, keys and index names. A database that chain already brought to its head is adopted
as it is (:func:`radcds.adapters.db.legacy.adopts_legacy_shared_schema`): nothing is created, no row moves.

Revision ID: referral_0001
Revises:
Create Date: 2026-12-01
"""

import sqlalchemy as sa
from alembic import op

from radcds.adapters.db.legacy import adopts_legacy_shared_schema
from radcds.adapters.db.tables import create_kernel_tables

revision = "referral_0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    if adopts_legacy_shared_schema(op.get_bind()):
        return
    create_kernel_tables(op.get_bind())
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
