"""Recommendations keep the identifier the EHR knows the patient by (MRN), for referral's patient-view.

Revision ID: fusion_0002
Revises: fusion_0001
Create Date: 2026-12-01
"""

import sqlalchemy as sa
from alembic import op

revision = "fusion_0002"
down_revision = "fusion_0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("fusion_recommendations") as batch:
        batch.add_column(sa.Column("patient_identifier", sa.String(128), nullable=True))
    op.create_index("ix_fusion_recommendations_identifier", "fusion_recommendations", ["patient_identifier"])


def downgrade() -> None:
    op.drop_index("ix_fusion_recommendations_identifier", table_name="fusion_recommendations")
    with op.batch_alter_table("fusion_recommendations") as batch:
        batch.drop_column("patient_identifier")
