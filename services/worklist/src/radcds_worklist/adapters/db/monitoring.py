"""Monitoring's rows: input profiles, thresholds and alerts, and the feedback of one model version joined with its
studies' report status; on the caller's connection (SQLAlchemy Core)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Connection, delete, func, insert, select

from radcds.domain.findings import ModelIdentity
from radcds_worklist.adapters.db.feedback import utc
from radcds_worklist.db.tables import (
    finding_feedback,
    input_profiles,
    model_alerts,
    monitoring_thresholds,
    worklist_studies,
)
from radcds_worklist.domain.monitoring import SIGNED_STATUSES, FeedbackRecord, InputProfile

_F = finding_feedback.c
_P = input_profiles.c
_T = monitoring_thresholds.c
_A = model_alerts.c
_S = worklist_studies.c


class MonitoringRepository:
    """Monitoring's reads and writes on one connection."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn

    def upsert_profile(self, profile: InputProfile, model: ModelIdentity) -> None:
        """Write the profile of one analysis, replacing an earlier one of the same finding (redelivery)."""
        self._conn.execute(delete(input_profiles).where(_P.finding_id == profile.finding_id))
        self._conn.execute(
            insert(input_profiles).values(
                finding_id=profile.finding_id,
                study_uid=profile.study_uid,
                model_name=model.name,
                model_version=model.version,
                manufacturer=profile.manufacturer,
                manufacturer_model=profile.manufacturer_model,
                kvp=profile.kvp,
                slice_thickness_mm=profile.slice_thickness_mm,
                patient_age_years=profile.patient_age_years,
                outside_envelope_reason=profile.outside_envelope_reason,
                recorded_at=profile.recorded_at,
            )
        )

    def profiles(self, model: ModelIdentity) -> list[InputProfile]:
        """Every profile of one model version."""
        rows = self._conn.execute(
            select(input_profiles).where(_P.model_name == model.name, _P.model_version == model.version)
        ).all()
        return [
            InputProfile(
                finding_id=r.finding_id,
                study_uid=r.study_uid,
                recorded_at=utc(r.recorded_at),
                manufacturer=r.manufacturer,
                manufacturer_model=r.manufacturer_model,
                kvp=r.kvp,
                slice_thickness_mm=r.slice_thickness_mm,
                patient_age_years=r.patient_age_years,
                outside_envelope_reason=r.outside_envelope_reason,
            )
            for r in rows
        ]

    def feedback(self, model: ModelIdentity) -> list[FeedbackRecord]:
        """Every decision on one model version's findings, with whether the study's report is signed now."""
        rows = self._conn.execute(
            select(finding_feedback, _S.report_status)
            .select_from(finding_feedback.outerjoin(worklist_studies, _S.study_uid == _F.study_uid))
            .where(_F.model_name == model.name, _F.model_version == model.version)
        ).all()
        return [
            FeedbackRecord(
                finding_id=r.finding_id,
                study_uid=r.study_uid,
                finding_code=r.finding_code,
                action=r.action,
                reason_code=r.reason_code,
                recorded_at=utc(r.recorded_at),
                signed=(r.report_status or "") in SIGNED_STATUSES,
            )
            for r in rows
        ]

    def models(self) -> list[ModelIdentity]:
        """Every model version monitoring has seen (profiled or decided on), by name and version."""
        seen = {
            (r.model_name, r.model_version)
            for table in (input_profiles, finding_feedback)
            for r in self._conn.execute(select(table.c.model_name, table.c.model_version).distinct()).all()
        }
        return [ModelIdentity(n, v) for n, v in sorted(seen)]

    def thresholds(self, model_name: str) -> dict[str, float]:
        """The thresholds an admin set for one model (all its versions)."""
        rows = self._conn.execute(select(_T.metric, _T.threshold).where(_T.model_name == model_name)).all()
        return {r.metric: float(r.threshold) for r in rows}

    def set_threshold(self, *, model_name: str, metric: str, threshold: float, user_id: str, at: datetime) -> None:
        """Set (or replace) one threshold."""
        self._conn.execute(delete(monitoring_thresholds).where(_T.model_name == model_name, _T.metric == metric))
        self._conn.execute(
            insert(monitoring_thresholds).values(
                model_name=model_name, metric=metric, threshold=threshold, updated_by=user_id, updated_at=at
            )
        )

    def alerted_since(self, model: ModelIdentity, metric: str, since: datetime) -> bool:
        """True when an alert for this metric was raised at or after ``since``."""
        count = self._conn.execute(
            select(func.count())
            .select_from(model_alerts)
            .where(
                _A.model_name == model.name,
                _A.model_version == model.version,
                _A.metric == metric,
                _A.raised_at >= since,
            )
        ).scalar_one()
        return int(count) > 0

    def add_alert(self, values: dict[str, Any]) -> None:
        """Insert one alert row."""
        self._conn.execute(insert(model_alerts).values(**values))

    def alerts(self, model: ModelIdentity, *, limit: int = 50) -> list[dict[str, Any]]:
        """The model version's latest alerts, newest first."""
        rows = self._conn.execute(
            select(model_alerts)
            .where(_A.model_name == model.name, _A.model_version == model.version)
            .order_by(_A.raised_at.desc())
            .limit(limit)
        ).all()
        return [
            {
                "alert_id": r.alert_id,
                "metric": r.metric,
                "value": r.value,
                "threshold": r.threshold,
                "raised_at": utc(r.raised_at),
            }
            for r in rows
        ]
