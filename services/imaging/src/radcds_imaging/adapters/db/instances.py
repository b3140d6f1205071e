"""The read side of ``dicom_instances`` WADO-RS needs: where each stored instance sits (PS3.18 10.4)."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Engine, select

from radcds_imaging.db.tables import dicom_instances


@dataclass(frozen=True, slots=True)
class InstanceRow:
    """Where one stored instance sits in the hierarchy and in the store."""

    study_instance_uid: str
    series_instance_uid: str
    sop_instance_uid: str
    storage_key: str


class InstanceQueries:
    """Finds stored instances by study, series and SOP Instance UID."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def find(self, *, study: str, series: str | None = None) -> list[InstanceRow]:
        """Stored instances of a study (or of one series of it), ordered by series and instance UID."""
        query = select(
            dicom_instances.c.study_instance_uid,
            dicom_instances.c.series_instance_uid,
            dicom_instances.c.sop_instance_uid,
            dicom_instances.c.storage_key,
        ).where(dicom_instances.c.study_instance_uid == study)
        if series is not None:
            query = query.where(dicom_instances.c.series_instance_uid == series)
        query = query.order_by(dicom_instances.c.series_instance_uid, dicom_instances.c.sop_instance_uid)
        with self._engine.connect() as conn:
            return [InstanceRow(*row) for row in conn.execute(query)]

    def storage_key(self, *, study: str, series: str, instance: str) -> str | None:
        """The storage key of one instance, or None if imaging does not hold it."""
        with self._engine.connect() as conn:
            row = conn.execute(
                select(dicom_instances.c.storage_key).where(
                    dicom_instances.c.sop_instance_uid == instance,
                    dicom_instances.c.series_instance_uid == series,
                    dicom_instances.c.study_instance_uid == study,
                )
            ).first()
        return None if row is None else str(row.storage_key)
