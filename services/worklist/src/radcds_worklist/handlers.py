"""The worklist's Kafka entry point: the read model built from the other services' events.

At-least-once delivery, handled once: each event is applied in one database transaction that also records it in
the kernel's processed-events table (consumer group ``consumer_group``) and writes the live events an open page
shows (:func:`~radcds_worklist.adapters.db.live.append_live`). Events may come in any order (findings before the
study, a report before its findings): the first one creates the study's row, the others fill it in; a field an
event does not know is never erased, and critical-result states only move forward.

Events (``radcds.domain.events``): ``study.available`` (imaging; the FHIR R4 ImagingStudy), ``findings.produced``
(inference; one analysis per series and model), ``assessment.produced`` (fusion), ``diagnostic-report.stored``
and ``critical-result.escalated`` (reporting), ``critical-result.acknowledged`` (reporting; read by its type and
raw payload), ``imaging-order.received`` (reporting; HL7 v2 ORM/OMI as a ServiceRequest). Others are ignored.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine, select

from radcds.adapters.db.idempotency import already_processed, mark_processed
from radcds.adapters.kafka.codec import DecodedEvent
from radcds.domain.events import (
    ASSESSMENT_PRODUCED,
    CRITICAL_RESULT_ESCALATED,
    FINDINGS_PRODUCED,
    ORDER_RECEIVED,
    REPORT_STORED,
    STUDY_AVAILABLE,
    CriticalResultEscalated,
    DiagnosticReportStored,
    ImagingFindingsProduced,
    ImagingOrderReceived,
)
from radcds_worklist.adapters.db.live import append_live
from radcds_worklist.adapters.db.studies import WorklistRepository, entry_data
from radcds_worklist.db.tables import worklist_studies
from radcds_worklist.domain.worklist import (
    PRIORITIES,
    CriticalState,
    finding_id,
    next_critical_state,
    person_name_display,
    primary_modality,
)

log = logging.getLogger(__name__)
#: reporting's acknowledgement of a critical-result Communication (declared in the kernel alongside; read here by
#: its type so that the worklist handles it as soon as reporting publishes it).
CRITICAL_RESULT_ACKNOWLEDGED_TYPE = "org.radcds.reporting.critical-result.acknowledged.v1"
#: HL7 v2 table 0203 identifier type of an accession number (R4 ImagingStudy.identifier mapping).
ACCESSION_TYPE = "ACSN"

#: What a change did, for the live stream: (kind, extra data).
Changes = list[tuple[str, dict[str, Any]]]


class WorklistService:
    """Applies the events to the worklist's database; ``after_commit`` runs after each commit that changed it."""

    def __init__(
        self,
        *,
        engine: Engine,
        consumer_group: str,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        after_commit: Callable[[], None] = lambda: None,
    ) -> None:
        self._engine = engine
        self._group = consumer_group
        self._clock = clock
        self._after_commit = after_commit

    def handle(self, event: DecodedEvent) -> None:
        """Kafka entry point: each known event updates the study it is about; other events are ignored."""
        if event.kind is STUDY_AVAILABLE:
            self.study_available(event)
        elif event.kind is FINDINGS_PRODUCED:
            self.findings_produced(event)
        elif event.kind is ASSESSMENT_PRODUCED:
            self.assessment_produced(event)
        elif event.kind is REPORT_STORED:
            self.report_stored(event)
        elif event.kind is CRITICAL_RESULT_ESCALATED:
            self.critical_escalated(event)
        elif event.type == CRITICAL_RESULT_ACKNOWLEDGED_TYPE:
            self.critical_acknowledged(event)
        elif event.kind is ORDER_RECEIVED:
            self.order_received(event)

    # ---- the events ------------------------------------------------------------------------------------------

    def study_available(self, event: DecodedEvent) -> None:
        """Imaging announced a complete study: it is on the list with what its ImagingStudy says."""
        study = event.payload.get("imagingStudy", {})
        uid = str(event.payload.get("studyInstanceUid", ""))
        values = _study_values(study)

        def change(repo: WorklistRepository, now: datetime, created: bool) -> Changes:
            changed = repo.change_study(uid, values, now=now)
            return [("study", {})] if changed or created else []

        self._apply(event.id, uid, change)

    def findings_produced(self, event: DecodedEvent) -> None:
        """A model analysed (or declined) one series: its row, the study's demographics where still empty, and the
        study's critical flag."""
        analysis = ImagingFindingsProduced.from_payload(event.payload).analysis
        inst, ctx = analysis.instance, analysis.context
        uid = inst.study_instance_uid
        fid = finding_id(uid, inst.series_instance_uid, analysis.model.name)

        def change(repo: WorklistRepository, now: datetime, created: bool) -> Changes:
            at = event.time or now
            changes: Changes = []
            filled = repo.change_study(
                uid,
                {
                    "accession_number": ctx.accession_number,
                    "patient_id": ctx.patient_id,
                    "patient_name": person_name_display(ctx.patient_name),
                    "modality": ctx.modality,
                    "study_description": ctx.study_description,
                    "study_date": ctx.study_date,
                },
                now=now,
                only_empty=True,
            )
            if filled or created:
                changes.append(("study", {}))
            written = repo.upsert_finding(
                {
                    "finding_id": fid,
                    "study_uid": uid,
                    "series_uid": inst.series_instance_uid,
                    "sop_instance_uid": inst.sop_instance_uid,
                    "model_name": analysis.model.name,
                    "model_version": analysis.model.version,
                    "critical": analysis.critical,
                    "not_analysed_reason": analysis.not_analysed_reason,
                    "data": event.payload,
                    "produced_at": at,
                }
            )
            if written:
                changes.append(("finding", {"findingId": fid, "model": analysis.model.name}))
            if analysis.critical and _flag_critical(repo, uid, at, now):
                changes.append(("critical", {}))
            return changes

        self._apply(event.id, uid, change)

    def assessment_produced(self, event: DecodedEvent) -> None:
        """fusion's assessment of the study (comparison with priors, recommendations, missing context): the newest
        version is kept; a critical assessment flags the study."""
        payload = event.payload
        uid = str(payload["studyInstanceUid"])

        def change(repo: WorklistRepository, now: datetime, created: bool) -> Changes:
            changes: Changes = [("study", {})] if created else []
            stored = (repo.study(uid) or {}).get("assessment") or {}
            if int(payload.get("version", 0)) >= int(stored.get("version", 0)) and repo.change_study(
                uid, {"assessment": payload}, now=now
            ):
                changes.append(("assessment", {"version": payload.get("version")}))
            if payload.get("critical") and _flag_critical(repo, uid, event.time or now, now):
                changes.append(("critical", {}))
            return changes

        self._apply(event.id, uid, change)

    def report_stored(self, event: DecodedEvent) -> None:
        """reporting stored a DiagnosticReport version: the study's report id, status, version and signer (an older
        version than the one held changes nothing); a critical result it communicated makes the state notified."""
        report = DiagnosticReportStored.from_payload(event.payload)
        uid = report.study_instance_uid
        if uid == "0":  # reporting did not know the study: find it by the report
            uid = self._study_of_report(report.diagnostic_report_id) or ""
            if not uid:
                self._skip(event.id)
                return

        def change(repo: WorklistRepository, now: datetime, created: bool) -> Changes:
            changes: Changes = [("study", {})] if created else []
            row = repo.study(uid) or {}
            held = str(row.get("report_version") or "")
            newer = not (held.isdigit() and report.version_id.isdigit() and int(report.version_id) < int(held))
            if row.get("report_id") not in (None, report.diagnostic_report_id):
                newer = True  # another report of the study (a new one after a cancel): the latest event wins
            values: dict[str, Any] = {"report_id": report.diagnostic_report_id}
            if newer:
                values |= {"report_status": report.status, "report_version": report.version_id}
                if report.results_interpreter:
                    values["results_interpreter"] = report.results_interpreter
            if repo.change_study(uid, values, now=now):
                changes.append(("report", {"reportId": report.diagnostic_report_id, "status": report.status}))
            repo.change_study(uid, {"accession_number": report.accession_number}, now=now, only_empty=True)
            if report.critical and report.communication_ids:
                flagged = _flag_critical(repo, uid, event.time or now, now)
                moved = _move_critical(repo, uid, CriticalState.NOTIFIED, report.communication_ids[0], now)
                if flagged or moved:
                    changes.append(("critical", {}))
            return changes

        self._apply(event.id, uid, change)

    def critical_escalated(self, event: DecodedEvent) -> None:
        """A critical result was not acknowledged in time and went to another clinician: state escalated."""
        escalated = CriticalResultEscalated.from_payload(event.payload)
        self._critical(event, escalated.study_instance_uid, CriticalState.ESCALATED, escalated.communication_id)

    def critical_acknowledged(self, event: DecodedEvent) -> None:
        """The recipient acknowledged the critical result: state acknowledged (read from the raw payload)."""
        p = event.payload
        self._critical(event, str(p["studyInstanceUid"]), CriticalState.ACKNOWLEDGED, str(p.get("communicationId", "")))

    def order_received(self, event: DecodedEvent) -> None:
        """An imaging order (new, changed or cancelled): kept for its study, whose priority follows it."""
        order = ImagingOrderReceived.from_payload(event.payload)
        wanted = str(getattr(order, "priority", "") or "routine")
        priority = wanted if wanted in PRIORITIES else "routine"
        now = self._clock()
        changed: list[str] = []
        with self._engine.begin() as conn:
            if already_processed(conn, consumer_group=self._group, event_id=event.id):
                return
            repo = WorklistRepository(conn)
            repo.save_order(
                service_request_id=order.service_request_id,
                accession_number=order.accession_number,
                study_uid=order.study_instance_uid,
                priority=priority,
                status=order.status,
                now=now,
            )
            for uid in repo.studies_for_order(
                accession_number=order.accession_number, study_uid=order.study_instance_uid
            ):
                row = repo.study(uid) or {}
                if order.status == "active":
                    values = {"order_priority": priority, "service_request_id": order.service_request_id}
                elif row.get("service_request_id") == order.service_request_id:
                    values = {"order_priority": "routine"}
                else:
                    continue
                if repo.change_study(uid, values, now=now):
                    changed.append(uid)
                    self._announce(conn, repo, uid, [("study", {})], now)
            mark_processed(conn, consumer_group=self._group, event_id=event.id)
        if changed:
            self._after_commit()

    # ---- helpers ---------------------------------------------------------------------------------------------

    def _critical(self, event: DecodedEvent, uid: str, state: CriticalState, communication_id: str) -> None:
        def change(repo: WorklistRepository, now: datetime, created: bool) -> Changes:
            flagged = _flag_critical(repo, uid, event.time or now, now)
            moved = _move_critical(repo, uid, state, communication_id, now)
            return [("critical", {"state": state.value})] if flagged or moved or created else []

        self._apply(event.id, uid, change)

    def _apply(
        self, event_id: str, study_uid: str, change: Callable[[WorklistRepository, datetime, bool], Changes]
    ) -> None:
        """Run ``change`` on the study's row (created if new) once per event, with its live events."""
        now = self._clock()
        with self._engine.begin() as conn:
            if already_processed(conn, consumer_group=self._group, event_id=event_id):
                log.info("duplicate event skipped", extra={"event_id": event_id})
                return
            repo = WorklistRepository(conn)
            created = repo.ensure_study(study_uid, now=now)
            changes = change(repo, now, created)
            if changes:
                _apply_waiting_order(repo, study_uid, now)
                self._announce(conn, repo, study_uid, changes, now)
            mark_processed(conn, consumer_group=self._group, event_id=event_id)
        if changes:
            self._after_commit()

    @staticmethod
    def _announce(conn: Any, repo: WorklistRepository, study_uid: str, changes: Changes, now: datetime) -> None:
        entry = repo.entry(study_uid, now=now)
        row = entry_data(entry, now=now) if entry is not None else {"studyUid": study_uid}
        for kind, extra in changes:
            append_live(conn, kind, study_uid, {"entry": row, **extra})

    def _skip(self, event_id: str) -> None:
        with self._engine.begin() as conn:
            if not already_processed(conn, consumer_group=self._group, event_id=event_id):
                mark_processed(conn, consumer_group=self._group, event_id=event_id)

    def _study_of_report(self, report_id: str) -> str | None:
        with self._engine.connect() as conn:
            found = conn.execute(
                select(worklist_studies.c.study_uid).where(worklist_studies.c.report_id == report_id)
            ).first()
        return str(found[0]) if found is not None else None


