"""Imaging: instance attributes for QIDO-RS and ImagingStudy, study assembly with a quiet period.

Instances stored before this revision have no ``dicom_instance_attributes`` row; QIDO-RS still
finds them by the ``dicom_instances`` columns and returns empty values for the rest, and they
never enter study assembly.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-29
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_dicom_instances_patient_id", "dicom_instances", ["patient_id"])
    op.create_table(
        "dicom_instance_attributes",
        sa.Column(
            "sop_instance_uid",
            sa.String(64),
            sa.ForeignKey("dicom_instances.sop_instance_uid", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("issuer_of_patient_id", sa.String(64), nullable=False),
        sa.Column("patient_name", sa.String(324), nullable=False),
        sa.Column("patient_birth_date", sa.String(8), nullable=False),
        sa.Column("patient_sex", sa.String(16), nullable=False),
        sa.Column("study_date", sa.String(8), nullable=False),
        sa.Column("study_time", sa.String(16), nullable=False),
        sa.Column("timezone_offset_from_utc", sa.String(16), nullable=False),
        sa.Column("study_id", sa.String(16), nullable=False),
        sa.Column("study_description", sa.String(64), nullable=False),
        sa.Column("referring_physician_name", sa.String(324), nullable=False),
        sa.Column("procedure_codes", sa.JSON, nullable=False),
        sa.Column("series_number", sa.Integer, nullable=True),
        sa.Column("series_description", sa.String(64), nullable=False),
        sa.Column("series_date", sa.String(8), nullable=False),
        sa.Column("series_time", sa.String(16), nullable=False),
        sa.Column("body_part_examined", sa.String(16), nullable=False),
        sa.Column("laterality", sa.String(16), nullable=False),
        sa.Column("instance_number", sa.Integer, nullable=True),
        sa.Column("number_of_frames", sa.Integer, nullable=True),
        sa.Column("rows", sa.Integer, nullable=True),
        sa.Column("columns", sa.Integer, nullable=True),
        sa.Column("bits_allocated", sa.Integer, nullable=True),
    )
    op.create_index("ix_dicom_instance_attributes_study_date", "dicom_instance_attributes", ["study_date"])
    op.create_table(
        "imaging_studies_assembly",
        sa.Column("study_instance_uid", sa.String(64), primary_key=True),
        sa.Column("first_received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("change_seq", sa.Integer, nullable=False),
        sa.Column("announced_seq", sa.Integer, nullable=True),
        sa.Column("announced_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("announced_instance_count", sa.Integer, nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
    )
    op.create_index("ix_imaging_studies_assembly_last_received_at", "imaging_studies_assembly", ["last_received_at"])


def downgrade() -> None:
    op.drop_table("imaging_studies_assembly")
    op.drop_table("dicom_instance_attributes")
    op.drop_index("ix_dicom_instances_patient_id", table_name="dicom_instances")
