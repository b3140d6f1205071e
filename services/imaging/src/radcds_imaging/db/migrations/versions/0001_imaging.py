"""imaging's first schema: the kernel's idempotency and outbox tables, DICOM instances, their QIDO-RS attributes
and study assembly, as the legacy shared chain (revisions 0001 and 0003) left them.

A database the shared chain brought to its head already holds these tables with their rows: this revision then
adopts it as it is (:func:`radcds.adapters.db.legacy.adopts_legacy_shared_schema`) and only records its version.

Revision ID: imaging_0001
Revises:
Create Date: 2026-12-01
"""

import sqlalchemy as sa
from alembic import op

from radcds.adapters.db.legacy import adopts_legacy_shared_schema
from radcds.adapters.db.tables import create_kernel_tables

revision = "imaging_0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    if adopts_legacy_shared_schema(op.get_bind()):
        return
    create_kernel_tables(op.get_bind())
    op.create_table(
        "dicom_instances",
        sa.Column("sop_instance_uid", sa.String(64), primary_key=True),
        sa.Column("study_instance_uid", sa.String(64), nullable=False),
        sa.Column("series_instance_uid", sa.String(64), nullable=False),
        sa.Column("sop_class_uid", sa.String(64), nullable=False),
        sa.Column("transfer_syntax_uid", sa.String(64), nullable=False),
        sa.Column("modality", sa.String(16), nullable=False),
        sa.Column("patient_id", sa.String(64), nullable=False),
        sa.Column("accession_number", sa.String(16), nullable=False),
        sa.Column("storage_key", sa.String(512), nullable=False),
        sa.Column("size_bytes", sa.BigInteger, nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_dicom_instances_study_instance_uid", "dicom_instances", ["study_instance_uid"])
    op.create_index("ix_dicom_instances_series_instance_uid", "dicom_instances", ["series_instance_uid"])
    op.create_index("ix_dicom_instances_accession_number", "dicom_instances", ["accession_number"])
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
    for table in ("imaging_studies_assembly", "dicom_instance_attributes", "dicom_instances"):
        op.drop_table(table)
