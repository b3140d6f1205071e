"""Events that cross service boundaries, named in the past tense, with their Kafka topics.

Each event travels as a CloudEvent in Kafka binary content mode (CloudEvents Kafka protocol
binding 1.0, section 3.2): attributes in ``ce_*`` headers, the JSON payload as the value.
Payloads are validated against the JSON Schemas in ``radcds/schemas/`` on both sides.
The partition key is the Study Instance UID so one study's events stay in order.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

from radcds.domain import wire
from radcds.domain.codes import Coding
from radcds.domain.findings import (
    ImageAnalysis,
    ImageLocation,
    InstanceReference,
    KeyImageReference,
    Measurement,
    ModelIdentity,
    StudyContext,
)
from radcds.domain.wire import fhir_resource, fmt, length, minimum, pattern

#: Where the payload schemas are published: a schema's ``$id`` and an event's ``dataschema`` attribute.
SCHEMA_BASE_URL = "https://radcds.example.org/schemas/"
#: DICOM UI value representation (PS3.5 6.2, 9.1): digits in dot-separated components, at most 64 characters.
DICOM_UID = pattern(r"^[0-9]+(\.[0-9]+)*$") & length(max=64)
#: FHIR R4 ``id`` datatype (2.24.0.1): 1 to 64 letters, digits, ``-`` and ``.``.
FHIR_ID = pattern(r"^[A-Za-z0-9\-\.]{1,64}$")
#: RFC 3339 date-time (JSON Schema Validation draft-07, 7.3.1).
DATE_TIME = fmt("date-time")

SOURCE_IMAGING = "/radcds/imaging"
SOURCE_INFERENCE = "/radcds/inference"
SOURCE_REPORTING = "/radcds/reporting"
SOURCE_REFERRAL = "/radcds/referral"
SOURCE_FUSION = "/radcds/fusion"


@dataclass(frozen=True, slots=True)
class EventKind:
    """A CloudEvents ``type`` bound to its topic and payload schema."""

    type: str
    topic: str
    schema: str


INSTANCE_STORED = EventKind(
    type="org.radcds.imaging.instance.stored.v1",
    topic="radcds.imaging.instances.v1",
    schema="imaging-instance-stored.v1.json",
)
STUDY_AVAILABLE = EventKind(
    type="org.radcds.imaging.study.available.v1",
    topic="radcds.imaging.studies.v1",
    schema="imaging-study-available.v1.json",
)
FINDINGS_PRODUCED = EventKind(
    type="org.radcds.inference.findings.produced.v1",
    topic="radcds.inference.findings.v1",
    schema="imaging-findings-produced.v1.json",
)
REPORT_STORED = EventKind(
    type="org.radcds.reporting.diagnostic-report.stored.v1",
    topic="radcds.reporting.reports.v1",
    schema="diagnostic-report-stored.v1.json",
)
#: Shares the reports topic so that, per study, an escalation follows the report it is about.
CRITICAL_RESULT_ESCALATED = EventKind(
    type="org.radcds.reporting.critical-result.escalated.v1",
    topic="radcds.reporting.reports.v1",
    schema="critical-result-escalated.v1.json",
)
ORDER_EVALUATED = EventKind(
    type="org.radcds.referral.imaging-order.evaluated.v1",
    topic="radcds.referral.evaluations.v1",
    schema="imaging-order-evaluated.v1.json",
)
#: Keyed by the ServiceRequest id, so one order's NW, XO and CA stay in order.
ORDER_RECEIVED = EventKind(
    type="org.radcds.reporting.imaging-order.received.v1",
    topic="radcds.reporting.orders.v1",
    schema="imaging-order-received.v1.json",
)
#: fusion's assessment of a study (comparison with priors, follow-up, critical flag, context used and missing).
ASSESSMENT_PRODUCED = EventKind(
    type="org.radcds.fusion.assessment.produced.v1",
    topic="radcds.fusion.assessments.v1",
    schema="fusion-assessment-produced.v1.json",
)
#: A follow-up recommendation was made or changed state; keyed by the patient, so one patient's stay in order.
RECOMMENDATION_CHANGED = EventKind(
    type="org.radcds.fusion.recommendation.changed.v1",
    topic="radcds.fusion.recommendations.v1",
    schema="fusion-recommendation-changed.v1.json",
)
#: A radiologist entered structured findings with a report (FHIR Observations sent in the DiagnosticReport).
FINDINGS_ENTERED = EventKind(
    type="org.radcds.reporting.findings.entered.v1",
    topic="radcds.reporting.findings.v1",
    schema="report-findings-entered.v1.json",
)
EVENT_KINDS: dict[str, EventKind] = {
    k.type: k
    for k in (
        ORDER_EVALUATED,
        ORDER_RECEIVED,
        INSTANCE_STORED,
        STUDY_AVAILABLE,
        FINDINGS_PRODUCED,
        REPORT_STORED,
        CRITICAL_RESULT_ESCALATED,
        FINDINGS_ENTERED,
        ASSESSMENT_PRODUCED,
        RECOMMENDATION_CHANGED,
    )
}

#: Suffix of the dead-letter topic that belongs to each topic.
DEAD_LETTER_SUFFIX = ".dlt"


def dead_letter_topic(topic: str) -> str:
    """Name of the dead-letter topic for ``topic``."""
    return topic + DEAD_LETTER_SUFFIX


@dataclass(frozen=True, slots=True)
class ImagingInstanceStored:
    """A DICOM instance was stored by imaging and can be retrieved over WADO-RS."""

    instance: InstanceReference
    context: StudyContext
    transfer_syntax_uid: str
    retrieve_url: str
    size_bytes: int

    def to_payload(self) -> dict[str, Any]:
        """The JSON payload (schema imaging-instance-stored.v1)."""
        return {
            "instance": _instance_payload(self.instance),
            "context": _context_payload(self.context),
            "transferSyntaxUid": self.transfer_syntax_uid,
            "retrieveUrl": self.retrieve_url,
            "sizeBytes": self.size_bytes,
        }

    @classmethod
    def from_payload(cls, payload: dict[str, Any]) -> ImagingInstanceStored:
        """Build from a schema-validated payload."""
        return cls(
            instance=_instance_from(payload["instance"]),
            context=_context_from(payload["context"]),
            transfer_syntax_uid=payload["transferSyntaxUid"],
            retrieve_url=payload["retrieveUrl"],
            size_bytes=int(payload["sizeBytes"]),
        )


@dataclass(frozen=True, slots=True)
class ImagingStudyAvailable:
    """Imaging announced a complete study (quiet period elapsed); ``imaging_study`` is its FHIR R4 ImagingStudy.

    Version 1 is the first announcement; a later version (``is_update``) follows late instances.
    """

    study_instance_uid: Annotated[str, DICOM_UID]
    version: Annotated[int, minimum(1)]
    is_update: bool
    number_of_instances: Annotated[int, minimum(1)]
    imaging_study: Annotated[
        dict[str, Any], fhir_resource("ImagingStudy", required=("resourceType", "id", "status", "subject"))
    ]

    def to_payload(self) -> dict[str, Any]:
        """The JSON payload (schema imaging-study-available.v1)."""
        return wire.to_json(self)

    @classmethod
    def from_payload(cls, payload: dict[str, Any]) -> ImagingStudyAvailable:
        """Build from a schema-validated payload."""
        return wire.from_json(cls, payload)


@dataclass(frozen=True, slots=True)
class ImagingFindingsProduced:
    """A model analysed (or declined to analyse) one series: one event per (series, model).

    Fields added after the first release (``findings``, ``critical``, ``location``, ``keyImage``,
    ``structuredReport``) are optional in the schema and default to empty, so older payloads
    still parse and older consumers may ignore them.
    """

    analysis: ImageAnalysis

    def to_payload(self) -> dict[str, Any]:
        """The JSON payload (schema imaging-findings-produced.v1)."""
        a = self.analysis
        payload: dict[str, Any] = {
            "instance": _instance_payload(a.instance),
            "context": _context_payload(a.context),
            "model": {"name": a.model.name, "version": a.model.version},
            "measurements": [_measurement_payload(m) for m in a.measurements],
        }
        if a.not_analysed_reason:
            payload["notAnalysedReason"] = a.not_analysed_reason
        if a.findings:
            payload["findings"] = [{"system": c.system, "code": c.code, "display": c.display} for c in a.findings]
        payload["critical"] = a.critical
        if a.location is not None:
            payload["location"] = {
                "description": a.location.description,
                "points": [{"row": r, "column": c} for r, c in a.location.points],
            }
        if a.key_image is not None:
            payload["keyImage"] = {
                "sopInstanceUid": a.key_image.sop_instance_uid,
                "sopClassUid": a.key_image.sop_class_uid,
                "frameNumber": a.key_image.frame_number,
            }
        if a.structured_report is not None:
            payload["structuredReport"] = _instance_payload(a.structured_report)
        return payload

    @classmethod
    def from_payload(cls, payload: dict[str, Any]) -> ImagingFindingsProduced:
        """Build from a schema-validated payload."""
        return cls(
            ImageAnalysis(
                instance=_instance_from(payload["instance"]),
                context=_context_from(payload["context"]),
                model=ModelIdentity(payload["model"]["name"], payload["model"]["version"]),
                measurements=tuple(
                    Measurement(
                        Coding(m["system"], m["code"], m["display"]),
                        float(m["value"]),
                        m["unit"],
                        critical=bool(m.get("critical", False)),
                    )
                    for m in payload["measurements"]
                ),
                not_analysed_reason=payload.get("notAnalysedReason", ""),
                findings=tuple(Coding(c["system"], c["code"], c["display"]) for c in payload.get("findings", [])),
                critical=bool(payload.get("critical", False)),
                location=_location_from(payload.get("location")),
                key_image=_key_image_from(payload.get("keyImage")),
                structured_report=(
                    _instance_from(payload["structuredReport"]) if payload.get("structuredReport") else None
                ),
            )
        )


@dataclass(frozen=True, slots=True)
class DiagnosticReportStored:
    """The reporting service stored or changed a DiagnosticReport (FHIR R4 DiagnosticReport, 8.1).

    Published for a new or updated preliminary report and for every status change a radiologist
    makes (``final``, ``amended``, ``corrected``: HL7 v2 OBR-25 P/F/C). The optional fields were
    added later; each is left out of the payload when it has its default, so consumers of the
    first version of the schema keep decoding the events they knew.
    """

    diagnostic_report_id: str
    study_instance_uid: str
    status: str
    observation_ids: tuple[str, ...]
    #: ``meta.versionId`` of the stored version.
    version_id: str = ""
    #: Status before this change ("" for a new report or a change that kept the status).
    previous_status: str = ""
    #: ServiceRequest ids the report is ``basedOn`` (the order).
    service_request_ids: tuple[str, ...] = ()
    accession_number: str = ""
    #: Practitioner reference of the radiologist who signed or amended the report.
    results_interpreter: str = ""
    #: True when the report holds a critical result; its Communications are listed.
    critical: bool = False
    communication_ids: tuple[str, ...] = ()

    def to_payload(self) -> dict[str, Any]:
        """The JSON payload (schema diagnostic-report-stored.v1)."""
        payload: dict[str, Any] = {
            "diagnosticReportId": self.diagnostic_report_id,
            "studyInstanceUid": self.study_instance_uid,
            "status": self.status,
            "observationIds": list(self.observation_ids),
        }
        optional: dict[str, Any] = {
            "versionId": self.version_id,
            "previousStatus": self.previous_status,
            "serviceRequestIds": list(self.service_request_ids),
            "accessionNumber": self.accession_number,
            "resultsInterpreter": self.results_interpreter,
            "critical": self.critical,
            "communicationIds": list(self.communication_ids),
        }
        payload.update({k: v for k, v in optional.items() if v})
        return payload

    @classmethod
    def from_payload(cls, payload: dict[str, Any]) -> DiagnosticReportStored:
        """Build from a schema-validated payload (either version of its content)."""
        return cls(
            diagnostic_report_id=payload["diagnosticReportId"],
            study_instance_uid=payload["studyInstanceUid"],
            status=payload["status"],
            observation_ids=tuple(payload["observationIds"]),
            version_id=payload.get("versionId", ""),
            previous_status=payload.get("previousStatus", ""),
            service_request_ids=tuple(payload.get("serviceRequestIds", ())),
            accession_number=payload.get("accessionNumber", ""),
            results_interpreter=payload.get("resultsInterpreter", ""),
            critical=bool(payload.get("critical", False)),
            communication_ids=tuple(payload.get("communicationIds", ())),
        )


@dataclass(frozen=True, slots=True)
class ImagingOrderReceived:
    """The reporting service stored an imaging order from the RIS as a FHIR ServiceRequest.

    Sent for each accepted HL7 v2.5.1 ORM^O01 / OMI^O23 (ORC-1 NW new, XO change, CA cancel;
    IHE RAD-2/RAD-4) so that the study and the report that follow can be tied to the order.
    It carries the order's keys only: no patient name or other demographics.
    """

    service_request_id: str
    #: FHIR ServiceRequest.status after the message: ``active``, or ``revoked`` after a cancel.
    status: str
    #: ORC-1 (HL7 table 0119): NW, XO or CA.
    order_control: str
    placer_order_number: str = ""
    placer_assigning_authority: str = ""
    filler_order_number: str = ""
    filler_assigning_authority: str = ""
    #: OBR-18 / IPC-1, DICOM Accession Number (0008,0050).
    accession_number: str = ""
    #: ZDS-1 / IPC-3, DICOM Study Instance UID (0020,000D).
    study_instance_uid: str = ""
    #: The ServiceRequest's subject (radcds's Patient id) and its code (OBR-4): added later, optional.
    patient_id: str = ""
    procedure_code: Coding | None = None

    def to_payload(self) -> dict[str, Any]:
        """The JSON payload (schema imaging-order-received.v1); empty optional fields are left out."""
        payload: dict[str, Any] = {
            "serviceRequestId": self.service_request_id,
            "status": self.status,
            "orderControl": self.order_control,
        }
        optional = {
            "placerOrderNumber": self.placer_order_number,
            "placerAssigningAuthority": self.placer_assigning_authority,
            "fillerOrderNumber": self.filler_order_number,
            "fillerAssigningAuthority": self.filler_assigning_authority,
            "accessionNumber": self.accession_number,
            "studyInstanceUid": self.study_instance_uid,
            "patientId": self.patient_id,
        }
        payload.update({k: v for k, v in optional.items() if v})
        if self.procedure_code is not None:
            payload["procedureCode"] = {"system": self.procedure_code.system, "code": self.procedure_code.code}
        return payload

    @classmethod
    def from_payload(cls, payload: dict[str, Any]) -> ImagingOrderReceived:
        """Build from a schema-validated payload."""
        return cls(
            service_request_id=payload["serviceRequestId"],
            status=payload["status"],
            order_control=payload["orderControl"],
            placer_order_number=payload.get("placerOrderNumber", ""),
            placer_assigning_authority=payload.get("placerAssigningAuthority", ""),
            filler_order_number=payload.get("fillerOrderNumber", ""),
            filler_assigning_authority=payload.get("fillerAssigningAuthority", ""),
            accession_number=payload.get("accessionNumber", ""),
            study_instance_uid=payload.get("studyInstanceUid", ""),
            patient_id=payload.get("patientId", ""),
            procedure_code=Coding(payload["procedureCode"].get("system", ""), payload["procedureCode"]["code"], "")
            if "procedureCode" in payload
            else None,
        )


@dataclass(frozen=True, slots=True)
class CriticalResultEscalated:
    """A critical-result Communication was not acknowledged in time and was escalated.

    ACR Practice Parameter for Communication of Diagnostic Imaging Findings: a critical result
    that cannot be communicated to the ordering clinician in time goes to another responsible
    clinician. ``escalation_communication_id`` is the new FHIR Communication sent to
    ``recipient``.
    """

    communication_id: Annotated[str, FHIR_ID]
    escalation_communication_id: Annotated[str, FHIR_ID]
    diagnostic_report_id: Annotated[str, FHIR_ID]
    study_instance_uid: Annotated[str, DICOM_UID]
    recipient: Annotated[str, length(min=1, max=256)]
    sent_at: Annotated[str, DATE_TIME]
    escalated_at: Annotated[str, DATE_TIME]

    def to_payload(self) -> dict[str, Any]:
        """The JSON payload (schema critical-result-escalated.v1)."""
        return wire.to_json(self)

    @classmethod
    def from_payload(cls, payload: dict[str, Any]) -> CriticalResultEscalated:
        """Build from a schema-validated payload."""
        return wire.from_json(cls, payload)


@dataclass(frozen=True, slots=True)
class EnteredNodule:
    """A pulmonary nodule as a radiologist entered it (one FHIR Observation of the report), in neutral terms:
    codes, sizes in millimetres, composition ``solid``, ``part-solid`` or ``ground-glass``."""

    observation_id: str
    finding: Coding
    body_site: Coding
    long_axis_mm: float
    composition: str
    short_axis_mm: float | None = None
    #: The mean diameter of the solid part of a part-solid nodule.
    solid_part_mm: float | None = None

    def to_payload(self) -> dict[str, Any]:
        """One item of ``findings`` (schema report-findings-entered.v1)."""
        out: dict[str, Any] = {
            "observationId": self.observation_id,
            "code": _coding_payload(self.finding),
            "bodySite": _coding_payload(self.body_site),
            "longAxisMm": self.long_axis_mm,
            "composition": self.composition,
        }
        if self.short_axis_mm is not None:
            out["shortAxisMm"] = self.short_axis_mm
        if self.solid_part_mm is not None:
            out["solidPartMm"] = self.solid_part_mm
        return out

    @classmethod
    def from_payload(cls, p: dict[str, Any]) -> EnteredNodule:
        """Build from one schema-validated item."""
        return cls(
            observation_id=p["observationId"],
            finding=Coding(p["code"]["system"], p["code"]["code"], p["code"].get("display", "")),
            body_site=Coding(p["bodySite"]["system"], p["bodySite"]["code"], p["bodySite"].get("display", "")),
            long_axis_mm=float(p["longAxisMm"]),
            composition=p["composition"],
            short_axis_mm=float(p["shortAxisMm"]) if "shortAxisMm" in p else None,
            solid_part_mm=float(p["solidPartMm"]) if "solidPartMm" in p else None,
        )


@dataclass(frozen=True, slots=True)
class StructuredFindingsEntered:
    """A radiologist sent structured findings with a DiagnosticReport (FHIR R4 DiagnosticReport.result, 8.1): the
    report version's complete set of radiologist-entered nodules (empty when the radiologist removed them all), so
    a consumer replaces what the same report gave before. ``patient_id`` is radcds's Patient id;
    ``patient_identifier`` (system, value) the Patient's MRN, which the findings events already carry (DICOM
    Patient ID), for reading the patient's EHR context."""

    diagnostic_report_id: str
    version_id: str
    report_status: str
    study_instance_uid: str
    patient_id: str
    #: The radiologist who entered them ("" when unknown: a version that only dropped findings).
    entered_by: str
    findings: tuple[EnteredNodule, ...]
    study_date: str = ""
    modalities: tuple[str, ...] = ()
    patient_identifier: tuple[str, str] | None = None

    def to_payload(self) -> dict[str, Any]:
        """The JSON payload (schema report-findings-entered.v1); empty optional fields are left out."""
        payload: dict[str, Any] = {
            "diagnosticReportId": self.diagnostic_report_id,
            "versionId": self.version_id,
            "reportStatus": self.report_status,
            "studyInstanceUid": self.study_instance_uid,
            "patientId": self.patient_id,
            "findings": [f.to_payload() for f in self.findings],
        }
        if self.entered_by:
            payload["enteredBy"] = self.entered_by
        if self.study_date:
            payload["studyDate"] = self.study_date
        if self.modalities:
            payload["modalities"] = list(self.modalities)
        if self.patient_identifier is not None:
            payload["patientIdentifier"] = {"system": self.patient_identifier[0], "value": self.patient_identifier[1]}
        return payload

    @classmethod
    def from_payload(cls, payload: dict[str, Any]) -> StructuredFindingsEntered:
        """Build from a schema-validated payload."""
        ident = payload.get("patientIdentifier")
        return cls(
            diagnostic_report_id=payload["diagnosticReportId"],
            version_id=payload["versionId"],
            report_status=payload["reportStatus"],
            study_instance_uid=payload["studyInstanceUid"],
            patient_id=payload["patientId"],
            entered_by=payload.get("enteredBy", ""),
            findings=tuple(EnteredNodule.from_payload(f) for f in payload["findings"]),
            study_date=payload.get("studyDate", ""),
            modalities=tuple(payload.get("modalities", ())),
            patient_identifier=(ident.get("system", ""), ident["value"]) if ident else None,
        )


