"""Study assembly: a study is complete once no instance of it arrived for a quiet period.

Instances are grouped by Study Instance UID (0020,000D). Each newly stored instance is noted in
``imaging_studies_assembly`` (:func:`note_instance`, in the store transaction). When the quiet
period has passed since the last one, the study is *due*: :meth:`StudyAssembler.announce` builds
its FHIR R4 ImagingStudy from the stored headers and marks it announced (version 1). Instances
that arrive later make it due again, and the next announcement is an update (version 2, ...)
of the same ImagingStudy, not a second study.

Ordering under concurrency: the store transaction inserts the instance, then updates the study's
row (``change_seq + 1``), holding that row lock until commit; :meth:`~StudyAssembler.announce`
locks the row (``SELECT ... FOR UPDATE`` on PostgreSQL) before reading the instances and records
the ``change_seq`` it saw. An instance committed before the lock is in the announcement; one
committed after it raises ``change_seq`` past ``announced_seq`` and makes the study due again.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Engine, String, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite

from radcds.adapters.fhir.report import patient_id_for
from radcds.domain.findings import StudyContext
from radcds_imaging.adapters.imaging_study import INSTANCE_KEYS, imaging_study_from_instances
from radcds_imaging.db.tables import dicom_instance_attributes, dicom_instances, imaging_studies_assembly
from radcds_imaging.domain.assembly import AnnouncedStudy

_T = imaging_studies_assembly


def _utc(moment: datetime) -> datetime:
    """``moment`` in UTC; a naive datetime is taken as UTC (SQLite keeps no offset)."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _now() -> datetime:
    return datetime.now(UTC)


def note_instance(conn: Connection, study_instance_uid: str, now: datetime) -> None:
    """Note a newly stored instance of a study; call in the store transaction, after inserting its row.

    Call it for new instances only (not for duplicates); a stray extra call makes the study due
    again, and its announcement then finds nothing new (see :meth:`StudyAssembler.announce`).
    """
    now = _utc(now)
    values = {
        "study_instance_uid": study_instance_uid,
        "first_received_at": now,
        "last_received_at": now,
        "change_seq": 1,
        "announced_seq": None,
        "announced_at": None,
        "announced_instance_count": 0,
        "version": 0,
    }
    changed = {"last_received_at": now, "change_seq": _T.c.change_seq + 1}
    dialect = conn.dialect.name
    if dialect in ("sqlite", "postgresql"):
        insert = sqlite.insert(_T) if dialect == "sqlite" else postgresql.insert(_T)
        conn.execute(
            insert.values(**values).on_conflict_do_update(index_elements=[_T.c.study_instance_uid], set_=changed)
        )
        return
    row = conn.execute(select(_T.c.study_instance_uid).where(_T.c.study_instance_uid == study_instance_uid)).first()
    if row is None:
        conn.execute(_T.insert().values(**values))
    else:
        conn.execute(update(_T).where(_T.c.study_instance_uid == study_instance_uid).values(**changed))


def study_instance_rows(conn: Connection, study_instance_uid: str) -> list[dict[str, Any]]:
    """The stored instances of a study with their header attributes, keyed as ``INSTANCE_KEYS``."""
    i, a = dicom_instances.c, dicom_instance_attributes.c
    columns = [i[k] if k in i else a[k] for k in INSTANCE_KEYS]
    stmt = (
        select(*columns)
        .select_from(dicom_instances.outerjoin(dicom_instance_attributes, a.sop_instance_uid == i.sop_instance_uid))
        .where(i.study_instance_uid == study_instance_uid)
    )
    text = {c.key for c in columns if isinstance(c.type, String)}
    rows = []
    for r in conn.execute(stmt):
        row = dict(r._mapping)
        # Instances stored before migration 0003 have no attributes row: empty text, no codes.
        for key in text:
            row[key] = row[key] or ""
        row["procedure_codes"] = row["procedure_codes"] or []
        rows.append(row)
    return rows