def _flag_critical(repo: WorklistRepository, uid: str, since: datetime, now: datetime) -> bool:
    """Mark the study critical (since the first critical event); True if it was not yet."""
    row = repo.study(uid) or {}
    if row.get("critical"):
        return False
    return repo.change_study(uid, {"critical": True, "critical_since": row.get("critical_since") or since}, now=now)


def _move_critical(
    repo: WorklistRepository, uid: str, reached: CriticalState, communication_id: str, now: datetime
) -> bool:
    row = repo.study(uid) or {}
    state = next_critical_state(str(row.get("critical_state") or ""), reached)
    values: dict[str, Any] = {"critical_state": state.value}
    if communication_id and not row.get("communication_id"):
        values["communication_id"] = communication_id
    return repo.change_study(uid, values, now=now)


def _apply_waiting_order(repo: WorklistRepository, uid: str, now: datetime) -> None:
    """An order that came before the study gives it its priority."""
    row = repo.study(uid) or {}
    if row.get("service_request_id"):
        return
    order = repo.order_for(study_uid=uid, accession_number=str(row.get("accession_number") or ""))
    if order is not None:
        repo.change_study(
            uid, {"order_priority": order["priority"], "service_request_id": order["service_request_id"]}, now=now
        )


def _study_values(study: dict[str, Any]) -> dict[str, Any]:
    """The list's columns from an R4 ImagingStudy (imaging's DICOM mapping): the fields it has, nothing erased."""
    values: dict[str, Any] = {}
    for identifier in study.get("identifier", []):
        if any(c.get("code") == ACCESSION_TYPE for c in identifier.get("type", {}).get("coding", [])):
            values["accession_number"] = str(identifier.get("value", ""))
    values["modality"] = primary_modality([str(c.get("code", "")) for c in study.get("modality", [])])
    sites = [s["bodySite"] for s in study.get("series", []) if isinstance(s.get("bodySite"), dict)]
    if sites:
        values["body_part"] = str(sites[0].get("display") or sites[0].get("code") or "")
    values["study_description"] = str(study.get("description", ""))
    values["study_date"] = str(study.get("started", ""))[:10].replace("-", "")
    subject = study.get("subject", {})
    if subject.get("display"):
        values["patient_name"] = str(subject["display"])
    if isinstance(subject.get("identifier"), dict) and subject["identifier"].get("value"):
        values["patient_id"] = str(subject["identifier"]["value"])
    return {k: v[:200] if isinstance(v, str) else v for k, v in values.items() if v}


__all__ = ["CRITICAL_RESULT_ACKNOWLEDGED_TYPE", "WorklistService"]
