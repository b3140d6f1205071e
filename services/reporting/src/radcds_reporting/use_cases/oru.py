"""Use case: every DiagnosticReport version that should go out becomes one ORU^R01 per destination.

Trigger points: the preliminary report built from findings (:mod:`radcds_reporting.handlers`) and
each sign-off, amendment or correction (:mod:`radcds_reporting.use_cases.signoff`). In the transaction that
stores the report version, :meth:`ResultOutbox.enqueue_in` reads the report, its Observations,
its ServiceRequest and the Patient (the order's, else the report's subject; PID-3/5/7/8),
builds an :class:`~radcds_reporting.domain.results.ImagingResult`
(:func:`result_from_report`) and puts one HL7 v2.5.1 ORU^R01 per configured destination into
the persisted outbound queue. MSH-10 is derived from (report id, version id, destination)
(:func:`control_id_for`): the same report version never queues a second message, even when the
Kafka event that produced it is delivered again. After the commit :meth:`ResultOutbox.notify`
wakes the delivery workers (:class:`~radcds_reporting.adapters.hl7v2.outbound.DeliveryWorker`, one per
destination), which send with retries and park what receivers refuse (AE).

OBR-25 follows ``DiagnosticReport.status`` (HL7 v2-to-FHIR IG): preliminary P, final F,
amended/corrected/appended C (the whole report again, same filler number), cancelled X.
An ``entered-in-error`` report is not sent (OBR-25 W is not among the statuses radcds sends).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any

from prometheus_client.core import GaugeMetricFamily, Metric
from sqlalchemy import Connection, Engine

from radcds.domain import codes
from radcds.domain.codes import Coding
from radcds_reporting.adapters.assessments import ReportContext, context_for
from radcds_reporting.adapters.hl7v2.config import MLLPDestination
from radcds_reporting.adapters.hl7v2.mllp import MLLPSender
from radcds_reporting.adapters.hl7v2.oru import build_oru_r01
from radcds_reporting.adapters.hl7v2.outbound import DeliveryWorker, OutboundQueue, QueueState
from radcds_reporting.adapters.narrative import content_of
from radcds_reporting.adapters.repository import FhirRepository
from radcds_reporting.domain.orders import OrderNumber, PatientIdentifier, PersonName, Practitioner
from radcds_reporting.domain.results import ImagingResult, NumericResult, ReportSection, ReportSectionKind, ResultStatus

log = logging.getLogger(__name__)

#: FHIR DiagnosticReport.status -> OBR-25 (HL7 table 0123); ``None``: no ORU is sent.
REPORT_STATUS_TO_RESULT: dict[str, ResultStatus | None] = {
    "registered": ResultStatus.PRELIMINARY,
    "partial": ResultStatus.PRELIMINARY,
    "preliminary": ResultStatus.PRELIMINARY,
    "final": ResultStatus.FINAL,
    "amended": ResultStatus.CORRECTED,
    "corrected": ResultStatus.CORRECTED,
    "appended": ResultStatus.CORRECTED,
    "cancelled": ResultStatus.CANCELLED,
    "entered-in-error": None,
}
#: The AI statement of the report text (HL7 OBX with the local code ``ai-disclaimer``).
AI_DISCLAIMER_PRELIMINARY = "AI-generated, preliminary, not for diagnostic use."
AI_DISCLAIMER_SIGNED = "Measurements AI-generated; report reviewed and signed by a radiologist."
#: Namespace (EI.2) of a filler number radcds makes up from the report id when there is no order.
RADCDS_NAMESPACE = "RADCDS"
_ISSUER_PREFIX = "urn:radcds:issuer:"
_AUTHORITY_PREFIX = "urn:radcds:assigning-authority:"


def control_id_for(report_id: str, version_id: str, destination: str) -> str:
    """The MSH-10 of the ORU for one report version to one destination (20 characters, deterministic)."""
    digest = hashlib.sha256(f"{report_id}|{version_id}|{destination}".encode()).hexdigest()
    return "R" + digest[:19]


def fhir_datetime(value: str) -> datetime | None:
    """An aware datetime from a FHIR dateTime/instant (a date alone is midnight UTC), or None."""
    if not value or len(value) < 10:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def person_name(display: str) -> PersonName:
    """Read ``FAMILY, GIVEN MIDDLE`` (how radcds writes ``Reference.display`` of an HL7 XCN) back."""
    family, _, rest = display.partition(",")
    given, _, middle = rest.strip().partition(" ")
    return PersonName(family.strip(), given, middle.strip())


def _practitioner(reference: dict[str, Any]) -> Practitioner | None:
    ref = str(reference.get("reference", ""))
    identifier = ref.split("/", 1)[1] if ref.startswith(("Practitioner/", "PractitionerRole/")) else ""
    name = person_name(str(reference.get("display", "")))
    if not identifier and not name.family:
        return None
    return Practitioner(identifier, name)


def _identifier(resource: dict[str, Any] | None, type_code: str) -> dict[str, Any] | None:
    for ident in (resource or {}).get("identifier", []):
        if any(c.get("code") == type_code for c in ident.get("type", {}).get("coding", [])):
            return dict(ident)
    return None


def _order_number(resource: dict[str, Any] | None, type_code: str) -> OrderNumber | None:
    ident = _identifier(resource, type_code)
    if ident is None or not ident.get("value"):
        return None
    return OrderNumber(str(ident["value"]), str(ident.get("system", "")).removeprefix(_AUTHORITY_PREFIX))


def _first_coding(concept: dict[str, Any] | None) -> Coding | None:
    for c in (concept or {}).get("coding", []):
        if c.get("code"):
            return Coding(str(c.get("system", "")), str(c["code"]), str(c.get("display", "")))
    return None


def _patient(patient: dict[str, Any] | None) -> tuple[PatientIdentifier, PersonName | None, str, str]:
    """PID-3 (with CX.4 from the identifier system), PID-5, PID-7, PID-8 of the stored Patient."""
    ident: dict[str, Any] = next(iter((patient or {}).get("identifier", [])), {})
    system = str(ident.get("system", ""))
    issuer = system.removeprefix(_ISSUER_PREFIX) if system.startswith(_ISSUER_PREFIX) else ""
    identifier = PatientIdentifier(str(ident.get("value") or "UNKNOWN"), issuer)
    # PID-5 from the official name (the order's), else the first name with a family name (e.g. DICOM's).
    names = [n for n in (patient or {}).get("name", []) if n.get("family")]
    names.sort(key=lambda n: n.get("use") != "official")
    name = None
    if names:
        given = names[0].get("given", [])
        name = PersonName(names[0]["family"], given[0] if given else "", " ".join(given[1:]))
    birth = str((patient or {}).get("birthDate", "")).replace("-", "")[:8]
    sex = {"female": "F", "male": "M", "other": "O", "unknown": "U"}.get(str((patient or {}).get("gender", "")), "")
    return identifier, name, birth if len(birth) in (4, 6, 8) and birth.isdigit() else "", sex


def _lines(text: str) -> tuple[str, ...]:
    return tuple(line.strip() for line in text.replace("\r", "\n").split("\n") if line.strip())


#: The ORU section of each of the report's context sections (narrative.CONTEXT_SECTIONS keys).
_CONTEXT_KINDS = {
    "comparison": ReportSectionKind.COMPARISON,
    "recommendations": ReportSectionKind.RECOMMENDATIONS,
    "missing-context": ReportSectionKind.MISSING_CONTEXT,
}


def report_sections(
    report: dict[str, Any],
    observations: list[dict[str, Any]],
    status: ResultStatus,
    context: ReportContext | None = None,
) -> tuple[ReportSection, ...]:
    """The readable text: findings (measurements, not-analysed reasons), comparison with priors,
    impression, recommendations, missing clinical context, AI statement (the order of a radiology
    report; the three context sections carry LOINC 18834-2, 18783-1 and a local code)."""
    content = content_of("", observations, context=context)
    findings = [f"{name}: {value}" + (" (CRITICAL)" if critical else "") for name, value, _, critical in content.rows]
    findings += [f"Not analysed by {model}: {reason}" for model, reason in content.outside_envelope]
    sections = [ReportSection(ReportSectionKind.FINDINGS, tuple(findings) or ("No measurements.",))]
    by_key = {key: lines for key, _, lines in content.context_sections}
    sections.append(ReportSection(ReportSectionKind.COMPARISON, by_key["comparison"]))
    impression = _lines(str(report.get("conclusion", "")))
    if impression:
        sections.append(ReportSection(ReportSectionKind.IMPRESSION, impression))
    for key in ("recommendations", "missing-context"):
        sections.append(ReportSection(_CONTEXT_KINDS[key], by_key[key]))
    statement = AI_DISCLAIMER_PRELIMINARY if status is ResultStatus.PRELIMINARY else AI_DISCLAIMER_SIGNED
    models = ", ".join(content.models) or "none"
    sections.append(ReportSection(ReportSectionKind.AI_DISCLAIMER, (statement, f"Models and versions: {models}.")))
    return tuple(sections)


def _measurements(observations: list[dict[str, Any]]) -> tuple[NumericResult, ...]:
    out = []
    for o in observations:
        quantity = o.get("valueQuantity")
        code = _first_coding(o.get("code"))
        if not quantity or code is None or o.get("status") == "entered-in-error":
            continue
        unit = str(quantity.get("code") or quantity.get("unit") or "")
        try:
            out.append(NumericResult(code, float(quantity["value"]), unit))
        except (KeyError, TypeError, ValueError):
            log.warning("measurement left out of the ORU", extra={"observation_id": o.get("id", "")})
    return tuple(out)


def result_from_report(
    report: dict[str, Any],
    *,
    observations: list[dict[str, Any]],
    service_request: dict[str, Any] | None,
    patient: dict[str, Any] | None,
    now: datetime,
    context: ReportContext | None = None,
) -> ImagingResult | None:
    """The ORU^R01 content of one DiagnosticReport version; None for a status that is not sent.

    OBR-2/OBR-3 come from the ServiceRequest's PLAC/FILL identifiers; without a filler number the
    accession (else the report id, namespace ``RADCDS``) is the filler number, so every version of
    the report carries the same one. OBR-18 is the report's (else the order's) accession number.
    """
    status = REPORT_STATUS_TO_RESULT.get(str(report.get("status")))
    if status is None:
        return None
    accession = str((_identifier(report, "ACSN") or _identifier(service_request, "ACSN") or {}).get("value", ""))
    placer = _order_number(service_request, "PLAC")
    filler = _order_number(service_request, "FILL")
    if filler is None:
        filler = OrderNumber(accession) if accession else OrderNumber(str(report["id"]), RADCDS_NAMESPACE)
    identifier, name, birth, sex = _patient(patient)
    procedure = (
        _first_coding((service_request or {}).get("code"))
        or _first_coding(report.get("code"))
        or codes.Coding(codes.LOINC, "18748-4", "Diagnostic imaging study")
    )
    observed = fhir_datetime(str(report.get("effectiveDateTime", ""))) or now
    changed = (
        fhir_datetime(str(report.get("meta", {}).get("lastUpdated", "")))
        or fhir_datetime(str(report.get("issued", "")))
        or now
    )
    interpreter = next(
        (p for p in (_practitioner(r) for r in report.get("resultsInterpreter", [])) if p is not None), None
    )
    requester = (service_request or {}).get("requester")
    return ImagingResult(
        status=status,
        patient=identifier,
        patient_name=name,
        patient_birth_date=birth,
        patient_sex=sex,
        procedure_code=procedure,
        observation_time=observed,
        status_changed_at=changed,
        placer_order_number=placer,
        filler_order_number=filler,
        accession_number=accession,
        sections=report_sections(report, observations, status, context),
        measurements=_measurements(observations),
        conclusion=_first_coding(next(iter(report.get("conclusionCode", [])), None)),
        principal_result_interpreter=interpreter,
        ordering_provider=_practitioner(requester) if requester else None,
    )


def _id_of(reference: str) -> str:
    return reference.rsplit("/", 1)[-1]


class ResultOutbox:
    """Queues ORU^R01 messages with the report versions they describe and runs the delivery workers."""

    def __init__(
        self,
        *,
        engine: Engine,
        destinations: Iterable[MLLPDestination],
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._engine = engine
        self.destinations = list(destinations)
        self.queue = OutboundQueue(engine, clock=clock)
        self._clock = clock
        self._workers: list[DeliveryWorker] = []
        self._loop: asyncio.AbstractEventLoop | None = None

    def enqueue_in(self, conn: Connection, *, report: dict[str, Any]) -> list[int]:
        """Queue the ORU of ``report`` (a stored version) for every destination; returns the queue ids.

        Queueing the same report version again is a no-op (same MSH-10, see :func:`control_id_for`).
        """
        if not self.destinations:
            return []
        repo = FhirRepository(conn)
        observations = [
            o
            for ref in report.get("result", [])
            if (o := repo.read("Observation", _id_of(str(ref.get("reference", ""))))) is not None
        ]
        service_request = next(
            (
                sr
                for ref in report.get("basedOn", [])
                if (sr := repo.read("ServiceRequest", _id_of(str(ref.get("reference", ""))))) is not None
            ),
            None,
        )
        # PID comes from the order's Patient when there is an order (EHR order demographics are
        # authoritative, and the RIS knows the patient by the order's PID-3 and assigning
        # authority), else from the report's subject (the Patient the DICOM header gave).
        patient = None
        for holder in (service_request, report):
            subject = str((holder or {}).get("subject", {}).get("reference", ""))
            if patient is None and subject.startswith("Patient/"):
                patient = repo.read("Patient", _id_of(subject))
        now = self._clock()
        study_uid = repo.study_instance_uid_of("DiagnosticReport", str(report["id"]))
        result = result_from_report(
            report,
            observations=observations,
            service_request=service_request,
            patient=patient,
            now=now,
            context=context_for(conn, study_uid) if study_uid else None,
        )
        if result is None:
            log.info("report status not sent over HL7 v2", extra={"report_id": report["id"]})
            return []
        version = str(report.get("meta", {}).get("versionId", ""))
        ids = []
        for destination in self.destinations:
            control_id = control_id_for(report["id"], version, destination.key)
            payload = build_oru_r01(
                result,
                header=destination.options.header(),
                control_id=control_id,
                created_at=now,
                layout=destination.options.text_layout,
            )
            ids.append(
                self.queue.enqueue_in(
                    conn,
                    destination=destination.key,
                    order_key=result.order_key,
                    payload=payload,
                    result_status=result.status.obr25,
                )
            )
        log.info(
            "oru queued",
            extra={"report_id": report["id"], "version_id": version, "obr25": result.status.obr25, "count": len(ids)},
        )
        return ids

    # ---- delivery -------------------------------------------------------------------------
    def start(self) -> None:
        """Start one delivery worker per destination on the running loop."""
        self._loop = asyncio.get_running_loop()
        for destination in self.destinations:
            options = destination.options
            sender = MLLPSender(
                destination.host,
                destination.port,
                ack_timeout=options.ack_timeout_s,
                connect_timeout=options.connect_timeout_s,
            )
            worker = DeliveryWorker(self.queue, sender, destination=destination.key, policy=options.retry_policy())
            worker.start()
            self._workers.append(worker)

    def notify(self) -> None:
        """Wake the workers after a commit; safe from any thread (consumer thread, request handlers)."""
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        for worker in self._workers:
            with contextlib.suppress(RuntimeError):  # the loop is shutting down
                loop.call_soon_threadsafe(worker.notify)

    async def stop(self) -> None:
        """Stop the workers; queued messages stay in the database for the next start."""
        for worker in self._workers:
            await worker.stop()
        self._workers.clear()
        self._loop = None

    def counts(self) -> dict[str, dict[str, int]]:
        """Messages per state for each configured destination."""
        return {d.key: self.queue.counts(d.key) for d in self.destinations}


class OutboundQueueCollector:
    """Prometheus collector: ``radcds_hl7_outbound_messages{destination,state}`` read at scrape time.

    Parked messages (``state="parked"``) need an operator (docs/operations.md); alert on them.
    """

    def __init__(self, outbox: ResultOutbox) -> None:
        self._outbox = outbox

    def collect(self) -> Iterable[Metric]:
        """One gauge sample per destination and queue state."""
        gauge = GaugeMetricFamily(
            "radcds_hl7_outbound_messages",
            "HL7 v2 ORU messages in the outbound queue, by destination and state (parked needs an operator)",
            labels=["destination", "state"],
        )
        try:
            counts = self._outbox.counts()
        except Exception:  # a scrape must not fail because the database is briefly away
            log.warning("hl7 queue metrics unavailable")
            return
        for destination, states in counts.items():
            for state in QueueState:
                gauge.add_metric([destination, state.value], states.get(state.value, 0))
        yield gauge
