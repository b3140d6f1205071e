"""Use case: store the FHIR resources for a findings event and publish ``DiagnosticReportStored``."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, Engine

from radcds.adapters.db.idempotency import already_processed, mark_processed
from radcds.adapters.db.outbox import enqueue
from radcds.adapters.fhir import report
from radcds.adapters.kafka.codec import DecodedEvent
from radcds.domain.events import (
    ASSESSMENT_PRODUCED,
    FINDINGS_PRODUCED,
    REPORT_STORED,
    STUDY_AVAILABLE,
    DiagnosticReportStored,
    ImagingFindingsProduced,
)
from radcds_reporting.adapters.assessments import context_for, store_assessment
from radcds_reporting.adapters.fhir import reporting as fhir_reporting
from radcds_reporting.adapters.narrative import conclusion, content_of, models_used, presented_forms
from radcds_reporting.adapters.repository import FhirRepository, fhir_instant
from radcds_reporting.domain.ports import OutboxNotifier
from radcds_reporting.domain.report_status import SIGNED, ReportStatus
from radcds_reporting.use_cases import critical
from radcds_reporting.use_cases.orders import find_order
from radcds_reporting.use_cases.oru import ResultOutbox

log = logging.getLogger(__name__)
REPORT_EVENT_NAMESPACE = uuid.UUID("9a7e4f0c-1d2b-4c3a-8e5f-7b6a5c4d3e21")
DEFAULT_RECIPIENT = "Ordering clinician's team (order unknown): radiology reading room"


def _distinct_devices(observations: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The Device references of the Observations (one per model version), in order of first use."""
    out: list[dict[str, Any]] = []
    for o in observations:
        if o.get("device") and o["device"] not in out:
            out.append(o["device"])
    return out


def _accession_of(study: dict[str, Any]) -> str:
    """The ImagingStudy's accession number (identifier of type ACSN), "" when none."""
    return next(
        (
            str(i.get("value", ""))
            for i in study.get("identifier", [])
            if any(c.get("code") == "ACSN" for c in i.get("type", {}).get("coding", []))
        ),
        "",
    )


