"""The radiologists' feedback rows (``finding_feedback``) and the AI findings they are about (``worklist_findings``),
read and written on the caller's connection (SQLAlchemy Core), inside its transaction."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, insert, select

from radcds_worklist.db.tables import finding_feedback, worklist_findings

_F = finding_feedback.c
_W = worklist_findings.c


def utc(moment: datetime) -> datetime:
    """``moment`` as an aware UTC time (SQLite gives back naive UTC)."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


@dataclass(frozen=True, slots=True)
class FindingRow:
    """One AI analysis on the worklist: ``data`` is the FINDINGS_PRODUCED payload."""

    finding_id: str
    study_uid: str
    model_name: str
    model_version: str
    not_analysed_reason: str
    data: dict[str, Any]


@dataclass(frozen=True, slots=True)
class FeedbackRow:
    """One recorded decision."""

    feedback_id: str
    finding_id: str
    finding_code: str
    user_id: str
    action: str
    reason_code: str
    reason_text: str
    recorded_at: datetime


def _finding(row: Any) -> FindingRow:
    return FindingRow(
        row.finding_id, row.study_uid, row.model_name, row.model_version, row.not_analysed_reason, dict(row.data)
    )


def _feedback(row: Any) -> FeedbackRow:
    return FeedbackRow(
        row.feedback_id,
        row.finding_id,
        row.finding_code,
        row.user_id,
        row.action,
        row.reason_code,
        row.reason_text,
        utc(row.recorded_at),
    )


class FeedbackRepository:
    """Feedback and findings on one connection."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn

    def finding(self, finding_id: str) -> FindingRow | None:
        """The AI analysis with this id, if the worklist has it."""
        row = self._conn.execute(select(worklist_findings).where(_W.finding_id == finding_id)).first()
        return _finding(row) if row is not None else None

    def findings_of_study(self, study_uid: str) -> list[FindingRow]:
        """The study's AI analyses, in a stable order."""
        rows = self._conn.execute(
            select(worklist_findings).where(_W.study_uid == study_uid).order_by(_W.produced_at, _W.finding_id)
        ).all()
        return [_finding(r) for r in rows]

    def get(self, feedback_id: str) -> FeedbackRow | None:
        """One decision by id."""
        row = self._conn.execute(select(finding_feedback).where(_F.feedback_id == feedback_id)).first()
        return _feedback(row) if row is not None else None

    def latest_by_user(self, *, finding_id: str, finding_code: str, user_id: str) -> FeedbackRow | None:
        """The user's latest decision on one finding item."""
        row = self._conn.execute(
            select(finding_feedback)
            .where(_F.finding_id == finding_id, _F.finding_code == finding_code, _F.user_id == user_id)
            .order_by(_F.recorded_at.desc())
            .limit(1)
        ).first()
        return _feedback(row) if row is not None else None

    def decided_findings(self, study_uid: str) -> set[str]:
        """Ids of the study's findings that already have a decision."""
        rows = self._conn.execute(select(_F.finding_id).where(_F.study_uid == study_uid).distinct()).all()
        return {r.finding_id for r in rows}

    def latest_of_study(self, study_uid: str) -> dict[str, FeedbackRow]:
        """The latest decision on each of the study's findings, by finding id."""
        rows = self._conn.execute(
            select(finding_feedback).where(_F.study_uid == study_uid).order_by(_F.recorded_at, _F.feedback_id)
        ).all()
        return {r.finding_id: _feedback(r) for r in rows}

    def add(self, values: dict[str, Any]) -> None:
        """Insert one decision row (the columns of ``finding_feedback``)."""
        self._conn.execute(insert(finding_feedback).values(**values))
