"""Parse HL7 v2 ORM^O01 and OMI^O23 order messages into :class:`~radcds_reporting.domain.orders.PlacedImagingOrder`.

Both carry the patient in PID (3.4.2): PID-3 identifier (the ``MR`` repetition, else the first)
with its assigning authority CX.4 (HD.1), PID-5 name, PID-7 birth date, PID-8 sex (table 0001).

ORM^O01 (v2.3-2.5.1, chapter 4.4.1) as IHE RAD-2/RAD-4 profile it: ORC-1 order control, ORC-2/3
placer and filler numbers, OBR-4 procedure, OBR-18 accession, OBR-19 requested procedure id,
OBR-20 scheduled procedure step id, OBR-24 modality, ZDS-1 Study Instance UID (IHE RAD TF-2
4.4.4.1.2.2, Z segment ``ZDS``), OBR-36 or ORC-7.4 scheduled time.

OMI^O23 (v2.5.1 chapter 4.4.10, IHE RAD-4 "HL7 v2.5.1 option"): the same ORC/OBR plus TQ1-7
scheduled start and IPC (4.5.6): IPC-1 accession, IPC-2 requested procedure id, IPC-3 Study
Instance UID, IPC-4 scheduled procedure step id, IPC-5 modality, IPC-9 scheduled station AE title.

Both may name the order's priority (HL7 table 0027): TQ1-9 (v2.5.1 4.5.4.9), else the TQ.6 component
of ORC-7 or OBR-27 (kept in v2.5.1 for backward compatibility); it becomes the FHIR request-priority
by :func:`~radcds_reporting.domain.orders.order_priority` (S stat, A asap, R routine; P, C, T and any
other value routine).

Bad content raises :class:`~radcds_reporting.adapters.hl7v2.ack.HL7MessageError` naming the segment and field
(ERR-2). Segments radcds does not read, Z segments included, are kept in
:attr:`ParsedOrderMessage.other_segments` exactly as received.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, tzinfo

import hl7

from radcds.domain.codes import Coding
from radcds_reporting.adapters.hl7v2.ack import (
    AckCode,
    ErrorCode,
    ErrorLocation,
    HL7MessageError,
    ReceivedHeader,
    parse_msh,
)
from radcds_reporting.adapters.hl7v2.datatypes import parse_dtm, received_coding_system
from radcds_reporting.adapters.hl7v2.escaping import Delimiters, unescape
from radcds_reporting.domain.orders import (
    ADMINISTRATIVE_SEX,
    InvalidOrderError,
    OrderControl,
    OrderNumber,
    PatientIdentifier,
    PersonName,
    PlacedImagingOrder,
    Practitioner,
    order_priority,
)

ORM_O01 = ("ORM", "O01")
OMI_O23 = ("OMI", "O23")
SUPPORTED_ORDER_MESSAGES = (ORM_O01, OMI_O23)
#: Segments the order parser reads; the rest (ZDS, which it also reads, included) are kept verbatim.
_READ_SEGMENTS = {"MSH", "PID", "ORC", "OBR", "IPC", "TQ1"}


@dataclass(frozen=True, slots=True)
class ParsedOrderMessage:
    """An order message read into the domain, plus what radcds did not interpret."""

    header: ReceivedHeader
    order: PlacedImagingOrder
    #: Every segment not read by the parser (PV1, NTE, DG1, Z segments, ...), in order, as received.
    other_segments: tuple[str, ...]

    @property
    def z_segments(self) -> tuple[str, ...]:
        """The Z segments among :attr:`other_segments` (site-specific extensions, kept, never dropped)."""
        return tuple(s for s in self.other_segments if s.startswith("Z"))


def normalise_segment_separators(text: str) -> str:
    """Use CR between segments (2.5.3), accepting the LF and CRLF some senders use; drop a trailing separator."""
    return text.replace("\r\n", "\r").replace("\n", "\r").strip("\r")


class _Reader:
    """Field access on a python-hl7 message with locations for errors.

    Values are unescaped by radcds (:func:`~radcds_reporting.adapters.hl7v2.escaping.unescape`, 2.7), never by
    python-hl7's ``extract_field``: its unescape repeats ``\\.sk<n>\\`` n times (``\\.sk999999999\\`` in ORC-2, 15
    bytes, made a gigabyte string) and logs the whole field once for every empty ``\\\\`` (70,000 bytes of them gave
    35,000 log lines of the field's text: patient data in the logs, gigabytes of them). The second was found by
    ``make fuzz``, the first in python-hl7's code then.
    """

    def __init__(self, message: hl7.Message) -> None:
        self.message = message
        separators = message.separators  # segment, field, repetition, component, subcomponent (python-hl7's order)
        self.delimiters = Delimiters(
            field=separators[1],
            repetition=separators[2],
            component=separators[3],
            subcomponent=separators[4],
            escape=message.esc,
        )

    def segment(self, name: str) -> hl7.Segment | None:
        try:
            return self.message.segment(name)
        except KeyError:
            return None

    def value(self, name: str, field: int, component: int = 1, repetition: int = 1) -> str:
        segment = self.segment(name)
        if segment is None or len(segment) <= field:
            return ""
        try:
            text = _leaf(segment[field], repetition, component)
        except IndexError:
            return ""
        if name == "MSH" and field in (1, 2):
            return text.strip()  # the delimiters themselves
        return unescape(text, self.delimiters).strip()

    def repetitions(self, name: str, field: int) -> int:
        segment = self.segment(name)
        if segment is None or len(segment) <= field:
            return 0
        value = segment[field]
        return len(value) if isinstance(value, hl7.Repetition) else 1


def _leaf(field: hl7.Field, repetition: int, component: int) -> str:
    """The raw text of one repetition's component (its first subcomponent), "" where the component is absent.

    The path python-hl7's ``Segment.extract_field`` follows, less its unescaping: a repetition without
    components is its own first component; asking for a later component of it raises IndexError.
    """
    rep = field[repetition - 1]  # IndexError when the repetition is absent
    if not isinstance(rep, hl7.Repetition):
        if component == 1:
            return str(rep)
        raise IndexError(f"no component {component}")
    if component > len(rep):
        return ""
    part = rep[component - 1]
    if not isinstance(part, hl7.Component):
        return str(part)
    return str(part[0]) if len(part) else ""


def _missing(segment: str, field: int, what: str, component: int = 0) -> HL7MessageError:
    return HL7MessageError(
        ErrorCode.REQUIRED_FIELD_MISSING, f"{what} is missing", location=ErrorLocation(segment, field, component)
    )


def _timestamp(value: str, segment: str, field: int, local_tz: tzinfo) -> datetime | None:
    if not value:
        return None
    try:
        return parse_dtm(value, default_tz=local_tz)
    except ValueError as exc:
        raise HL7MessageError(
            ErrorCode.DATA_TYPE_ERROR, "not an HL7 date/time (DTM)", location=ErrorLocation(segment, field)
        ) from exc


def _coding(r: _Reader, segment: str, field: int) -> Coding | None:
    code = r.value(segment, field, 1)
    if not code:
        return None
    system = r.value(segment, field, 3)
    return Coding(received_coding_system(system), code, r.value(segment, field, 2))


def _order_number(r: _Reader, orc_field: int, obr_field: int) -> OrderNumber | None:
    for segment, field in (("ORC", orc_field), ("OBR", obr_field)):
        number = r.value(segment, field, 1)
        if number:
            return OrderNumber(number, r.value(segment, field, 2))
    return None


def _practitioner(r: _Reader, segment: str, field: int) -> Practitioner | None:
    identifier, family = r.value(segment, field, 1), r.value(segment, field, 2)
    if not identifier and not family:
        return None
    return Practitioner(identifier, PersonName(family, r.value(segment, field, 3), r.value(segment, field, 4)))


def _birth_date(r: _Reader) -> str:
    """PID-7 (TS/DTM, 2.A.74) to at most day precision: ``YYYY[MM[DD]]``."""
    value = r.value("PID", 7)
    if not value:
        return ""
    digits = value.split("+")[0].split("-")[0].split(".")[0]
    if not digits.isdigit() or len(digits) not in (4, 6, 8, 10, 12, 14):
        raise HL7MessageError(
            ErrorCode.DATA_TYPE_ERROR, "birth date is not an HL7 date/time (TS)", location=ErrorLocation("PID", 7)
        )
    try:
        parse_dtm(digits)
    except ValueError as exc:
        raise HL7MessageError(
            ErrorCode.DATA_TYPE_ERROR, "birth date is not a calendar date", location=ErrorLocation("PID", 7)
        ) from exc
    return digits[:8]


def _sex(r: _Reader) -> str:
    """PID-8 administrative sex (table 0001)."""
    value = r.value("PID", 8).upper()
    if value and value not in ADMINISTRATIVE_SEX:
        raise HL7MessageError(
            ErrorCode.TABLE_VALUE_NOT_FOUND,
            "administrative sex must be F, M, O, U, A or N (table 0001)",
            location=ErrorLocation("PID", 8),
        )
    return value


def _patient(r: _Reader) -> tuple[PatientIdentifier, PersonName | None]:
    if r.segment("PID") is None:
        raise HL7MessageError(ErrorCode.SEGMENT_SEQUENCE_ERROR, "PID segment is missing", location=ErrorLocation("PID"))
    chosen = 1
    for rep in range(1, r.repetitions("PID", 3) + 1):
        if r.value("PID", 3, 5, rep) == "MR":
            chosen = rep
            break
    value = r.value("PID", 3, 1, chosen)
    if not value:
        raise _missing("PID", 3, "patient identifier (PID-3.1)", 1)
    patient = PatientIdentifier(value, r.value("PID", 3, 4, chosen))
    family = r.value("PID", 5, 1)
    name = PersonName(family, r.value("PID", 5, 2), r.value("PID", 5, 3)) if family else None
    return patient, name


def _priority(r: _Reader) -> str:
    """TQ1-9 (CWE.1), else ORC-7.6, else OBR-27.6 (table 0027) as a FHIR request-priority; ``""`` when none."""
    for segment, field, component in (("TQ1", 9, 1), ("ORC", 7, 6), ("OBR", 27, 6)):
        code = r.value(segment, field, component)
        if code:
            return order_priority(code)
    return ""


def parse_order_message(text: str, *, local_timezone: tzinfo = UTC) -> ParsedOrderMessage:
    """Read an ORM^O01 or OMI^O23 into a :class:`PlacedImagingOrder`.

    Timestamps without a UTC offset are read in ``local_timezone``. Raises
    :class:`HL7MessageError` with the failing location for anything radcds cannot accept.
    """
    text = normalise_segment_separators(text)
    header = parse_msh(text)
    kind = (header.message_code, header.trigger_event)
    if kind not in SUPPORTED_ORDER_MESSAGES:
        raise HL7MessageError(
            ErrorCode.UNSUPPORTED_MESSAGE_TYPE,
            "only ORM^O01 and OMI^O23 are accepted",
            location=ErrorLocation("MSH", 9),
            ack_code=AckCode.AR,
        )
    try:
        message = hl7.parse(text)
    except Exception as exc:  # python-hl7 raises bare exceptions on malformed input
        raise HL7MessageError(ErrorCode.DATA_TYPE_ERROR, "the message cannot be parsed") from exc
    r = _Reader(message)
    omi = kind == OMI_O23

    patient, patient_name = _patient(r)
    if r.segment("ORC") is None:
        raise HL7MessageError(ErrorCode.SEGMENT_SEQUENCE_ERROR, "ORC segment is missing", location=ErrorLocation("ORC"))
    control_code = r.value("ORC", 1)
    if not control_code:
        raise _missing("ORC", 1, "order control")
    try:
        control = OrderControl(control_code)
    except ValueError as exc:
        raise HL7MessageError(
            ErrorCode.TABLE_VALUE_NOT_FOUND,
            "order control must be NW, CA or XO (table 0119)",
            location=ErrorLocation("ORC", 1),
        ) from exc
    if control is not OrderControl.CANCEL and r.segment("OBR") is None:
        raise HL7MessageError(ErrorCode.SEGMENT_SEQUENCE_ERROR, "OBR segment is missing", location=ErrorLocation("OBR"))
    if omi and control is not OrderControl.CANCEL and r.segment("IPC") is None:
        raise HL7MessageError(
            ErrorCode.SEGMENT_SEQUENCE_ERROR, "IPC segment is missing (IHE RAD-4)", location=ErrorLocation("IPC")
        )

    if omi:
        accession = r.value("IPC", 1) or r.value("OBR", 18)
        requested_procedure_id = r.value("IPC", 2) or r.value("OBR", 19)
        study_uid = r.value("IPC", 3)
        sps_id = r.value("IPC", 4) or r.value("OBR", 20)
        modality = r.value("IPC", 5) or r.value("OBR", 24)
        ae_title = r.value("IPC", 9)
        scheduled = _timestamp(r.value("TQ1", 7), "TQ1", 7, local_timezone)
    else:
        accession = r.value("OBR", 18)
        requested_procedure_id = r.value("OBR", 19)
        study_uid = r.value("ZDS", 1)
        sps_id = r.value("OBR", 20)
        modality = r.value("OBR", 24)
        ae_title = ""
        scheduled = _timestamp(r.value("OBR", 36), "OBR", 36, local_timezone) or _timestamp(
            r.value("ORC", 7, 4), "ORC", 7, local_timezone
        )
    reason_code = _coding(r, "OBR", 31)
    reason = (reason_code.display or reason_code.code) if reason_code else r.value("OBR", 13)

    locations = {
        "placer_order_number": ErrorLocation("ORC", 2),
        "accession_number": ErrorLocation("IPC", 1) if omi else ErrorLocation("OBR", 18),
        "requested_procedure_id": ErrorLocation("IPC", 2) if omi else ErrorLocation("OBR", 19),
        "scheduled_procedure_step_id": ErrorLocation("IPC", 4) if omi else ErrorLocation("OBR", 20),
        "study_instance_uid": ErrorLocation("IPC", 3) if omi else ErrorLocation("ZDS", 1),
        "modality": ErrorLocation("IPC", 5) if omi else ErrorLocation("OBR", 24),
        "scheduled_station_ae_title": ErrorLocation("IPC", 9),
        "procedure_code": ErrorLocation("OBR", 4),
        "patient_birth_date": ErrorLocation("PID", 7),
        "patient_sex": ErrorLocation("PID", 8),
        "ordered_at": ErrorLocation("ORC", 9),
        "scheduled_at": ErrorLocation("TQ1", 7) if omi else ErrorLocation("OBR", 36),
    }
    try:
        order = PlacedImagingOrder(
            control=control,
            patient=patient,
            patient_name=patient_name,
            patient_birth_date=_birth_date(r),
            patient_sex=_sex(r),
            placer_order_number=_order_number(r, 2, 2),
            filler_order_number=_order_number(r, 3, 3),
            accession_number=accession,
            requested_procedure_id=requested_procedure_id,
            scheduled_procedure_step_id=sps_id,
            study_instance_uid=study_uid,
            procedure_code=_coding(r, "OBR", 4),
            modality=modality.upper(),
            scheduled_station_ae_title=ae_title,
            ordering_provider=_practitioner(r, "ORC", 12) or _practitioner(r, "OBR", 16),
            reason=reason,
            ordered_at=_timestamp(r.value("ORC", 9), "ORC", 9, local_timezone),
            scheduled_at=scheduled,
            priority=_priority(r),
        )
    except InvalidOrderError as exc:
        location = locations.get(exc.attribute)
        missing = exc.attribute in ("procedure_code", "placer_order_number")
        raise HL7MessageError(
            ErrorCode.REQUIRED_FIELD_MISSING if missing else ErrorCode.DATA_TYPE_ERROR, exc.reason, location=location
        ) from exc
    except ValueError as exc:
        raise HL7MessageError(ErrorCode.DATA_TYPE_ERROR, "an identifier is empty or malformed") from exc

    other = tuple(str(s) for s in message if str(s[0]) not in _READ_SEGMENTS)
    return ParsedOrderMessage(header=header, order=order, other_segments=other)
