"""imaging's own tables (SQLAlchemy Core, own ``MetaData``); its migration chain (``migrations/``) creates them.

The columns, keys and index names are those the legacy shared chain (revisions 0001 and 0003) left, so that a
database it migrated is adopted as it is (:mod:`radcds.adapters.db.legacy`).
"""

from __future__ import annotations

from sqlalchemy import JSON, BigInteger, Column, DateTime, ForeignKey, Index, Integer, MetaData, String, Table

metadata = MetaData()

#: DICOM instances stored by imaging (PS3.3 C.12.1 SOP Common, C.7.2.1 General Study).
dicom_instances = Table(
    "dicom_instances",
    metadata,
    Column("sop_instance_uid", String(64), primary_key=True),
    Column("study_instance_uid", String(64), nullable=False, index=True),
    Column("series_instance_uid", String(64), nullable=False, index=True),
    Column("sop_class_uid", String(64), nullable=False),
    Column("transfer_syntax_uid", String(64), nullable=False),
    Column("modality", String(16), nullable=False, default=""),
    Column("patient_id", String(64), nullable=False, default=""),
    Column("accession_number", String(16), nullable=False, default="", index=True),
    Column("storage_key", String(512), nullable=False),
    Column("size_bytes", BigInteger, nullable=False),
    Column("sha256", String(64), nullable=False),
    Column("received_at", DateTime(timezone=True), nullable=False),
)

#: QIDO-RS (PS3.18 10.6) finds patients, studies and series by PatientID on ``dicom_instances``.
Index("ix_dicom_instances_patient_id", dicom_instances.c.patient_id)

#: Header attributes of each stored instance that QIDO-RS matches and returns and ImagingStudy maps
#: (PS3.3 C.7.1.1 Patient, C.7.2.1 General Study, C.7.3.1 General Series, C.7.6.1 General Image,
#: C.7.6.3 Image Pixel). Text columns hold the value as read ("" when absent).
dicom_instance_attributes = Table(
    "dicom_instance_attributes",
    metadata,
    Column(
        "sop_instance_uid",
        String(64),
        ForeignKey("dicom_instances.sop_instance_uid", ondelete="CASCADE"),
        primary_key=True,
    ),
    Column("issuer_of_patient_id", String(64), nullable=False, default=""),
    Column("patient_name", String(324), nullable=False, default=""),
    Column("patient_birth_date", String(8), nullable=False, default=""),
    Column("patient_sex", String(16), nullable=False, default=""),
    Column("study_date", String(8), nullable=False, default="", index=True),
    Column("study_time", String(16), nullable=False, default=""),
    Column("timezone_offset_from_utc", String(16), nullable=False, default=""),
    Column("study_id", String(16), nullable=False, default=""),
    Column("study_description", String(64), nullable=False, default=""),
    Column("referring_physician_name", String(324), nullable=False, default=""),
    Column("procedure_codes", JSON, nullable=False, default=list),
    Column("series_number", Integer, nullable=True),
    Column("series_description", String(64), nullable=False, default=""),
    Column("series_date", String(8), nullable=False, default=""),
    Column("series_time", String(16), nullable=False, default=""),
    Column("body_part_examined", String(16), nullable=False, default=""),
    Column("laterality", String(16), nullable=False, default=""),
    Column("instance_number", Integer, nullable=True),
    Column("number_of_frames", Integer, nullable=True),
    Column("rows", Integer, nullable=True),
    Column("columns", Integer, nullable=True),
    Column("bits_allocated", Integer, nullable=True),
)

#: Study assembly: one row per study, touched by every newly stored instance. A study is
#: announced once no instance arrived for the quiet period; ``change_seq`` counts the stored
#: instances noted and ``announced_seq`` is its value at the last announcement.
imaging_studies_assembly = Table(
    "imaging_studies_assembly",
    metadata,
    Column("study_instance_uid", String(64), primary_key=True),
    Column("first_received_at", DateTime(timezone=True), nullable=False),
    Column("last_received_at", DateTime(timezone=True), nullable=False, index=True),
    Column("change_seq", Integer, nullable=False, default=1),
    Column("announced_seq", Integer, nullable=True),
    Column("announced_at", DateTime(timezone=True), nullable=True),
    Column("announced_instance_count", Integer, nullable=False, default=0),
    Column("version", Integer, nullable=False, default=0),
)

#: The tables of imaging, in creation order.
IMAGING_TABLES = (dicom_instances, dicom_instance_attributes, imaging_studies_assembly)
