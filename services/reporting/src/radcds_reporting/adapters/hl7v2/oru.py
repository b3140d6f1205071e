"""Build HL7 v2.5.1 ORU^R01 "Unsolicited transmission of an observation message" (chapter 7.3.1).

Segments: MSH, PID, PV1 (when the patient class is known), ORC, OBR, OBX. PID (3.4.2) carries
PID-3 with its assigning authority (CX.4), PID-5, PID-7 and PID-8 from the stored FHIR Patient
(the order's demographics, else what the DICOM header gave). Fields follow the
radiology profile in ``docs/hl7v2.md``: ORC-2/OBR-2 placer number, ORC-3/OBR-3 filler number,
OBR-4 procedure, OBR-7 observation time, OBR-16 ordering provider, OBR-18 accession (IHE RAD-28),
OBR-22 status change, OBR-24 section, OBR-25 result status, OBR-32 principal result interpreter
(NDL, so its parts are separated by ``&``), OBX NM with UCUM units (OBX-6), OBX-11 per line.

The report text is written in one of three layouts (:class:`TextLayout`), chosen per destination.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from radcds.domain.codes import UCUM, Coding
from radcds_reporting.adapters.hl7v2.datatypes import ce, ei, format_dtm, format_nm, ndl, xcn, xpn
from radcds_reporting.adapters.hl7v2.escaping import DEFAULT_DELIMITERS, escape
from radcds_reporting.domain.results import (
    SECTION_HEADINGS,
    SECTION_IMPRESSION,
    SECTION_WHOLE_REPORT,
    ImagingResult,
    ResultStatus,
)

VERSION = "2.5.1"
SEGMENT_SEPARATOR = "\r"
#: PID-5 for a patient whose name radcds does not know: XPN.7 name type ``U`` (unspecified), nothing else.
UNSPECIFIED_NAME = "^^^^^^U"


class TextLayout(StrEnum):
    """How report text lines become OBX segments (a per-destination choice)."""

    #: One TX OBX per line; OBX-3 names the section, OBX-4 is ``<section>.<line>``.
    OBX_PER_LINE = "obx-per-line"
    #: One TX OBX per section, its lines as repetitions of OBX-5.
    REPEATING_OBX5 = "repeating-obx5"
    #: One FT OBX for the whole report, lines joined with the ``\\.br\\`` formatting command (2.7.6).
    FORMATTED_TEXT = "formatted-text"


@dataclass(frozen=True, slots=True)
class MessageHeader:
    """MSH values that depend on the pair of applications rather than on the result."""

    sending_application: str = "RADCDS"
    sending_facility: str = ""
    receiving_application: str = ""
    receiving_facility: str = ""
    processing_id: str = "P"
    #: MSH-15/MSH-16 (table 0155); both empty means original acknowledgment mode.
    accept_ack_type: str = "AL"
    application_ack_type: str = "NE"
    #: MSH-18 (table 0211); the message is encoded in UTF-8 on the wire.
    character_set: str = "UNICODE UTF-8"


def build_msh(header: MessageHeader, *, message_type: str, control_id: str, created_at: datetime) -> str:
    """MSH (2.15.9) for a message radcds sends."""
    d = DEFAULT_DELIMITERS
    if not control_id or len(control_id) > 20:
        raise ValueError("MSH-10 must be 1 to 20 characters")
    fields = [
        "MSH",
        d.encoding_characters,
        escape(header.sending_application),
        escape(header.sending_facility),
        escape(header.receiving_application),
        escape(header.receiving_facility),
        format_dtm(created_at),
        "",
        message_type,
        escape(control_id),
        header.processing_id,
        VERSION,
        "",
        "",
        header.accept_ack_type,
        header.application_ack_type,
        "",
        header.character_set,
    ]
    return d.field.join(fields).rstrip(d.field)


def _segment(*fields: str) -> str:
    return DEFAULT_DELIMITERS.field.join(fields).rstrip(DEFAULT_DELIMITERS.field)


def _orc5(status: ResultStatus) -> str:
    """ORC-5 order status (table 0038): IP while preliminary, CA when cancelled, CM otherwise."""
    return {ResultStatus.PRELIMINARY: "IP", ResultStatus.CANCELLED: "CA"}.get(status, "CM")


def build_oru_r01(
    result: ImagingResult,
    *,
    header: MessageHeader,
    control_id: str,
    created_at: datetime,
    layout: TextLayout = TextLayout.OBX_PER_LINE,
) -> str:
    """The ORU^R01 for ``result``, segments separated by CR; ``control_id`` becomes MSH-10.

    Retries must resend the returned text unchanged so MSH-10 stays the same (2.10.1).
    """
    d = DEFAULT_DELIMITERS
    segments = [build_msh(header, message_type="ORU^R01^ORU_R01", control_id=control_id, created_at=created_at)]

    pid3 = d.component.join([escape(result.patient.value), "", "", escape(result.patient.issuer), "MR"])
    # PID-5 is required (R) in v2.5.1 (3.4.2.5). A Patient without any name gets an XPN holding
    # only name type U "unspecified" (table 0200): present, conformant, and no invented name.
    name = xpn(result.patient_name) if result.patient_name else UNSPECIFIED_NAME
    segments.append(_segment("PID", "1", "", pid3, "", name, "", result.patient_birth_date, result.patient_sex))
    if result.patient_class:
        segments.append(_segment("PV1", "1", escape(result.patient_class)))

    placer = ei(result.placer_order_number) if result.placer_order_number else ""
    filler = ei(result.filler_order_number) if result.filler_order_number else ""
    ordering = xcn(result.ordering_provider) if result.ordering_provider else ""
    orc = ["ORC", "RE", placer, filler, "", _orc5(result.status)] + [""] * 6 + [ordering]
    segments.append(_segment(*orc))

    obr = [""] * 33
    obr[0] = "OBR"
    obr[1] = "1"
    obr[2] = placer
    obr[3] = filler
    obr[4] = ce(result.procedure_code)
    obr[7] = format_dtm(result.observation_time)
    obr[16] = ordering
    obr[18] = escape(result.accession_number)
    obr[22] = format_dtm(result.status_changed_at)
    obr[24] = escape(result.diagnostic_service_section)
    obr[25] = result.status.obr25
    if result.principal_result_interpreter:
        obr[32] = ndl(result.principal_result_interpreter)
    segments.append(_segment(*obr))

    segments.extend(_obx_segments(result, layout))
    return SEGMENT_SEPARATOR.join(segments)


def _obx(set_id: int, value_type: str, code: Coding, sub_id: str, value: str, units: str, status: str) -> str:
    return _segment("OBX", str(set_id), value_type, ce(code), sub_id, value, units, "", "", "", "", status)


def _obx_segments(result: ImagingResult, layout: TextLayout) -> list[str]:
    d = DEFAULT_DELIMITERS
    status = result.status.obr25
    out: list[str] = []

    def add(value_type: str, code: Coding, sub_id: str, value: str, units: str = "") -> None:
        out.append(_obx(len(out) + 1, value_type, code, sub_id, value, units, status))

    if layout is TextLayout.FORMATTED_TEXT and result.sections:
        lines: list[str] = []
        for section in result.sections:
            if lines:
                lines.append("")
            lines.append(SECTION_HEADINGS[section.kind])
            lines.extend(section.lines)
        br = f"{d.escape}.br{d.escape}"
        add("FT", SECTION_WHOLE_REPORT, "1", br.join(escape(line) for line in lines))
    else:
        for s_idx, section in enumerate(result.sections, start=1):
            if layout is TextLayout.REPEATING_OBX5:
                add("TX", section.code, str(s_idx), d.repetition.join(escape(line) for line in section.lines))
            else:
                for l_idx, line in enumerate(section.lines, start=1):
                    add("TX", section.code, f"{s_idx}.{l_idx}", escape(line))
    for m_idx, measurement in enumerate(result.measurements, start=1):
        unit = Coding(UCUM, measurement.unit, measurement.unit)
        add("NM", measurement.code, f"m{m_idx}", format_nm(measurement.value), ce(unit))
    if result.conclusion is not None:
        add("CE", SECTION_IMPRESSION, "c1", ce(result.conclusion))
    return out