def _coding_payload(c: Coding) -> dict[str, str]:
    return {"system": c.system, "code": c.code, "display": c.display}


def _measurement_payload(m: Measurement) -> dict[str, Any]:
    out: dict[str, Any] = {
        "system": m.code.system,
        "code": m.code.code,
        "display": m.code.display,
        "value": m.value,
        "unit": m.unit,
    }
    if m.critical:  # only when set: payloads without it stay valid for the first schema version
        out["critical"] = True
    return out


def _instance_payload(i: InstanceReference) -> dict[str, str]:
    return {
        "studyInstanceUid": i.study_instance_uid,
        "seriesInstanceUid": i.series_instance_uid,
        "sopInstanceUid": i.sop_instance_uid,
        "sopClassUid": i.sop_class_uid,
    }


def _instance_from(p: dict[str, Any]) -> InstanceReference:
    return InstanceReference(p["studyInstanceUid"], p["seriesInstanceUid"], p["sopInstanceUid"], p["sopClassUid"])


def _location_from(p: dict[str, Any] | None) -> ImageLocation | None:
    if not p:
        return None
    return ImageLocation(p["description"], tuple((float(x["row"]), float(x["column"])) for x in p.get("points", [])))


def _key_image_from(p: dict[str, Any] | None) -> KeyImageReference | None:
    if not p:
        return None
    return KeyImageReference(p["sopInstanceUid"], p["sopClassUid"], int(p.get("frameNumber", 1)))