def default_patient_reference(row: Mapping[str, Any]) -> str:
    """``Patient/<id>`` with the id the reporting resources use for this PatientID and issuer."""
    context = StudyContext(patient_id=row["patient_id"], issuer_of_patient_id=row.get("issuer_of_patient_id") or "")
    return f"Patient/{patient_id_for(context)}"


class StudyAssembler:
    """Finds studies whose quiet period has passed and announces each as one ImagingStudy.

    No threads: a caller polls :meth:`due` and calls :meth:`announce` for each, with a clock of
    its own or the one given here.
    """

    def __init__(
        self,
        *,
        engine: Engine,
        quiet_period: timedelta,
        wado_base_url: str,
        patient_reference: Callable[[Mapping[str, Any]], str] = default_patient_reference,
        clock: Callable[[], datetime] = _now,
    ) -> None:
        if quiet_period < timedelta(0):
            raise ValueError("the quiet period cannot be negative")
        self._engine = engine
        self._quiet = quiet_period
        self._wado_base_url = wado_base_url
        self._patient_reference = patient_reference
        self._clock = clock

    def due(self, now: datetime | None = None, *, limit: int = 100) -> list[str]:
        """Studies with no new instance for the quiet period and never announced or changed since, oldest first.

        A last instance received more than the quiet period *after* now cannot be: the clock stepped back since
        (NTP stepping a fast clock, a virtual machine restored from a snapshot). Such a study is due now, not
        once the clock has caught up with it again (hours later, after a step of hours); an instance still
        arriving makes it due again and is announced as an update.
        """
        moment = _utc(now or self._clock())
        cutoff = moment - self._quiet
        stmt = (
            select(_T.c.study_instance_uid)
            .where(
                or_(_T.c.last_received_at <= cutoff, _T.c.last_received_at > moment + self._quiet),
                or_(_T.c.announced_seq.is_(None), _T.c.change_seq != _T.c.announced_seq),
            )
            .order_by(_T.c.last_received_at, _T.c.study_instance_uid)
            .limit(limit)
        )
        with self._engine.connect() as conn:
            return list(conn.scalars(stmt))

    def announce(
        self,
        study_instance_uid: str,
        now: datetime | None = None,
        *,
        publish: Callable[[AnnouncedStudy], None] | None = None,
    ) -> AnnouncedStudy | None:
        """Build the study's ImagingStudy and mark it announced; None if there is nothing new to announce.

        With ``publish``, it is called before the mark commits: if it raises, the study stays due.
        Without it, the caller publishes after this returns (a failure then loses the announcement
        unless the caller retries). None for an unknown study, one announced since it was last
        noted (another replica won), or one whose instance count did not change (duplicate notes only).
        """
        now = _utc(now or self._clock())
        with self._engine.begin() as conn:
            state = conn.execute(
                select(_T).where(_T.c.study_instance_uid == study_instance_uid).with_for_update()
            ).first()
            if state is None or state.announced_seq == state.change_seq:
                return None
            rows = study_instance_rows(conn, study_instance_uid)
            mark = (
                update(_T)
                .where(_T.c.study_instance_uid == study_instance_uid, _T.c.version == state.version)
                .values(announced_seq=state.change_seq)
            )
            if not rows or (state.announced_at is not None and len(rows) == state.announced_instance_count):
                conn.execute(mark)  # nothing new: absorb the notes without a new version
                return None
            announced = AnnouncedStudy(
                study_instance_uid=study_instance_uid,
                imaging_study=imaging_study_from_instances(
                    rows, wado_base_url=self._wado_base_url, patient_reference=self._patient_reference(rows[0])
                ),
                is_update=state.announced_at is not None,
                version=state.version + 1,
                instance_count=len(rows),
                announced_at=now,
            )
            result = conn.execute(
                mark.values(announced_at=now, announced_instance_count=len(rows), version=announced.version)
            )
            if result.rowcount != 1:
                return None  # announced concurrently
            if publish is not None:
                publish(announced)
        return announced
