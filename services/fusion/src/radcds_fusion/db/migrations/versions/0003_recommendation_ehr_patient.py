"""Recommendations keep the EHR's FHIR Patient id when fusion found the patient in the EHR, so that a CDS Hooks
``order-sign`` (whose ``context.patientId`` is that id) can close them. Nullable: recommendations made without an
EHR, or while it was unreachable, have none.

Revision ID: fusion_0003
Revises: fusion_0002
Create Date: 2026-12-01
"""

import sqlalchemy as sa
from alembic import op

revision = "fusion_0003"
down_revision = "fusion_0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("fusion_recommendations") as batch:
        batch.add_column(sa.Column("ehr_patient_id", sa.String(128), nullable=True))
    op.create_index("ix_fusion_recommendations_ehr_patient", "fusion_recommendations", ["ehr_patient_id"])


def downgrade() -> None:
    op.drop_index("ix_fusion_recommendations_ehr_patient", table_name="fusion_recommendations")
    with op.batch_alter_table("fusion_recommendations") as batch:
        batch.drop_column("ehr_patient_id")
