"""``dicom_instances`` and its companions: the store use case's repository (one transaction per store) and the
read side WADO-RS needs (where each stored instance sits, PS3.18 10.4)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Engine, insert, select
from sqlalchemy.exc import IntegrityError

from radcds.adapters.db.outbox import enqueue
from radcds.domain.events import EventKind
from radcds_imaging.adapters.db.assembly import note_instance
from radcds_imaging.adapters.db.indexing import record_attributes_many
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


class DuplicateInstanceError(Exception):
    """A store transaction met an instance already held (a concurrent attempt stored the same SOP Instance first)."""


class SqlStoreTransaction:
    """One store transaction over imaging's tables: instance rows, their QIDO-RS attributes, study assembly notes
    and the ``instance.stored`` events (transactional outbox), all committed together."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn

    def known(self, sop_instance_uids: Sequence[str]) -> set[str]:
        """Those of ``sop_instance_uids`` already stored."""
        stmt = select(dicom_instances.c.sop_instance_uid).where(
            dicom_instances.c.sop_instance_uid.in_(sop_instance_uids)
        )
        return set(self._conn.execute(stmt).scalars())

    def stored_digest(self, sop_instance_uid: str) -> str | None:
        """The SHA-256 of the stored instance, None when it is not held."""
        stmt = select(dicom_instances.c.sha256).where(dicom_instances.c.sop_instance_uid == sop_instance_uid)
        row = self._conn.execute(stmt).first()
        return None if row is None else str(row.sha256)

    def add(
        self,
        instances: Sequence[Mapping[str, Any]],
        attributes: Sequence[dict[str, Any]],
        studies: Iterable[str],
        now: datetime,
    ) -> None:
        """Insert ``dicom_instances`` rows, then their attribute rows (re-indexing replaces), then note each study."""
        self._conn.execute(insert(dicom_instances), list(instances))
        record_attributes_many(self._conn, attributes)
        for study in studies:
            note_instance(self._conn, study, now)

    def enqueue(self, kind: EventKind, events: Sequence[tuple[dict[str, Any], str, str]]) -> None:
        """Write events (payload, event id, subject) to the outbox, published once the transaction has committed."""
        enqueue(self._conn, kind, events)


class SqlInstanceRepository:
    """The store use case's repository over imaging's database (SQLite or PostgreSQL)."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    @contextmanager
    def transaction(self) -> Iterator[SqlStoreTransaction]:
        """A store transaction: committed when the block ends, rolled back when it raises. A uniqueness conflict
        (the same SOP Instance stored concurrently) raises :class:`DuplicateInstanceError`."""
        try:
            with self._engine.begin() as conn:
                yield SqlStoreTransaction(conn)
        except IntegrityError as exc:
            raise DuplicateInstanceError(str(exc.orig)) from exc
