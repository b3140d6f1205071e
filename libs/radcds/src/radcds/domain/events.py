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
from radcds.domain.wire import OMIT_EMPTY, SHOW_DEFAULT, Key, doc, fhir_resource, fmt, length, minimum, one_of, pattern

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
SOURCE_WORKLIST = "/radcds/worklist"


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
#: A critical result was acknowledged by a clinician; keyed by the Study Instance UID, like the escalation.
CRITICAL_RESULT_ACKNOWLEDGED = EventKind(
    type="org.radcds.reporting.critical-result.acknowledged.v1",
    topic="radcds.reporting.reports.v1",
    schema="critical-result-acknowledged.v1.json",
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
# ---- worklist (issue #13): the radiologists' feedback on AI findings, and per-model monitoring alerts ----------
#: A radiologist accepted, edited or rejected an AI finding (one event per decision; key: Study Instance UID).
FINDING_FEEDBACK_RECORDED = EventKind(
    type="org.radcds.worklist.finding-feedback.recorded.v1",
    topic="radcds.worklist.feedback.v1",
    schema="worklist-finding-feedback-recorded.v1.json",
)
#: A monitored rate of a model version crossed its configured threshold (key: the model name).
MODEL_ALERT_RAISED = EventKind(
    type="org.radcds.worklist.model-alert.raised.v1",
    topic="radcds.worklist.alerts.v1",
    schema="worklist-model-alert-raised.v1.json",
)
# ---- end of the worklist's feedback and monitoring kinds ------------------------------------------------------
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
        CRITICAL_RESULT_ACKNOWLEDGED,
        FINDINGS_ENTERED,
        ASSESSMENT_PRODUCED,
        RECOMMENDATION_CHANGED,
        FINDING_FEEDBACK_RECORDED,
        MODEL_ALERT_RAISED,
    )
}

#: Suffix of the dead-letter topic that belongs to each topic.
DEAD_LETTER_SUFFIX = ".dlt"


def dead_letter_topic(topic: str) -> str:
    """Name of the dead-letter topic for ``topic``."""
    return topic + DEAD_LETTER_SUFFIX


