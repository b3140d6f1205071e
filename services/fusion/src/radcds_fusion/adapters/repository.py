"""fusion's tables behind one repository, used inside the caller's transaction (SQLAlchemy Core)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import date, datetime
from typing import Any

from sqlalchemy import Connection, and_, delete, insert, or_, select, update

from radcds_fusion.adapters.codec import (
    finding_from_json,
    finding_to_json,
    recommendation_from_json,
    recommendation_to_json,
)
from radcds_fusion.db.tables import fusion_assessments, fusion_findings, fusion_recommendations
from radcds_fusion.domain.comparison import MeasuredFinding
from radcds_fusion.domain.recommendations import FINAL_STATES, Recommendation, RecommendationState

_F = fusion_findings.c
_R = fusion_recommendations.c
_A = fusion_assessments.c
_OPEN = [s.value for s in RecommendationState if s not in FINAL_STATES]


class FusionRepository:
    """Findings history, recommendations and assessments on one connection (the caller owns the transaction)."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn

    # ---- findings ---------------------------------------------------------------------
    def replace_findings(
        self, *, source: str, patient_id: str, study_uid: str, findings: Sequence[MeasuredFinding]
    ) -> None:
        """Store the findings one source (a findings event's series and model, an SR) gave for a study, replacing
        what the same source gave before (a redelivered or corrected event rewrites, never duplicates)."""
        prefix = f"{study_uid}|{source}|"
        ids = [
            i
            for i in self._conn.execute(select(_F.id).where(_F.study_uid == study_uid)).scalars()
            if i.startswith(prefix)
        ]
        if ids:
            self._conn.execute(delete(fusion_findings).where(_F.id.in_(ids)))
        if findings:
            self._conn.execute(
                insert(fusion_findings),
                [
                    {
                        "id": f"{prefix}{i}",
                        "patient_id": patient_id,
                        "study_uid": study_uid,
                        "study_date": f.study_date,
                        "code": f.code,
                        "data": finding_to_json(f),
                    }
                    for i, f in enumerate(findings)
                ],
            )

    def study_findings(self, study_uid: str) -> list[MeasuredFinding]:
        """Every finding stored for a study."""
        rows = self._conn.execute(select(_F.data).where(_F.study_uid == study_uid).order_by(_F.id)).scalars()
        return [finding_from_json(d) for d in rows]

    def prior_findings(self, patient_id: str, *, before: date) -> list[MeasuredFinding]:
        """The patient's findings from studies dated before ``before``."""
        rows = self._conn.execute(
            select(_F.data).where(_F.patient_id == patient_id, _F.study_date < before).order_by(_F.study_date, _F.id)
        ).scalars()
        return [finding_from_json(d) for d in rows]

    # ---- recommendations ----------------------------------------------------------------
    def recommendation(self, rec_id: str) -> tuple[Recommendation, int] | None:
        """A recommendation and its version, or ``None``."""
        row = self._conn.execute(select(_R.data, _R.version).where(_R.id == rec_id)).first()
        return None if row is None else (recommendation_from_json(row.data), int(row.version))

    def open_recommendations(self, patient_id: str) -> list[Recommendation]:
        """The patient's recommendations that are proposed or overdue."""
        rows = self._conn.execute(
            select(_R.data).where(_R.patient_id == patient_id, _R.state.in_(_OPEN)).order_by(_R.due_by, _R.id)
        ).scalars()
        return [recommendation_from_json(d) for d in rows]

    def open_recommendations_of_ehr_patient(
        self, ehr_patient_id: str, *, patient_identifiers: Sequence[str] = ()
    ) -> list[Recommendation]:
        """Open recommendations that may be the EHR patient's: recorded with that EHR Patient id, or recorded with
        none and with one of ``patient_identifiers`` (candidates: the caller decides with
        :func:`~radcds_fusion.domain.recommendations.is_patient_of`)."""
        who = _R.ehr_patient_id == ehr_patient_id
        if patient_identifiers:
            who = or_(who, and_(_R.ehr_patient_id.is_(None), _R.patient_identifier.in_(list(patient_identifiers))))
        rows = self._conn.execute(select(_R.data).where(who, _R.state.in_(_OPEN)).order_by(_R.due_by, _R.id)).scalars()
        return [recommendation_from_json(d) for d in rows]

    def due_before(self, day: date, *, limit: int = 500) -> list[Recommendation]:
        """Proposed recommendations whose due date is before ``day`` (the overdue sweep)."""
        rows = self._conn.execute(
            select(_R.data)
            .where(and_(_R.state == RecommendationState.PROPOSED.value, _R.due_by < day))
            .order_by(_R.due_by, _R.id)
            .limit(limit)
        ).scalars()
        return [recommendation_from_json(d) for d in rows]

    def search_recommendations(
        self, *, patient_id: str | None, states: Iterable[str] | None, patient_identifier: str | None = None
    ) -> list[tuple[Recommendation, int]]:
        """Recommendations by patient (radcds id or the EHR's identifier) and state (the FHIR search)."""
        query = select(_R.data, _R.version).order_by(_R.due_by, _R.id)
        if patient_id is not None:
            query = query.where(_R.patient_id == patient_id)
        if patient_identifier is not None:
            query = query.where(_R.patient_identifier == patient_identifier)
        if states is not None:
            query = query.where(_R.state.in_(list(states)))
        return [(recommendation_from_json(r.data), int(r.version)) for r in self._conn.execute(query)]

    def save_recommendation(self, rec: Recommendation, *, at: datetime) -> int:
        """Insert or update ``rec``; returns its new version."""
        row = self._conn.execute(select(_R.version).where(_R.id == rec.id)).first()
        values: dict[str, Any] = {
            "patient_id": rec.patient_id,
            "patient_identifier": rec.patient_identifier,
            "ehr_patient_id": rec.ehr_patient_id,
            "state": rec.state.value,
            "due_by": rec.due_by,
            "data": recommendation_to_json(rec),
            "updated_at": at,
        }
        if row is None:
            self._conn.execute(insert(fusion_recommendations).values(id=rec.id, version=1, **values))
            return 1
        version = int(row.version) + 1
        self._conn.execute(update(fusion_recommendations).where(_R.id == rec.id).values(version=version, **values))
        return version

    # ---- assessments ----------------------------------------------------------------------
    def save_assessment(self, *, study_uid: str, patient_id: str, payload: dict[str, Any], at: datetime) -> int:
        """Store the latest assessment of a study; returns its version (1, 2, ...)."""
        row = self._conn.execute(select(_A.version).where(_A.study_uid == study_uid)).first()
        if row is None:
            self._conn.execute(
                insert(fusion_assessments).values(
                    study_uid=study_uid, patient_id=patient_id, version=1, payload=payload, updated_at=at
                )
            )
            return 1
        version = int(row.version) + 1
        self._conn.execute(
            update(fusion_assessments)
            .where(_A.study_uid == study_uid)
            .values(version=version, payload=payload, updated_at=at)
        )
        return version

    def next_assessment_version(self, study_uid: str) -> int:
        """The version the next assessment of ``study_uid`` will get."""
        row = self._conn.execute(select(_A.version).where(_A.study_uid == study_uid)).first()
        return 1 if row is None else int(row.version) + 1

    def assessment(self, study_uid: str) -> dict[str, Any] | None:
        """The latest assessment payload of a study."""
        row = self._conn.execute(select(_A.payload).where(_A.study_uid == study_uid)).first()
        return None if row is None else dict(row.payload)