class ReportingService:
    """Turns findings into FHIR resources, exactly once per event id (idempotent handler)."""

    def __init__(
        self,
        *,
        engine: Engine,
        consumer_group: str,
        default_recipient: str = DEFAULT_RECIPIENT,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        results: ResultOutbox | None = None,
        relay: OutboxNotifier | None = None,
    ) -> None:
        self._engine = engine
        self._results = results
        self._clock = clock
        #: Publishes the outbox after each commit (the app's one relay; None: events wait in the outbox).
        self._relay = relay
        self._group = consumer_group
        self._default_recipient = default_recipient

    def handle(self, event: DecodedEvent) -> None:
        """Handle ``ImagingStudyAvailable``, ``ImagingFindingsProduced`` and fusion's
        ``assessment.produced`` events (others are ignored)."""
        if event.kind is STUDY_AVAILABLE:
            self._store_imaging_study(event)
            return
        if event.kind is ASSESSMENT_PRODUCED:
            self._apply_assessment(event)
            return
        if event.kind is not FINDINGS_PRODUCED:
            return
        analysis = ImagingFindingsProduced.from_payload(event.payload).analysis
        study_uid = analysis.instance.study_instance_uid
        accession = analysis.context.accession_number
        now = self._clock()
        with self._engine.begin() as conn:
            if already_processed(conn, consumer_group=self._group, event_id=event.id):
                log.info("duplicate event skipped", extra={"event_id": event.id})
                return
            repo = FhirRepository(conn)
            study_id = report.imaging_study_id(study_uid)
            parts = report.analysis_resources(analysis, existing_study=repo.read("ImagingStudy", study_id), now=now)
            order = find_order(conn, accession_number=accession, study_instance_uid=study_uid)
            study = parts.imaging_study
            if order is not None and not study.get("basedOn"):
                study["basedOn"] = [{"reference": f"ServiceRequest/{order['id']}"}]
            # EHR order demographics are authoritative: the header fills only what the stored Patient lacks.
            repo.upsert(report.merge_patient(repo.read("Patient", parts.patient["id"]), parts.patient), now=now)
            repo.upsert(parts.organization, now=now)
            repo.upsert(parts.device, now=now)
            repo.upsert(study, study_instance_uid=study_uid, now=now)
            for obs in parts.observations:
                repo.upsert(obs, study_instance_uid=study_uid, now=now)
            repo.upsert(parts.provenance, study_instance_uid=study_uid, now=now)
            self._write_report(
                conn,
                repo,
                study=study,
                study_uid=study_uid,
                accession=accession,
                order=order,
                now=now,
                event_id=event.id,
            )
            mark_processed(conn, consumer_group=self._group, event_id=event.id)
        self._notify()

    def _write_report(
        self,
        conn: Connection,
        repo: FhirRepository,
        *,
        study: dict[str, Any],
        study_uid: str,
        accession: str,
        order: dict[str, Any] | None,
        now: datetime,
        event_id: str,
    ) -> bool:
        """Write the study's preliminary DiagnosticReport (a new version), its ORU, Provenance,
        critical-result Communications and ``DiagnosticReportStored``, from every Observation of the
        study and fusion's latest assessment; False, writing nothing, once a radiologist signed it.

        The report never waits for the assessment: without one its context sections say pending,
        and the assessment's arrival writes the next version (docs/reporting.md).
        """
        report_id = report.diagnostic_report_id(study_uid)
        current = repo.read("DiagnosticReport", report_id)
        if current is not None and current["status"] in SIGNED | {ReportStatus.ENTERED_IN_ERROR}:
            # A radiologist owns the report now: new results are stored but do not rewrite it.
            log.info("report already signed; new results not merged", extra={"report_id": report_id})
            return False
        _, all_obs = repo.search("Observation", study_instance_uid=study_uid, count=1000)
        all_obs.sort(key=lambda o: o["id"])
        context = context_for(conn, study_uid)
        issued = fhir_instant(now)
        label = study.get("description") or f"Study {study_uid}"
        dr = fhir_reporting.diagnostic_report(
            report_id=report_id,
            study=study,
            observations=all_obs,
            accession_number=accession,
            service_request=order,
            conclusion=conclusion(all_obs, context=context),
            presented_form=presented_forms(content_of(label, all_obs, context=context), creation=issued),
            issued=issued,
        )
        dr = repo.upsert(dr, study_instance_uid=study_uid, now=now)
        if self._results is not None:
            # The preliminary ORU (OBR-25 P) is queued with the report version it carries.
            self._results.enqueue_in(conn, report=dr)
        repo.upsert(
            fhir_reporting.report_provenance(
                dr,
                models=models_used(all_obs),
                recorded=issued,
                devices=_distinct_devices(all_obs),
            ),
            study_instance_uid=study_uid,
            now=now,
        )
        communication_ids = critical.communicate(
            conn,
            dr=dr,
            observations=all_obs,
            service_request=order,
            study_instance_uid=study_uid,
            default_recipient=self._default_recipient,
            now=now,
        )
        stored = DiagnosticReportStored(
            dr["id"],
            study_uid,
            dr["status"],
            tuple(o["id"] for o in all_obs),
            version_id=dr["meta"]["versionId"],
            service_request_ids=(order["id"],) if order else (),
            accession_number=accession,
            critical=bool(communication_ids),
            communication_ids=tuple(communication_ids),
        )
        # Written to the outbox in this transaction; the relay publishes it after the commit.
        enqueue(
            conn,
            REPORT_STORED,
            [(stored.to_payload(), str(uuid.uuid5(REPORT_EVENT_NAMESPACE, event_id)), study_uid)],
        )
        return True

    def _apply_assessment(self, event: DecodedEvent) -> None:
        """Keep fusion's assessment and rewrite the study's preliminary report with its sections.

        The report is written when the ImagingStudy is known here (a study with only another
        product's measurement SR has no AI findings but gets its report); otherwise the assessment
        waits for the findings or the ``study.available`` that follow. An older version than the
        one kept changes nothing (redelivery, reordering).
        """
        payload: dict[str, Any] = event.payload
        study_uid = str(payload["studyInstanceUid"])
        now = self._clock()
        written = False
        with self._engine.begin() as conn:
            if already_processed(conn, consumer_group=self._group, event_id=event.id):
                log.info("duplicate event skipped", extra={"event_id": event.id})
                return
            repo = FhirRepository(conn)
            if store_assessment(conn, payload, now=now):
                written = self._report_from_stored_study(conn, repo, study_uid=study_uid, now=now, event_id=event.id)
            else:
                log.info("older assessment version ignored", extra={"version": payload["version"]})
            mark_processed(conn, consumer_group=self._group, event_id=event.id)
        if written:
            self._notify()

    def _report_from_stored_study(
        self, conn: Connection, repo: FhirRepository, *, study_uid: str, now: datetime, event_id: str
    ) -> bool:
        study = repo.read("ImagingStudy", report.imaging_study_id(study_uid))
        if study is None:
            return False
        accession = _accession_of(study)
        order = find_order(conn, accession_number=accession, study_instance_uid=study_uid)
        return self._write_report(
            conn, repo, study=study, study_uid=study_uid, accession=accession, order=order, now=now, event_id=event_id
        )

    def _notify(self) -> None:
        if self._relay is not None:
            self._relay.notify()
        if self._results is not None:
            self._results.notify()

    def _store_imaging_study(self, event: DecodedEvent) -> None:
        """Store the ImagingStudy imaging announced (R4 DICOM mapping), keeping instances already known here."""
        study: dict[str, Any] = event.payload["imagingStudy"]
        study_uid = event.payload["studyInstanceUid"]
        with self._engine.begin() as conn:
            if already_processed(conn, consumer_group=self._group, event_id=event.id):
                return
            repo = FhirRepository(conn)
            known = repo.read("ImagingStudy", study["id"])
            if known is not None:
                ours = {i["uid"] for s in study.get("series", []) for i in s.get("instance", [])}
                for series in known.get("series", []):
                    extra = [i for i in series.get("instance", []) if i["uid"] not in ours]
                    target = next((s for s in study.get("series", []) if s["uid"] == series["uid"]), None)
                    if target is None and extra:
                        study.setdefault("series", []).append({**series, "instance": extra})
                    elif target is not None:
                        target.setdefault("instance", []).extend(extra)
                if known.get("basedOn") and not study.get("basedOn"):
                    study["basedOn"] = known["basedOn"]
            if not study.get("basedOn"):
                order = find_order(conn, accession_number=_accession_of(study), study_instance_uid=study_uid)
                if order is not None:
                    study["basedOn"] = [{"reference": f"ServiceRequest/{order['id']}"}]
            repo.upsert(study, study_instance_uid=study_uid)
            written = False
            waiting = context_for(conn, study_uid) is not None
            if waiting and repo.read("DiagnosticReport", report.diagnostic_report_id(study_uid)) is None:
                # fusion assessed the study before it was complete here (e.g. another product's SR):
                # its report is written now.
                written = self._report_from_stored_study(
                    conn, repo, study_uid=study_uid, now=self._clock(), event_id=event.id
                )
            mark_processed(conn, consumer_group=self._group, event_id=event.id)
        if written:
            self._notify()
