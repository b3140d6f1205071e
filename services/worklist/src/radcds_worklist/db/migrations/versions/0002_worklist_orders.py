"""The imaging orders the worklist heard of (ServiceRequest id, accession number, Study Instance UID, priority): an
order usually arrives before its images, so its priority waits here for the study it is for.

Revision ID: worklist_0002
Revises: worklist_0001
Create Date: 2026-12-03
"""

import sqlalchemy as sa
from alembic import op

revision = "worklist_0002"
down_revision = "worklist_0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "worklist_orders",
        sa.Column("service_request_id", sa.String(64), primary_key=True),
        sa.Column("accession_number", sa.String(64), nullable=False),
        sa.Column("study_uid", sa.String(64), nullable=False),
        sa.Column("priority", sa.String(16), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_worklist_orders_accession", "worklist_orders", ["accession_number"])
    op.create_index("ix_worklist_orders_study", "worklist_orders", ["study_uid"])


def downgrade() -> None:
    op.drop_index("ix_worklist_orders_study", table_name="worklist_orders")
    op.drop_index("ix_worklist_orders_accession", table_name="worklist_orders")
    op.drop_table("worklist_orders")
