"""Use case: store the FHIR resources for a findings event and publish ``DiagnosticReportStored``."""

from __future__ import annotations

import logging
import uuid
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine

from radcds.adapters.db.idempotency import already_processed, mark_processed
from radcds.adapters.fhir import report
from radcds.adapters.kafka.codec import DecodedEvent
from radcds.domain import codes
from radcds.domain.events import (
    FINDINGS_PRODUCED,
    REPORT_STORED,
    STUDY_AVAILABLE,
    DiagnosticReportStored,
    ImagingFindingsProduced,
)
from radcds.domain.ports import EventPublisher
from radcds_reporting.narrative import conclusion, html_attachment, render_html
from radcds_reporting.repository import FhirRepository

log = logging.getLogger(__name__)
REPORT_EVENT_NAMESPACE = uuid.UUID("9a7e4f0c-1d2b-4c3a-8e5f-7b6a5c4d3e21")


class ReportingService:
    """Turns findings into FHIR resources, exactly once per event id (idempotent handler)."""

    def __init__(self, *, engine: Engine, publisher: EventPublisher, consumer_group: str) -> None:
        self._engine = engine
        self._publisher = publisher
        self._group = consumer_group

    def handle(self, event: DecodedEvent) -> None:
        """Handle ``ImagingStudyAvailable`` and ``ImagingFindingsProduced`` events (others are ignored)."""
        if event.kind is STUDY_AVAILABLE:
            self._store_imaging_study(event)
            return
        if event.kind is not FINDINGS_PRODUCED:
            return
        analysis = ImagingFindingsProduced.from_payload(event.payload).analysis
        study_uid = analysis.instance.study_instance_uid
        now = datetime.now(UTC)
        with self._engine.begin() as conn:
            if already_processed(conn, consumer_group=self._group, event_id=event.id):
                log.info("duplicate event skipped", extra={"event_id": event.id})
                return
            repo = FhirRepository(conn)
            study_id = report.imaging_study_id(study_uid)
            parts = report.analysis_resources(analysis, existing_study=repo.read("ImagingStudy", study_id), now=now)
            repo.upsert(parts.patient)
            repo.upsert(parts.imaging_study, study_instance_uid=study_uid)
            for obs in parts.observations:
                repo.upsert(obs, study_instance_uid=study_uid)
            _, all_obs = repo.search("Observation", study_instance_uid=study_uid, count=1000)
            all_obs.sort(key=lambda o: o["id"])
            dr = self._diagnostic_report(analysis.context.accession_number, study_uid, parts, all_obs, now)
            dr = repo.upsert(dr, study_instance_uid=study_uid)
            repo.upsert(parts.provenance, study_instance_uid=study_uid)
            mark_processed(conn, consumer_group=self._group, event_id=event.id)
            stored = DiagnosticReportStored(dr["id"], study_uid, dr["status"], tuple(o["id"] for o in all_obs))
            # Published inside the transaction: if Kafka fails, nothing is committed and the event
            # is retried; a crash after publishing re-sends the same event id (consumers dedupe).
            self._publisher.publish(
                REPORT_STORED,
                stored.to_payload(),
                event_id=str(uuid.uuid5(REPORT_EVENT_NAMESPACE, event.id)),
                subject=study_uid,
            )

    def _store_imaging_study(self, event: DecodedEvent) -> None:
        """Store the ImagingStudy imaging announced (R4 DICOM mapping), keeping instances already known here."""
        study = event.payload["imagingStudy"]
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
            repo.upsert(study, study_instance_uid=study_uid)
            mark_processed(conn, consumer_group=self._group, event_id=event.id)

    @staticmethod
    def _diagnostic_report(
        accession: str,
        study_uid: str,
        parts: report.AnalysisResources,
        observations: list[dict[str, Any]],
        now: datetime,
    ) -> dict[str, Any]:
        study = parts.imaging_study
        label = study.get("description") or f"Study {study_uid}"
        dr: dict[str, Any] = {
            "resourceType": "DiagnosticReport",
            "id": report.diagnostic_report_id(study_uid),
            "status": "preliminary",
            "category": [
                {"coding": [report.coding(codes.CATEGORY_RADIOLOGY)]},
                {"coding": [report.coding(codes.SECTION_RADIOLOGY)]},
            ],
            "code": {"coding": [report.coding(codes.REPORT_DIAGNOSTIC_IMAGING_STUDY)]},
            "subject": {"reference": f"Patient/{parts.patient['id']}"},
            "effectiveDateTime": study.get("started") or now.isoformat(),
            "issued": now.isoformat(timespec="seconds"),
            "imagingStudy": [{"reference": f"ImagingStudy/{study['id']}"}],
            "result": [{"reference": f"Observation/{o['id']}"} for o in observations],
            "conclusion": conclusion(observations),
            "presentedForm": [html_attachment(render_html(study_label=label, observations=observations))],
        }
        if accession:
            dr["identifier"] = [{"type": {"coding": [{"system": codes.V2_0203, "code": "ACSN"}]}, "value": accession}]
        return dr