def _context_payload(c: StudyContext) -> dict[str, str]:
    return {
        "patientId": c.patient_id,
        "issuerOfPatientId": c.issuer_of_patient_id,
        "accessionNumber": c.accession_number,
        "modality": c.modality,
        "studyDate": c.study_date,
        "studyTime": c.study_time,
        "studyDescription": c.study_description,
        **({"patientName": c.patient_name} if c.patient_name else {}),
        **({"patientSex": c.patient_sex} if c.patient_sex else {}),
        **({"patientBirthDate": c.patient_birth_date} if c.patient_birth_date else {}),
    }


def _context_from(p: dict[str, Any]) -> StudyContext:
    return StudyContext(
        patient_id=p["patientId"],
        issuer_of_patient_id=p.get("issuerOfPatientId", ""),
        accession_number=p.get("accessionNumber", ""),
        modality=p.get("modality", ""),
        study_date=p.get("studyDate", ""),
        study_time=p.get("studyTime", ""),
        study_description=p.get("studyDescription", ""),
        patient_name=p.get("patientName", ""),
        patient_sex=p.get("patientSex", ""),
        patient_birth_date=p.get("patientBirthDate", ""),
    )


@dataclass(frozen=True, slots=True)
class PayloadContract:
    """An event kind bound to its payload declaration and the texts of its JSON Schema.

    The schema file ``radcds/schemas/<kind.schema>`` is generated from the declaration (``make schemas``) and a
    unit test fails when the committed file differs, so the wire contract cannot drift from the code.
    """

    kind: EventKind
    declaration: type
    title: str
    description: str

    @property
    def schema_id(self) -> str:
        """The schema's ``$id`` (and every such event's CloudEvents ``dataschema``)."""
        return SCHEMA_BASE_URL + self.kind.schema

    def schema(self) -> dict[str, Any]:
        """The payload's JSON Schema (draft-07), derived from the declaration."""
        return wire.schema_document(
            self.declaration, schema_id=self.schema_id, title=self.title, description=self.description
        )


#: Every event kind whose payload is declared here; the other kinds' schemas are still written by hand.
PAYLOAD_CONTRACTS: tuple[PayloadContract, ...] = (
    PayloadContract(
        STUDY_AVAILABLE,
        ImagingStudyAvailable,
        "ImagingStudyAvailable",
        "CloudEvent org.radcds.imaging.study.available.v1 on radcds.imaging.studies.v1 (key: Study Instance UID): "
        "a study is complete (no new instance for the quiet period). version 1 is the first announcement; a later "
        "version (isUpdate true) follows late instances. The payload carries the FHIR R4 ImagingStudy.",
    ),
    PayloadContract(
        CRITICAL_RESULT_ESCALATED,
        CriticalResultEscalated,
        "CriticalResultEscalated",
        "CloudEvent org.radcds.reporting.critical-result.escalated.v1 on radcds.reporting.reports.v1: a "
        "critical-result FHIR Communication was not acknowledged in time; a new Communication went to the "
        "escalation recipient.",
    ),
)
