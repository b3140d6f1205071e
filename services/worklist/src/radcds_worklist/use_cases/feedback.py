"""Recording the radiologists' decisions on AI findings: each decision, in one transaction, is a ``finding_feedback``
row holding its FHIR R4 Observation, a FINDING_FEEDBACK_RECORDED event in the outbox and a live ``feedback``
change; then the model's monitoring thresholds are checked in the same transaction."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, datetime

from sqlalchemy import Connection, Engine
from sqlalchemy.exc import IntegrityError

from radcds.adapters.db.outbox import enqueue
from radcds.adapters.fhir.report import patient_id_for
from radcds.domain.events import FINDING_FEEDBACK_RECORDED, FindingFeedbackRecorded, ImagingFindingsProduced
from radcds.domain.findings import ModelIdentity
from radcds_worklist.adapters.db.feedback import FeedbackRepository, FeedbackRow, FindingRow
from radcds_worklist.adapters.db.live import append_live
from radcds_worklist.adapters.fhir import ai_observation_id, feedback_observation
from radcds_worklist.domain.access import User
from radcds_worklist.domain.feedback import Action, AiFinding, FindingDecision
from radcds_worklist.use_cases.monitoring import MonitoringDesk, RaisedAlert


class FindingNotFound(LookupError):
    """No AI finding on the worklist has this id (HTTP 404)."""


def ai_finding(row: FindingRow, code: str = "") -> AiFinding:
    """The AI finding of a worklist row, narrowed to one coded finding or measurement ``code`` (with its display and
    the id of reporting's Observation for it) when given; ``FindingNotFound`` when the analysis has no such code."""
    analysis = ImagingFindingsProduced.from_payload(row.data).analysis
    display, observation_id = "", ""
    if code:
        sop = analysis.instance.sop_instance_uid
        coded = {c.code: c.display for c in analysis.findings}
        measured = {m.code.code: m.code.display for m in analysis.measurements}
        if code in coded:
            display, observation_id = coded[code], ai_observation_id(sop, row.model_name, code, coded_finding=True)
        elif code in measured:
            display, observation_id = measured[code], ai_observation_id(sop, row.model_name, code, coded_finding=False)
        else:
            raise FindingNotFound(f"the analysis has no finding or measurement {code!r}")
    return AiFinding(
        finding_id=row.finding_id,
        study_uid=row.study_uid,
        model=ModelIdentity(row.model_name, row.model_version),
        code=code,
        display=display,
        observation_id=observation_id,
        patient_ref=f"Patient/{patient_id_for(analysis.context)}",
    )


class FeedbackDesk:
    """The radiologists' decisions on AI findings; ``monitoring`` checks the thresholds after each."""

    def __init__(
        self,
        *,
        engine: Engine,
        monitoring: MonitoringDesk | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        after_commit: Callable[[], None] = lambda: None,
    ) -> None:
        self._engine = engine
        self._monitoring = monitoring
        self._clock = clock
        self._after_commit = after_commit

    def finding(self, finding_id: str, code: str = "") -> AiFinding:
        """The AI finding to decide on, as the worklist knows it (never as a form describes it)."""
        with self._engine.connect() as conn:
            row = FeedbackRepository(conn).finding(finding_id)
        if row is None:
            raise FindingNotFound(finding_id)
        return ai_finding(row, code)

    def decisions(self, study_uid: str) -> dict[str, FeedbackRow]:
        """The latest decision on each AI finding of the study, by finding id (what the study page shows)."""
        with self._engine.connect() as conn:
            return FeedbackRepository(conn).latest_of_study(study_uid)

    def record(self, decision: FindingDecision) -> str:
        """Record one decision and return its feedback id; the same request again returns the same id and records
        nothing more. Raises ``Forbidden`` unless the user may sign, ``FindingNotFound`` for an unknown finding."""
        decision.user.require_sign()
        try:
            with self._engine.begin() as conn:
                feedback_id, new = self._record_in(conn, decision)
                alerts = self._evaluate(conn, [decision.finding.model] if new else [])
        except IntegrityError:  # the same named request, committed by a concurrent call: answer with its id
            existing = decision.deterministic_id()
            with self._engine.connect() as conn:
                if existing is None or FeedbackRepository(conn).get(existing) is None:
                    raise
            return existing
        self._committed(alerts)
        return feedback_id

    def record_accepted_for_study(
        self, *, study_uid: str, user: User, report_id: str | None, action: Action = Action.ACCEPTED
    ) -> list[str]:
        """The radiologist signed the draft as it was (``accepted``) or edited (``edited``): that decision for each
        AI finding of the study that was analysed and has no decision yet (a rejected one stands). Returns the new
        feedback ids."""
        user.require_sign()
        with self._engine.begin() as conn:
            repo = FeedbackRepository(conn)
            decided = repo.decided_findings(study_uid)
            ids: list[str] = []
            models: list[ModelIdentity] = []
            for row in repo.findings_of_study(study_uid):
                if row.not_analysed_reason or row.finding_id in decided:
                    continue
                decision = FindingDecision(
                    ai_finding(row), action, user, report_id=report_id, request_id=f"sign|{report_id or ''}"
                )
                feedback_id, new = self._record_in(conn, decision)
                if new:
                    ids.append(feedback_id)
                    if decision.finding.model not in models:
                        models.append(decision.finding.model)
            alerts = self._evaluate(conn, models)
        self._committed(alerts)
        return ids

    def _record_in(self, conn: Connection, decision: FindingDecision) -> tuple[str, bool]:
        repo = FeedbackRepository(conn)
        finding, user = decision.finding, decision.user
        row = repo.finding(finding.finding_id)
        if (
            row is None
            or row.study_uid != finding.study_uid
            or (row.model_name, row.model_version)
            != (
                finding.model.name,
                finding.model.version,
            )
        ):
            raise FindingNotFound(finding.finding_id)
        named = decision.deterministic_id()
        if named is not None and repo.get(named) is not None:
            return named, False
        if named is None:
            latest = repo.latest_by_user(finding_id=finding.finding_id, finding_code=finding.code, user_id=user.id)
            if latest is not None and decision.same_as(latest.action, latest.reason_code, latest.reason_text):
                return latest.feedback_id, False
        feedback_id = named or str(uuid.uuid4())
        now = self._clock()
        resource = feedback_observation(decision, feedback_id=feedback_id, recorded_at=now)
        reason = decision.reason.value if decision.reason else ""
        repo.add(
            {
                "feedback_id": feedback_id,
                "finding_id": finding.finding_id,
                "study_uid": finding.study_uid,
                "model_name": finding.model.name,
                "model_version": finding.model.version,
                "finding_code": finding.code,
                "action": decision.action.value,
                "reason_code": reason,
                "reason_text": decision.reason_text,
                "user_id": user.id,
                "user_name": user.name,
                "practitioner": user.practitioner,
                "report_id": decision.report_id,
                "recorded_at": now,
                "resource": resource,
            }
        )
        event = FindingFeedbackRecorded(
            feedback_id=feedback_id,
            study_instance_uid=finding.study_uid,
            finding_id=finding.finding_id,
            model=finding.model,
            action=decision.action.value,
            practitioner=user.practitioner,
            recorded_at=now.isoformat(),
            finding_code=finding.code,
            reason_code=reason,
            reason_text=decision.reason_text,
            diagnostic_report_id=decision.report_id or "",
        )
        enqueue(conn, FINDING_FEEDBACK_RECORDED, [(event.to_payload(), feedback_id, finding.study_uid)])
        append_live(
            conn,
            "feedback",
            finding.study_uid,
            {
                "feedbackId": feedback_id,
                "findingId": finding.finding_id,
                "findingCode": finding.code,
                "action": decision.action.value,
                "reasonCode": reason,
                "model": finding.model.name,
                "modelVersion": finding.model.version,
                "by": user.name,
            },
        )
        return feedback_id, True

    def _evaluate(self, conn: Connection, models: list[ModelIdentity]) -> list[RaisedAlert]:
        if self._monitoring is None:
            return []
        return [alert for model in models for alert in self._monitoring.evaluate(conn, model)]

    def _committed(self, alerts: list[RaisedAlert]) -> None:
        if self._monitoring is not None:
            self._monitoring.committed(alerts)
        self._after_commit()