#: FHIR R4 DiagnosticReport.status (value set diagnostic-report-status, DiagnosticReport 8.1.5).
REPORT_STATUS = one_of(
    "registered",
    "partial",
    "preliminary",
    "final",
    "amended",
    "corrected",
    "appended",
    "cancelled",
    "entered-in-error",
)
#: ISO 8601 calendar date ``YYYY-MM-DD`` (FHIR R4 ``date`` with day precision).
ISO_DATE = pattern(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$")
#: A positive size in millimetres.
SIZE_MM = minimum(0, exclusive=True)


# ---- wire shapes of shared value objects (the payload declarations reach them through wire.mirror) ------------


@dataclass(frozen=True, slots=True)
class InstancePayload:
    """:class:`~radcds.domain.findings.InstanceReference` on the wire: four DICOM UIDs (PS3.3 C.12.1, C.7.3.1)."""

    study_instance_uid: Annotated[str, DICOM_UID]
    series_instance_uid: Annotated[str, DICOM_UID]
    sop_instance_uid: Annotated[str, DICOM_UID]
    sop_class_uid: Annotated[str, DICOM_UID]


@dataclass(frozen=True, slots=True)
class StudyContextPayload:
    """:class:`~radcds.domain.findings.StudyContext` on the wire, with the DICOM value lengths (PS3.5 6.2: LO 64,
    SH 16, CS 16, DA, TM, PN 64 per component group). The demographic fields were added later: left out when empty."""

    patient_id: Annotated[str, length(max=64)]
    issuer_of_patient_id: Annotated[str, length(max=64)] = ""
    accession_number: Annotated[str, length(max=16)] = ""
    modality: Annotated[str, length(max=16)] = ""
    study_date: Annotated[str, pattern(r"^([0-9]{8})?$")] = ""
    study_time: Annotated[str, length(max=16)] = ""
    study_description: Annotated[str, length(max=64)] = ""
    patient_name: Annotated[
        str,
        doc(
            "Patient's Name (0010,0010), PN alphabetic component group family^given^middle^prefix^suffix "
            "(optional, added backward-compatibly)."
        ),
        length(max=324),
        OMIT_EMPTY,
    ] = ""
    patient_sex: Annotated[
        str,
        doc("Patient's Sex (0010,0040): M, F or O (optional; absent means unknown)."),
        one_of("M", "F", "O"),
        OMIT_EMPTY,
    ] = ""
    patient_birth_date: Annotated[
        str, doc("Patient's Birth Date (0010,0030), DICOM DA YYYYMMDD (optional)."), pattern(r"^[0-9]{8}$"), OMIT_EMPTY
    ] = ""


INSTANCE = wire.mirror(InstanceReference, InstancePayload)
STUDY_CONTEXT = wire.mirror(StudyContext, StudyContextPayload)


@dataclass(frozen=True, slots=True)
class ImagingInstanceStored:
    """A DICOM instance was stored by imaging and can be retrieved over WADO-RS (PS3.18 10.4)."""

    instance: Annotated[InstanceReference, INSTANCE]
    context: Annotated[StudyContext, STUDY_CONTEXT]
    transfer_syntax_uid: Annotated[str, DICOM_UID]
    retrieve_url: Annotated[str, fmt("uri") & pattern("^https?://")]
    size_bytes: Annotated[int, minimum(1)]

    def to_payload(self) -> dict[str, Any]:
        """The JSON payload (schema imaging-instance-stored.v1)."""
        return wire.to_json(self)

    @classmethod
    def from_payload(cls, payload: dict[str, Any]) -> ImagingInstanceStored:
        """Build from a schema-validated payload."""
        return wire.from_json(cls, payload)


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
class ModelPayload:
    """:class:`~radcds.domain.findings.ModelIdentity` on the wire."""

    name: Annotated[str, length(min=1)]
    version: Annotated[str, length(min=1)]


@dataclass(frozen=True, slots=True)
class MeasurementPayload:
    """One :class:`~radcds.domain.findings.Measurement` on the wire: its code flattened beside value and unit."""

    system: Annotated[str, length(min=1)]
    code: Annotated[str, length(min=1)]
    display: str
    value: float
    unit: Annotated[str, length(min=1)]
    critical: Annotated[
        bool,
        doc("A critical result that needs timely communication (optional, default false)."),
        OMIT_EMPTY,
    ] = False


@dataclass(frozen=True, slots=True)
class FindingCodingPayload:
    """A coded finding (SNOMED CT; FHIR R4 Coding, 2.24.0.3) with every part given."""

    system: Annotated[str, length(min=1)]
    code: Annotated[str, length(min=1)]
    display: str


@dataclass(frozen=True, slots=True)
class PointPayload:
    """A (row, column) point on the source image grid (PS3.3 C.18.6.1.1)."""

    row: float
    column: float


@dataclass(frozen=True, slots=True)
class LocationPayload:
    """:class:`~radcds.domain.findings.ImageLocation` on the wire."""

    description: Annotated[str, length(min=1)]
    points: tuple[PointPayload, ...] = ()


@dataclass(frozen=True, slots=True)
class KeyImagePayload:
    """:class:`~radcds.domain.findings.KeyImageReference` on the wire (PS3.3 C.17.3.2.1)."""

    sop_instance_uid: Annotated[str, DICOM_UID]
    sop_class_uid: Annotated[str, DICOM_UID]
    frame_number: Annotated[int, minimum(1), SHOW_DEFAULT] = 1


MODEL = wire.mirror(ModelIdentity, ModelPayload)
KEY_IMAGE = wire.mirror(KeyImageReference, KeyImagePayload)
FINDING_CODING = wire.mirror(Coding, FindingCodingPayload)


@dataclass(frozen=True, slots=True)
class ImagingFindingsProducedPayload:
    """The payload of :class:`ImagingFindingsProduced`: the :class:`ImageAnalysis` flattened to the wire."""

    instance: Annotated[InstanceReference, INSTANCE]
    context: Annotated[StudyContext, STUDY_CONTEXT]
    model: Annotated[ModelIdentity, MODEL]
    measurements: tuple[MeasurementPayload, ...]
    not_analysed_reason: Annotated[str, length(min=1), OMIT_EMPTY] = ""
    findings: Annotated[
        tuple[FindingCodingPayload, ...], doc("Coded findings (SNOMED CT) raised by the model's rules."), OMIT_EMPTY
    ] = ()
    critical: Annotated[
        bool, doc("Priority flag: a critical finding (e.g. intracranial hemorrhage candidate)."), SHOW_DEFAULT
    ] = False
    location: Annotated[
        LocationPayload | None,
        doc("Where on the key image: words, and (row, column) points on the source image grid."),
    ] = None
    key_image: Annotated[
        KeyImageReference | None, KEY_IMAGE, doc("The image that best shows the result (SOP Instance UID and frame).")
    ] = None
    structured_report: Annotated[
        InstanceReference | None,
        INSTANCE,
        doc("The DICOM SR (TID 1500 Comprehensive 3D SR) stored in imaging with the same result."),
    ] = None


@dataclass(frozen=True, slots=True)
class ImagingFindingsProduced:
    """A model analysed (or declined to analyse) one series: one event per (series, model).

    Fields added after the first release (``findings``, ``critical``, ``location``, ``keyImage``,
    ``structuredReport``) are optional in the schema and default to empty, so older payloads
    still parse and older consumers may ignore them. Declared by :class:`ImagingFindingsProducedPayload`.
    """

    analysis: ImageAnalysis

    def to_payload(self) -> dict[str, Any]:
        """The JSON payload (schema imaging-findings-produced.v1)."""
        a = self.analysis
        location = None
        if a.location is not None:
            location = LocationPayload(a.location.description, tuple(PointPayload(r, c) for r, c in a.location.points))
        return wire.to_json(
            ImagingFindingsProducedPayload(
                instance=a.instance,
                context=a.context,
                model=a.model,
                measurements=tuple(
                    MeasurementPayload(m.code.system, m.code.code, m.code.display, m.value, m.unit, m.critical)
                    for m in a.measurements
                ),
                not_analysed_reason=a.not_analysed_reason,
                findings=tuple(FINDING_CODING.encode(c) for c in a.findings),
                critical=a.critical,
                location=location,
                key_image=a.key_image,
                structured_report=a.structured_report,
            )
        )

    @classmethod
    def from_payload(cls, payload: dict[str, Any]) -> ImagingFindingsProduced:
        """Build from a schema-validated payload."""
        p = wire.from_json(ImagingFindingsProducedPayload, payload)
        return cls(
            ImageAnalysis(
                instance=p.instance,
                context=p.context,
                model=p.model,
                measurements=tuple(
                    Measurement(Coding(m.system, m.code, m.display), m.value, m.unit, critical=m.critical)
                    for m in p.measurements
                ),
                not_analysed_reason=p.not_analysed_reason,
                findings=tuple(FINDING_CODING.decode(c) for c in p.findings),
                critical=p.critical,
                location=(
                    ImageLocation(p.location.description, tuple((pt.row, pt.column) for pt in p.location.points))
                    if p.location is not None
                    else None
                ),
                key_image=p.key_image,
                structured_report=p.structured_report,
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

    diagnostic_report_id: Annotated[str, FHIR_ID]
    study_instance_uid: Annotated[str, DICOM_UID]
    status: Annotated[str, REPORT_STATUS]
    observation_ids: tuple[str, ...]
    #: ``meta.versionId`` of the stored version.
    version_id: Annotated[str, pattern(r"^[0-9]+$"), OMIT_EMPTY] = ""
    #: Status before this change ("" for a new report or a change that kept the status).
    previous_status: Annotated[str, REPORT_STATUS, OMIT_EMPTY] = ""
    #: ServiceRequest ids the report is ``basedOn`` (the order).
    service_request_ids: Annotated[tuple[Annotated[str, FHIR_ID], ...], OMIT_EMPTY] = ()
    accession_number: Annotated[str, length(max=64), OMIT_EMPTY] = ""
    #: Practitioner reference of the radiologist who signed or amended the report.
    results_interpreter: Annotated[str, length(max=256), OMIT_EMPTY] = ""
    #: True when the report holds a critical result; its Communications are listed.
    critical: Annotated[bool, OMIT_EMPTY] = False
    communication_ids: Annotated[tuple[Annotated[str, FHIR_ID], ...], OMIT_EMPTY] = ()

    def to_payload(self) -> dict[str, Any]:
        """The JSON payload (schema diagnostic-report-stored.v1)."""
        return wire.to_json(self)

    @classmethod
    def from_payload(cls, payload: dict[str, Any]) -> DiagnosticReportStored:
        """Build from a schema-validated payload (either version of its content)."""
        return wire.from_json(cls, payload)


@dataclass(frozen=True, slots=True, kw_only=True)
class ProcedureCodePayload:
    """OBR-4 / ServiceRequest.code on the wire: a code and its system, no display."""

    system: str = ""
    code: Annotated[str, length(min=1, max=64)]


def _procedure_code_to_wire(code: Coding) -> ProcedureCodePayload:
    return ProcedureCodePayload(system=code.system, code=code.code)


def _procedure_code_from_wire(code: ProcedureCodePayload) -> Coding:
    return Coding(code.system, code.code, "")


PROCEDURE_CODE = wire.As(ProcedureCodePayload, _procedure_code_to_wire, _procedure_code_from_wire)


@dataclass(frozen=True, slots=True)
class ImagingOrderReceived:
    """The reporting service stored an imaging order from the RIS as a FHIR ServiceRequest.

    Sent for each accepted HL7 v2.5.1 ORM^O01 / OMI^O23 (ORC-1 NW new, XO change, CA cancel;
    IHE RAD-2/RAD-4) so that the study and the report that follow can be tied to the order.
    It carries the order's keys only: no patient name or other demographics.
    """

    service_request_id: Annotated[str, FHIR_ID]
    #: FHIR ServiceRequest.status after the message: ``active``, or ``revoked`` after a cancel.
    status: Annotated[str, one_of("active", "revoked")]
    #: ORC-1 (HL7 table 0119): NW, XO or CA.
    order_control: Annotated[str, one_of("NW", "XO", "CA")]
    placer_order_number: Annotated[str, length(min=1, max=199), OMIT_EMPTY] = ""
    placer_assigning_authority: Annotated[str, length(max=199), OMIT_EMPTY] = ""
    filler_order_number: Annotated[str, length(min=1, max=199), OMIT_EMPTY] = ""
    filler_assigning_authority: Annotated[str, length(max=199), OMIT_EMPTY] = ""
    #: OBR-18 / IPC-1, DICOM Accession Number (0008,0050).
    accession_number: Annotated[str, length(min=1, max=16), OMIT_EMPTY] = ""
    #: ZDS-1 / IPC-3, DICOM Study Instance UID (0020,000D).
    study_instance_uid: Annotated[str, DICOM_UID, OMIT_EMPTY] = ""
    #: The ServiceRequest's subject (radcds's Patient id) and its code (OBR-4): added later, optional.
    patient_id: Annotated[
        str, FHIR_ID, doc("The ServiceRequest's subject: radcds's Patient id (added later; optional)."), OMIT_EMPTY
    ] = ""
    procedure_code: Annotated[
        Coding | None, PROCEDURE_CODE, doc("OBR-4 / the ServiceRequest's code (added later; optional).")
    ] = None
    #: FHIR R4 ServiceRequest.priority (value set request-priority): from TQ1-9, ORC-7.6 or OBR-27.6.
    priority: Annotated[
        str,
        doc(
            "FHIR R4 ServiceRequest.priority (request-priority): routine, urgent, asap or stat; from HL7 v2 "
            "TQ1-9 / ORC-7.6 / OBR-27.6 (table 0027) or a FHIR update (added later; optional)."
        ),
        one_of("routine", "urgent", "asap", "stat"),
        OMIT_EMPTY,
    ] = ""

    def to_payload(self) -> dict[str, Any]:
        """The JSON payload (schema imaging-order-received.v1); empty optional fields are left out."""
        return wire.to_json(self)

    @classmethod
    def from_payload(cls, payload: dict[str, Any]) -> ImagingOrderReceived:
        """Build from a schema-validated payload."""
        return wire.from_json(cls, payload)


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
class CriticalResultAcknowledged:
    """A clinician acknowledged a critical result: the loop of its communication is closed.

    ACR Practice Parameter for Communication of Diagnostic Imaging Findings: the receipt of a critical
    result is documented. ``communication_id`` is the critical result's FHIR Communication (the one
    :class:`CriticalResultEscalated` names too), whether its own message or its escalation was
    acknowledged; ``acknowledged_by`` is a FHIR reference (``Practitioner/...`` or ``PractitionerRole/...``).
    Sent once per critical result, for the first acknowledgement.
    """

    communication_id: Annotated[str, FHIR_ID]
    diagnostic_report_id: Annotated[str, FHIR_ID]
    study_instance_uid: Annotated[str, DICOM_UID]
    acknowledged_by: Annotated[str, length(min=1, max=256), pattern(r"^(Practitioner|PractitionerRole)/.+$")]
    acknowledged_at: Annotated[str, DATE_TIME]

    def to_payload(self) -> dict[str, Any]:
        """The JSON payload (schema critical-result-acknowledged.v1)."""
        return wire.to_json(self)

    @classmethod
    def from_payload(cls, payload: dict[str, Any]) -> CriticalResultAcknowledged:
        """Build from a schema-validated payload."""
        return wire.from_json(cls, payload)


@dataclass(frozen=True, slots=True, kw_only=True)
class NoduleCodingPayload:
    """A code of an entered nodule (FHIR R4 Coding, 2.24.0.3): system and code given, display optional."""

    system: Annotated[str, length(min=1)]
    code: Annotated[str, length(min=1, max=64)]
    display: str = ""


NODULE_CODING = wire.mirror(Coding, NoduleCodingPayload)


@dataclass(frozen=True, slots=True)
class EnteredNodule:
    """A pulmonary nodule as a radiologist entered it (one FHIR Observation of the report), in neutral terms:
    codes, sizes in millimetres, composition ``solid``, ``part-solid`` or ``ground-glass``."""

    observation_id: Annotated[str, FHIR_ID]
    finding: Annotated[Coding, NODULE_CODING, Key("code")]
    body_site: Annotated[Coding, NODULE_CODING]
    long_axis_mm: Annotated[float, SIZE_MM]
    composition: Annotated[str, one_of("solid", "part-solid", "ground-glass")]
    short_axis_mm: Annotated[float | None, SIZE_MM] = None
    #: The mean diameter of the solid part of a part-solid nodule.
    solid_part_mm: Annotated[float | None, SIZE_MM] = None

    def to_payload(self) -> dict[str, Any]:
        """One item of ``findings`` (schema report-findings-entered.v1)."""
        return wire.to_json(self)

    @classmethod
    def from_payload(cls, p: dict[str, Any]) -> EnteredNodule:
        """Build from one schema-validated item."""
        return wire.from_json(cls, p)


@dataclass(frozen=True, slots=True, kw_only=True)
class PatientIdentifierPayload:
    """A FHIR R4 Identifier (2.24.0.12) reduced to system and value."""

    system: str = ""
    value: Annotated[str, length(min=1, max=128)]


def _identifier_to_wire(identifier: tuple[str, str]) -> PatientIdentifierPayload:
    return PatientIdentifierPayload(system=identifier[0], value=identifier[1])


def _identifier_from_wire(identifier: PatientIdentifierPayload) -> tuple[str, str]:
    return (identifier.system, identifier.value)


PATIENT_IDENTIFIER = wire.As(PatientIdentifierPayload, _identifier_to_wire, _identifier_from_wire)


@dataclass(frozen=True, slots=True)
class StructuredFindingsEntered:
    """A radiologist sent structured findings with a DiagnosticReport (FHIR R4 DiagnosticReport.result, 8.1): the
    report version's complete set of radiologist-entered nodules (empty when the radiologist removed them all), so
    a consumer replaces what the same report gave before. ``patient_id`` is radcds's Patient id;
    ``patient_identifier`` (system, value) the Patient's MRN, which the findings events already carry (DICOM
    Patient ID), for reading the patient's EHR context."""

    diagnostic_report_id: Annotated[str, FHIR_ID]
    version_id: Annotated[str, pattern(r"^[0-9]+$")]
    report_status: Annotated[str, REPORT_STATUS]
    study_instance_uid: Annotated[str, DICOM_UID]
    patient_id: Annotated[str, FHIR_ID, doc("radcds's Patient id (the report's subject).")]
    findings: tuple[EnteredNodule, ...]
    #: The radiologist who entered them ("" when unknown: a version that only dropped findings).
    entered_by: Annotated[
        str,
        pattern(r"^(Practitioner|PractitionerRole)/[A-Za-z0-9\-\.]{1,64}$"),
        doc("The radiologist who entered the findings (the Observations' performer)."),
        OMIT_EMPTY,
    ]
    study_date: Annotated[str, ISO_DATE, OMIT_EMPTY] = ""
    modalities: Annotated[
        tuple[Annotated[str, pattern(r"^[A-Z0-9]{1,16}$")], ...],
        doc("DICOM modalities of the report's ImagingStudy (e.g. CT)."),
        OMIT_EMPTY,
    ] = ()
    patient_identifier: Annotated[
        tuple[str, str] | None,
        PATIENT_IDENTIFIER,
        doc("The Patient's MRN identifier (Patient.identifier of type MR, else the first), for the EHR look-up."),
    ] = None

    def to_payload(self) -> dict[str, Any]:
        """The JSON payload (schema report-findings-entered.v1); empty optional fields are left out."""
        return wire.to_json(self)

    @classmethod
    def from_payload(cls, payload: dict[str, Any]) -> StructuredFindingsEntered:
        """Build from a schema-validated payload."""
        return wire.from_json(cls, payload)


# ---- worklist (issue #13): feedback on AI findings and model monitoring alerts -----------------------------

#: How a radiologist judged an AI finding.
FEEDBACK_ACTION = one_of("accepted", "edited", "rejected")
#: Why a radiologist rejected an AI finding (the worklist's short coded list).
REJECTION_REASON = one_of("false-positive", "wrong-location", "wrong-measurement", "artefact-or-device", "other")
#: A FHIR R4 reference to the signing radiologist (Practitioner or PractitionerRole, R4 2.3.0 Reference).
PRACTITIONER_REFERENCE = pattern(r"^(Practitioner|PractitionerRole)/[A-Za-z0-9\-\.]{1,64}$")


@dataclass(frozen=True, slots=True, kw_only=True)
class FindingFeedbackRecorded:
    """A radiologist's decision on one AI finding, recorded per model, model version and finding (issue #13).

    ``finding_id`` is the worklist's id of one model's analysis of one series (one FINDINGS_PRODUCED event);
    ``finding_code`` narrows it to one coded finding (SNOMED CT) or measurement of that analysis, or is empty for
    the analysis as a whole. ``action`` ``rejected`` carries ``reason_code`` (``other`` with ``reason_text``).
    The worklist also records the decision as a FHIR R4 Observation; no patient name or demographics travel here.
    """

    feedback_id: Annotated[str, FHIR_ID]
    study_instance_uid: Annotated[str, DICOM_UID]
    finding_id: Annotated[str, length(min=1, max=64)]
    model: Annotated[ModelIdentity, MODEL]
    action: Annotated[str, FEEDBACK_ACTION]
    practitioner: Annotated[str, PRACTITIONER_REFERENCE, doc("The radiologist who decided (FHIR reference).")]
    recorded_at: Annotated[str, DATE_TIME]
    finding_code: Annotated[
        str, length(max=64), doc("The coded finding or measurement decided on; absent: the whole analysis."), OMIT_EMPTY
    ] = ""
    reason_code: Annotated[str, REJECTION_REASON, doc("Why the finding was rejected (rejected only)."), OMIT_EMPTY] = ""
    reason_text: Annotated[str, length(max=500), doc("The radiologist's words (required with other)."), OMIT_EMPTY] = ""
    diagnostic_report_id: Annotated[
        str, FHIR_ID, doc("The DiagnosticReport the decision was made in, when known."), OMIT_EMPTY
    ] = ""

    def to_payload(self) -> dict[str, Any]:
        """The JSON payload (schema worklist-finding-feedback-recorded.v1); empty optional fields are left out."""
        return wire.to_json(self)

    @classmethod
    def from_payload(cls, payload: dict[str, Any]) -> FindingFeedbackRecorded:
        """Build from a schema-validated payload."""
        return wire.from_json(cls, payload)


@dataclass(frozen=True, slots=True, kw_only=True)
class ModelAlertRaised:
    """A monitored rate of one model version crossed its configured threshold over a window of studies.

    ``metric`` names the rate (``rejection-rate``, ``disagreement-rate``, ``outside-envelope-rate``,
    ``drift-<attribute>``); ``value`` crossed ``threshold`` over the last ``window_studies`` studies.
    """

    alert_id: Annotated[str, FHIR_ID]
    model: Annotated[ModelIdentity, MODEL]
    metric: Annotated[str, pattern(r"^[a-z][a-z0-9-]{0,47}$")]
    value: float
    threshold: float
    window_studies: Annotated[int, minimum(1)]
    raised_at: Annotated[str, DATE_TIME]

    def to_payload(self) -> dict[str, Any]:
        """The JSON payload (schema worklist-model-alert-raised.v1)."""
        return wire.to_json(self)

    @classmethod
    def from_payload(cls, payload: dict[str, Any]) -> ModelAlertRaised:
        """Build from a schema-validated payload."""
        return wire.from_json(cls, payload)


# ---- end of the worklist's feedback and monitoring payloads ----------------------------------------------


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
        INSTANCE_STORED,
        ImagingInstanceStored,
        "ImagingInstanceStored",
        "CloudEvent org.radcds.imaging.instance.stored.v1 on radcds.imaging.instances.v1: a DICOM instance was "
        "stored and can be retrieved over WADO-RS (PS3.18 10.4).",
    ),
    PayloadContract(
        FINDINGS_PRODUCED,
        ImagingFindingsProducedPayload,
        "ImagingFindingsProduced",
        "CloudEvent org.radcds.inference.findings.produced.v1 on radcds.inference.findings.v1: what one model "
        "measured on one series (one event per series and model), or why it did not run. findings, critical, "
        "location, keyImage and structuredReport were added backward-compatibly (optional; absent means none / "
        "false).",
    ),
    PayloadContract(
        REPORT_STORED,
        DiagnosticReportStored,
        "DiagnosticReportStored",
        "CloudEvent org.radcds.reporting.diagnostic-report.stored.v1 on radcds.reporting.reports.v1: a FHIR R4 "
        "DiagnosticReport was stored, updated, signed (final) or amended/corrected. Optional fields are absent "
        "when empty.",
    ),
    PayloadContract(
        ORDER_RECEIVED,
        ImagingOrderReceived,
        "ImagingOrderReceived",
        "CloudEvent org.radcds.reporting.imaging-order.received.v1 on radcds.reporting.orders.v1 (key: the "
        "ServiceRequest id): the reporting service stored an HL7 v2 ORM^O01/OMI^O23 order (ORC-1 NW, XO or CA) as"
        " a FHIR ServiceRequest, or a FHIR update changed its priority (orderControl XO). Order keys and priority "
        "only, no demographics. Optional fields are absent when empty.",
    ),
    PayloadContract(
        FINDINGS_ENTERED,
        StructuredFindingsEntered,
        "StructuredFindingsEntered",
        "CloudEvent org.radcds.reporting.findings.entered.v1 on radcds.reporting.findings.v1 (key: the Study "
        "Instance UID): a radiologist sent structured findings (FHIR Observations contained in a PUT of the "
        "DiagnosticReport) and the reporting service stored them with this report version. `findings` is the "
        "version's complete set of radiologist-entered pulmonary nodules (empty when all were removed): a "
        "consumer replaces what the same report gave before. Sizes in millimetres. No names or demographics; "
        "patientIdentifier is the Patient's MRN (as the findings events carry the DICOM Patient ID), for the EHR "
        "context.",
    ),
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
    PayloadContract(
        CRITICAL_RESULT_ACKNOWLEDGED,
        CriticalResultAcknowledged,
        "CriticalResultAcknowledged",
        "CloudEvent org.radcds.reporting.critical-result.acknowledged.v1 on radcds.reporting.reports.v1 (key: the "
        "Study Instance UID): a clinician acknowledged a critical result (its FHIR Communication, or the "
        "escalation of it, set to completed); sent once, for the first acknowledgement.",
    ),
    # ---- worklist (issue #13) ----
    PayloadContract(
        FINDING_FEEDBACK_RECORDED,
        FindingFeedbackRecorded,
        "FindingFeedbackRecorded",
        "CloudEvent org.radcds.worklist.finding-feedback.recorded.v1 on radcds.worklist.feedback.v1 (key: Study "
        "Instance UID): a radiologist accepted, edited or rejected (with a coded reason) an AI finding; recorded per "
        "model, model version and finding, and as a FHIR R4 Observation in the worklist. Optional fields are absent "
        "when empty. No names or demographics.",
    ),
    PayloadContract(
        MODEL_ALERT_RAISED,
        ModelAlertRaised,
        "ModelAlertRaised",
        "CloudEvent org.radcds.worklist.model-alert.raised.v1 on radcds.worklist.alerts.v1 (key: model name): a "
        "monitored rate of a model version (rejection, disagreement with the signed report, outside the validated "
        "envelope, input drift against the model card) crossed its configured threshold over the last "
        "windowStudies studies.",
    ),
)
