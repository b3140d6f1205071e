"""Use cases of fusion: assess a study when its findings arrive, close recommendations when the study they ask
for, or an order for it (HL7 v2, CDS Hooks order-sign), arrives, mark them overdue, cancel one. Each runs in one
database transaction that also writes its events to the outbox and, for Kafka events, the processed-event record
(at-least-once delivery, idempotent handling)."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import UTC, date, datetime

from sqlalchemy import Connection, Engine

from radcds.adapters.db.idempotency import already_processed, mark_processed
from radcds.adapters.db.outbox import enqueue
from radcds.adapters.fhir.report import patient_id_for
from radcds.adapters.kafka.codec import DecodedEvent
from radcds.domain.events import (
    ASSESSMENT_PRODUCED,
    FINDINGS_ENTERED,
    FINDINGS_PRODUCED,
    INSTANCE_STORED,
    ORDER_EVALUATED,
    ORDER_RECEIVED,
    RECOMMENDATION_CHANGED,
    STUDY_AVAILABLE,
    ImagingFindingsProduced,
    ImagingInstanceStored,
    ImagingOrderReceived,
    StructuredFindingsEntered,
)
from radcds_fusion.adapters.codec import assessment_payload, recommendation_payload
from radcds_fusion.adapters.ehr_codes import NODULE_FINDINGS_SNOMED
from radcds_fusion.adapters.entered_findings import entered_findings
from radcds_fusion.adapters.fhir import service_request
from radcds_fusion.adapters.findings_event import NOT_ANALYSED, analysed_series, study_date_of
from radcds_fusion.adapters.imaging import MEASUREMENT_SR_CLASSES, ImagingInstances
from radcds_fusion.adapters.order_event import signed_order
from radcds_fusion.adapters.repository import FusionRepository
from radcds_fusion.adapters.sr_nodules import NotAMeasurementReport, ReportedNodule, read_nodules
from radcds_fusion.domain.assessment import StudyFindings, assess_study, priors_with_ehr
from radcds_fusion.domain.comparison import MeasuredFinding
from radcds_fusion.domain.context import ClinicalContext, PatientRef
from radcds_fusion.domain.recommendations import (
    InvalidTransition,
    ObservedProcedure,
    Recommendation,
    RecommendationChanged,
    cancel,
    close_matching,
    is_patient_of,
    mark_overdue,
)
from radcds_fusion.knowledge import Knowledge

log = logging.getLogger(__name__)
RECOMMENDATION_NAMESPACE = uuid.UUID("5b7c1f9e-2a43-4d8e-9c61-0f3e8d2a4b17")
#: Body regions by SNOMED CT code of ImagingStudy.series.bodySite (PS3.16 Annex L, as imaging maps them).
PULMONARY_NODULE = "427359005"
BODY_REGIONS = {"51185008": "chest", "39607008": "chest", "80891009": "chest", "69536005": "head", "12738006": "head"}


class RecommendationNotFound(LookupError):
    """No recommendation has this id."""


def recommendation_id(study_uid: str, guideline_id: str) -> str:
    """The recommendation a guideline makes for a study (one per study and guideline, whatever the re-runs)."""
    return str(uuid.uuid5(RECOMMENDATION_NAMESPACE, f"{study_uid}|{guideline_id}"))


class FusionService:
    """fusion's use cases over its database; ``context`` reads the patient's EHR context (bounded in time);
    ``mrn_system`` is the hospital's MRN identifier system (the EHR's, as in ``Patient?identifier=``)."""

    def __init__(
        self,
        *,
        engine: Engine,
        knowledge: Knowledge,
        context: Callable[[PatientRef], ClinicalContext],
        consumer_group: str,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        after_commit: Callable[[], None] = lambda: None,
        instances: ImagingInstances | None = None,
        mrn_system: str | None = None,
    ) -> None:
        self._engine = engine
        self._knowledge = knowledge
        self._context = context
        self._group = consumer_group
        self._clock = clock
        self._after_commit = after_commit
        self._instances = instances
        self._mrn_system = mrn_system

    def handle(self, event: DecodedEvent) -> None:
        """Kafka entry point: findings (inference's and the radiologist's) are assessed, measurement SRs read, studies
        and orders close recommendations; other events are ignored."""
        if event.kind is FINDINGS_PRODUCED:
            self.assess_findings(event)
        elif event.kind is FINDINGS_ENTERED:
            self.record_entered_findings(event)
        elif event.kind is STUDY_AVAILABLE:
            self.close_by_study(event)
        elif event.kind is INSTANCE_STORED and self._instances is not None:
            self.read_measurement_report(event)
        elif event.kind is ORDER_RECEIVED:
            self.close_by_order(event)
        elif event.kind is ORDER_EVALUATED:
            self.close_by_signed_order(event)

    def close_by_signed_order(self, event: DecodedEvent) -> None:
        """A CDS Hooks ``order-sign`` rated by referral closes the open recommendations of the same patient whose
        order codes include the order's CPT code. The hook names the patient by the EHR's Patient id: it matches
        the id fusion recorded when it found the patient in the EHR, or, on a recommendation without one, the MRN
        in the hospital's MRN system among the Patient's identifiers (``is_patient_of``). ``order-select``, an
        order rated not-appropriate, and an unknown patient close nothing."""
        now = self._clock()
        order = signed_order(event.payload, today=now.date())
        mrns = (
            sorted(v for s, v in order.patient.identifiers if s == self._mrn_system)
            if order is not None and self._mrn_system
            else []
        )
        closed: list[RecommendationChanged] = []
        with self._engine.begin() as conn:
            if already_processed(conn, consumer_group=self._group, event_id=event.id):
                return
            repo = FusionRepository(conn)
            if order is not None:
                candidates = repo.open_recommendations_of_ehr_patient(order.patient.id, patient_identifiers=mrns)
                for rec in candidates:
                    if not is_patient_of(rec, order.patient, mrn_system=self._mrn_system):
                        continue
                    for code in order.codes:  # the patient is established: radcds's id is the recommendation's
                        seen = ObservedProcedure(rec.patient_id, None, None, code, order.signed_on, order.reference)
                        if changes := close_matching([rec], seen, at=now):
                            closed.extend(changes)
                            break
            self._save_changes(conn, repo, closed, now)
            mark_processed(conn, consumer_group=self._group, event_id=event.id)
        if closed:
            log.info("recommendations closed by a signed order", extra={"event_id": event.id, "closed": len(closed)})
            self._after_commit()

    def close_by_order(self, event: DecodedEvent) -> None:
        """A new or changed imaging order (HL7 v2 ORM/OMI, stored by reporting) closes the patient's open
        recommendations whose procedure codes include the order's code; cancelled orders close nothing."""
        order = ImagingOrderReceived.from_payload(event.payload)
        if order.status != "active" or not order.patient_id or order.procedure_code is None:
            with self._engine.begin() as conn:
                if not already_processed(conn, consumer_group=self._group, event_id=event.id):
                    mark_processed(conn, consumer_group=self._group, event_id=event.id)
            return
        seen = ObservedProcedure(
            patient_id=order.patient_id,
            modality=None,
            body_region=None,
            code=order.procedure_code.code,
            on=self._clock().date(),
            reference=f"ServiceRequest/{order.service_request_id}",
        )
        self._observe(event.id, order.patient_id, [seen], self._clock())

    def read_measurement_report(self, event: DecodedEvent) -> None:
        """An SR stored in imaging by another product or a workstation: its nodules are assessed. radcds's own SRs,
        SRs that hold no TID 1500 report and reports without nodules are skipped; a TID 1500 report with impossible
        measurements raises :class:`MeasurementReportError` (the consumer dead-letters it for an operator)."""
        stored = ImagingInstanceStored.from_payload(event.payload)
        if stored.instance.sop_class_uid not in MEASUREMENT_SR_CLASSES or self._instances is None:
            return
        with self._engine.connect() as conn:
            if already_processed(conn, consumer_group=self._group, event_id=event.id):
                return
        dataset = self._instances.retrieve(stored.retrieve_url)
        nodules: list[ReportedNodule] = []
        if not str(dataset.get("Manufacturer", "")).startswith("radcds"):
            try:
                nodules = read_nodules(dataset)
            except NotAMeasurementReport:
                log.info("SR without a TID 1500 measurement report skipped", extra={"event_id": event.id})
        ctx = stored.context
        if not nodules:
            with self._engine.begin() as conn:
                if not already_processed(conn, consumer_group=self._group, event_id=event.id):
                    mark_processed(conn, consumer_group=self._group, event_id=event.id)
            return
        self.record_measurement_report(
            event_id=event.id,
            patient=PatientRef(patient_id_for(ctx), ctx.patient_id, ctx.issuer_of_patient_id),
            study_uid=stored.instance.study_instance_uid,
            study_date=study_date_of(ctx.study_date, self._clock().date()),
            sr_instance_uid=stored.instance.sop_instance_uid,
            nodules=nodules,
        )

    def assess_findings(self, event: DecodedEvent) -> None:
        """Store a findings event's tracked findings and publish the study's assessment (a new version each time)."""
        now = self._clock()
        analysis = ImagingFindingsProduced.from_payload(event.payload).analysis
        series = analysed_series(analysis, self._knowledge.findings, today=now.date())
        context = self._context(series.patient)  # outside the transaction: the EHR may be slow
        with self._engine.begin() as conn:
            if already_processed(conn, consumer_group=self._group, event_id=event.id):
                log.info("duplicate event skipped", extra={"event_id": event.id})
                return
            repo = FusionRepository(conn)
            repo.replace_findings(
                source=series.source,
                patient_id=series.patient.id,
                study_uid=series.study_uid,
                findings=series.findings,
            )
            self._assess(conn, repo, series.patient, series.study_uid, series.study_date, series.modality, context, now)
            mark_processed(conn, consumer_group=self._group, event_id=event.id)
        self._after_commit()

    def record_measurement_report(
        self,
        *,
        event_id: str,
        patient: PatientRef,
        study_uid: str,
        study_date: date,
        sr_instance_uid: str,
        nodules: Sequence[ReportedNodule],
    ) -> None:
        """Store the nodules of a TID 1500 measurement SR stored for a study (by another AI product or a
        workstation) and publish the study's assessment."""
        now = self._clock()
        findings = tuple(
            MeasuredFinding(
                code=PULMONARY_NODULE,  # every nodule finding code is tracked as one (knowledge/findings.json)
                body_site=n.nodule.location,
                study_date=study_date,
                position_mm=n.position_mm,
                nodule=n.nodule,
                reference=f"{sr_instance_uid}/{n.tracking_uid or n.tracking_identifier or i}",
            )
            for i, n in enumerate(nodules)
        )
        self._record(event_id, patient, study_uid, study_date, "CT", f"sr:{sr_instance_uid}", findings, now)

    def record_entered_findings(self, event: DecodedEvent) -> None:
        """Structured findings a radiologist sent with the report (reporting's ``findings.entered``): the report's
        nodules replace what the same report gave before and the study is assessed again. An impossible measurement
        raises :class:`~radcds_fusion.adapters.entered_findings.ImpossibleFinding` (the consumer dead-letters it)."""
        now = self._clock()
        entered = entered_findings(StructuredFindingsEntered.from_payload(event.payload), today=now.date())
        self._record(
            event.id,
            entered.patient,
            entered.study_uid,
            entered.study_date,
            entered.modality,
            entered.source,
            entered.findings,
            now,
        )

    def _record(
        self,
        event_id: str,
        patient: PatientRef,
        study_uid: str,
        study_date: date,
        modality: str,
        source: str,
        findings: Sequence[MeasuredFinding],
        now: datetime,
    ) -> None:
        """Store one source's findings of a study (replacing what it gave before) and assess the study again."""
        context = self._context(patient)  # outside the transaction: the EHR may be slow
        with self._engine.begin() as conn:
            if already_processed(conn, consumer_group=self._group, event_id=event_id):
                log.info("duplicate event skipped", extra={"event_id": event_id})
                return
            repo = FusionRepository(conn)
            repo.replace_findings(source=source, patient_id=patient.id, study_uid=study_uid, findings=findings)
            self._assess(conn, repo, patient, study_uid, study_date, modality, context, now)
            mark_processed(conn, consumer_group=self._group, event_id=event_id)
        self._after_commit()

    def _assess(
        self,
        conn: Connection,
        repo: FusionRepository,
        patient: PatientRef,
        study_uid: str,
        study_date: date,
        modality: str,
        context: ClinicalContext,
        now: datetime,
    ) -> None:
        labels = self._knowledge.findings
        rows = repo.study_findings(study_uid)
        findings = tuple(f for f in rows if f.code != NOT_ANALYSED)
        declined = tuple((f.body_site or "", f.reference or "") for f in rows if f.code == NOT_ANALYSED)
        regions = {labels[f.code].body_region for f in findings if f.code in labels}
        region = next(iter(sorted(regions)), "")
        own = repo.prior_findings(patient.id, before=study_date)
        priors = [
            p
            for p in priors_with_ehr(
                own, context, study_uid=study_uid, nodule_codes=NODULE_FINDINGS_SNOMED, nodule_code=PULMONARY_NODULE
            )
            if p.code != NOT_ANALYSED and p.code in labels and labels[p.code].body_region == region
        ]
        study = StudyFindings(patient.id, study_uid, study_date, modality, region, findings, declined)
        assessment = assess_study(
            study=study,
            priors=priors,
            context=context,
            guidelines=self._knowledge.guidelines,
            policy=self._knowledge.policy,
            labels=labels,
            new_id=lambda guideline_id: recommendation_id(study_uid, guideline_id),
            at=now,
        )
        new: list[RecommendationChanged] = []
        for made in assessment.recommendations:
            if repo.recommendation(made.recommendation.id) is None:  # a re-assessment keeps the recommendation's life
                rec = replace(
                    made.recommendation,
                    patient_identifier=patient.identifier or None,
                    ehr_patient_id=context.ehr_patient_id,
                )
                new.append(RecommendationChanged(rec, made.previous_state))
        version = repo.next_assessment_version(study_uid)
        payload = assessment_payload(assessment, version=version, at=now)
        repo.save_assessment(study_uid=study_uid, patient_id=patient.id, payload=payload, at=now)
        enqueue(conn, ASSESSMENT_PRODUCED, [(payload, f"{study_uid}|assessment|{version}", study_uid)])
        self._save_changes(conn, repo, new, now)

    def _save_changes(
        self, conn: Connection, repo: FusionRepository, changes: list[RecommendationChanged], now: datetime
    ) -> None:
        items = []
        for changed in changes:
            rec = changed.recommendation
            version = repo.save_recommendation(rec, at=now)
            payload = recommendation_payload(changed, service_request(rec, version=version))
            items.append((payload, f"{rec.id}|{version}", rec.patient_id))
        enqueue(conn, RECOMMENDATION_CHANGED, items)

    def close_by_study(self, event: DecodedEvent) -> None:
        """A study that arrived closes the patient's open recommendations it fulfils."""
        study = event.payload.get("imagingStudy", {})
        patient = str(study.get("subject", {}).get("reference", "")).removeprefix("Patient/")
        started = str(study.get("started", ""))[:10]
        now = self._clock()
        modalities = [c.get("code") for c in study.get("modality", [])]
        sites = {s.get("bodySite", {}).get("code") for s in study.get("series", [])}
        region = next((BODY_REGIONS[c] for c in sites if c in BODY_REGIONS), None)
        seen = [
            ObservedProcedure(
                patient_id=patient,
                modality=m,
                body_region=region,
                code=None,
                on=date.fromisoformat(started) if started else now.date(),
                reference=f"ImagingStudy/{event.payload.get('studyInstanceUid', '')}",
            )
            for m in modalities
        ]
        self._observe(event.id, patient, seen, now)

    def observe(self, seen: ObservedProcedure, *, event_id: str) -> list[Recommendation]:
        """An order or study (from any source) closes the open recommendations it fulfils; returns them."""
        return self._observe(event_id, seen.patient_id, [seen], self._clock())

    def _observe(
        self, event_id: str, patient: str, seen: list[ObservedProcedure], now: datetime
    ) -> list[Recommendation]:
        closed: list[RecommendationChanged] = []
        with self._engine.begin() as conn:
            if already_processed(conn, consumer_group=self._group, event_id=event_id):
                return []
            repo = FusionRepository(conn)
            open_recs = repo.open_recommendations(patient) if patient else []
            for item in seen:
                changes = close_matching(open_recs, item, at=now)
                closed.extend(changes)
                done = {c.recommendation.id for c in changes}
                open_recs = [r for r in open_recs if r.id not in done]
            self._save_changes(conn, repo, closed, now)
            mark_processed(conn, consumer_group=self._group, event_id=event_id)
        if closed:
            self._after_commit()
        return [c.recommendation for c in closed]

    def sweep_overdue(self) -> list[Recommendation]:
        """Mark every proposed recommendation past its due date overdue (run periodically; idempotent)."""
        now = self._clock()
        with self._engine.begin() as conn:
            repo = FusionRepository(conn)
            changes = [
                c for r in repo.due_before(now.date()) if (c := mark_overdue(r, today=now.date(), at=now)) is not None
            ]
            self._save_changes(conn, repo, changes, now)
        if changes:
            self._after_commit()
        return [c.recommendation for c in changes]

    def cancel(self, rec_id: str, *, reason: str, by: str) -> Recommendation:
        """A clinician cancels a recommendation, with a reason.

        Raises:
            RecommendationNotFound: no such recommendation.
            InvalidTransition: it is already closed or cancelled, or the reason is empty.
        """
        now = self._clock()
        with self._engine.begin() as conn:
            repo = FusionRepository(conn)
            found = repo.recommendation(rec_id)
            if found is None:
                raise RecommendationNotFound(rec_id)
            changed = cancel(found[0], reason=reason, by=by, at=now)
            self._save_changes(conn, repo, [changed], now)
        self._after_commit()
        return changed.recommendation


__all__ = ["FusionService", "InvalidTransition", "Knowledge", "RecommendationNotFound", "recommendation_id"]
