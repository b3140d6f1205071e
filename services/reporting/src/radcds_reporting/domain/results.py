"""What an imaging result message says, independent of HL7 syntax (pure).

An :class:`ImagingResult` carries everything an HL7 v2.5.1 ORU^R01 (chapter 7.3.1) needs and
nothing about its encoding: the result status (OBR-25, HL7 table 0123), the order it answers
(placer/filler numbers, OBR-18 accession), the procedure, observation and status-change times
(OBR-7, OBR-22), the report text in sections (findings, comparison, impression, recommendations, missing
context, AI disclaimer), numeric
measurements in UCUM units, an optional coded conclusion and the principal result interpreter
(OBR-32). The same object maps to a FHIR DiagnosticReport (HL7 v2-to-FHIR IG: OBR-25
P→preliminary, F→final, C→corrected, X→cancelled).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum

from radcds.domain.codes import LOINC, Coding
from radcds_reporting.domain.orders import OrderNumber, PatientIdentifier, PersonName, Practitioner


class ResultStatus(StrEnum):
    """Report status (FHIR DiagnosticReport.status) with its OBR-25 code (HL7 table 0123)."""

    PRELIMINARY = "preliminary"
    FINAL = "final"
    CORRECTED = "corrected"
    CANCELLED = "cancelled"

    @property
    def obr25(self) -> str:
        """The OBR-25 result status code: P, F, C or X."""
        return _OBR25[self]

    @classmethod
    def from_obr25(cls, code: str) -> ResultStatus:
        """The status for an OBR-25 code; raises ``ValueError`` for codes radcds does not send."""
        for status, letter in _OBR25.items():
            if letter == code:
                return status
        raise ValueError(f"OBR-25 {code!r} is not one of P, F, C, X")


_OBR25 = {
    ResultStatus.PRELIMINARY: "P",
    ResultStatus.FINAL: "F",
    ResultStatus.CORRECTED: "C",
    ResultStatus.CANCELLED: "X",
}


class ReportSectionKind(StrEnum):
    """The parts of a readable radiology report."""

    FINDINGS = "findings"
    #: Filled from fusion's assessment (comparison with the patient's priors).
    COMPARISON = "comparison"
    IMPRESSION = "impression"
    #: Filled from fusion's assessment (guideline follow-up).
    RECOMMENDATIONS = "recommendations"
    #: Filled from fusion's assessment (what the EHR could not tell).
    MISSING_CONTEXT = "missing-context"
    AI_DISCLAIMER = "ai-disclaimer"


#: LOINC 18782-3 "Radiology Study observation (narrative)": the findings section.
SECTION_FINDINGS = Coding(LOINC, "18782-3", "Radiology Study observation")
#: LOINC 18834-2 "Radiology Comparison study (narrative)".
SECTION_COMPARISON = Coding(LOINC, "18834-2", "Radiology Comparison study")
#: LOINC 18783-1 "Radiology Study recommendation (narrative)".
SECTION_RECOMMENDATIONS = Coding(LOINC, "18783-1", "Radiology Study recommendation")
#: Our local code for the clinical context the EHR could not supply (no LOINC report section says this).
SECTION_MISSING_CONTEXT = Coding(
    "https://radcds.example.org/fhir/CodeSystem/report-section", "missing-context", "Missing clinical context"
)
#: LOINC 19005-8 "Radiology Imaging study [Impression] (narrative)".
SECTION_IMPRESSION = Coding(LOINC, "19005-8", "Radiology Imaging study [Impression]")
#: Our local code for the statement that the report is AI-generated (no LOINC code exists).
SECTION_AI_DISCLAIMER = Coding(
    "https://radcds.example.org/fhir/CodeSystem/report-section", "ai-disclaimer", "AI disclaimer"
)
#: LOINC 18748-4 "Diagnostic imaging study": the whole report as one text block.
SECTION_WHOLE_REPORT = Coding(LOINC, "18748-4", "Diagnostic imaging study")

SECTION_CODES = {
    ReportSectionKind.FINDINGS: SECTION_FINDINGS,
    ReportSectionKind.COMPARISON: SECTION_COMPARISON,
    ReportSectionKind.IMPRESSION: SECTION_IMPRESSION,
    ReportSectionKind.RECOMMENDATIONS: SECTION_RECOMMENDATIONS,
    ReportSectionKind.MISSING_CONTEXT: SECTION_MISSING_CONTEXT,
    ReportSectionKind.AI_DISCLAIMER: SECTION_AI_DISCLAIMER,
}
SECTION_HEADINGS = {
    ReportSectionKind.FINDINGS: "FINDINGS:",
    ReportSectionKind.COMPARISON: "COMPARISON:",
    ReportSectionKind.IMPRESSION: "IMPRESSION:",
    ReportSectionKind.RECOMMENDATIONS: "RECOMMENDATIONS:",
    ReportSectionKind.MISSING_CONTEXT: "MISSING CLINICAL CONTEXT:",
    ReportSectionKind.AI_DISCLAIMER: "NOTE:",
}


@dataclass(frozen=True, slots=True)
class ReportSection:
    """One section of the readable report as lines of plain text (no markup, no line breaks inside a line)."""

    kind: ReportSectionKind
    lines: tuple[str, ...]

    def __post_init__(self) -> None:
        if not self.lines:
            raise ValueError(f"report section {self.kind.value} has no lines")
        for line in self.lines:
            if "\r" in line or "\n" in line:
                raise ValueError(f"report section {self.kind.value}: a line may not contain a line break")

    @property
    def code(self) -> Coding:
        """The LOINC (or local) code of this section."""
        return SECTION_CODES[self.kind]


@dataclass(frozen=True, slots=True)
class NumericResult:
    """A measurement: coded quantity in UCUM units (HL7 OBX with value type NM, OBX-6 units)."""

    code: Coding
    value: float
    unit: str

    def __post_init__(self) -> None:
        if not math.isfinite(self.value):
            raise ValueError(f"measurement {self.code.code} is not a finite number")
        if not self.unit or any(c.isspace() for c in self.unit):
            raise ValueError(f"measurement {self.code.code} needs a UCUM unit without spaces")


def _require_aware(name: str, moment: datetime | None) -> None:
    if moment is not None and moment.tzinfo is None:
        raise ValueError(f"{name} needs a UTC offset")


@dataclass(frozen=True, slots=True)
class ImagingResult:
    """The content of one result message about one order (HL7 v2.5.1 ORU^R01, one ORDER_OBSERVATION).

    A correction (``CORRECTED``) carries the whole report again under the same filler number.
    At least one of placer and filler order number is required, and a report that is not
    cancelled must say something: text, measurements or a conclusion.
    """

    status: ResultStatus
    patient: PatientIdentifier
    procedure_code: Coding
    observation_time: datetime
    status_changed_at: datetime
    placer_order_number: OrderNumber | None = None
    filler_order_number: OrderNumber | None = None
    accession_number: str = ""
    diagnostic_service_section: str = "RAD"
    sections: tuple[ReportSection, ...] = ()
    measurements: tuple[NumericResult, ...] = ()
    conclusion: Coding | None = None
    principal_result_interpreter: Practitioner | None = None
    ordering_provider: Practitioner | None = None
    patient_name: PersonName | None = field(default=None, repr=False, compare=False)
    patient_birth_date: str = field(default="", repr=False)
    patient_sex: str = ""
    patient_class: str = ""

    def __post_init__(self) -> None:
        if self.placer_order_number is None and self.filler_order_number is None:
            raise ValueError("a result needs a placer or a filler order number")
        _require_aware("observation_time", self.observation_time)
        _require_aware("status_changed_at", self.status_changed_at)
        if self.status is not ResultStatus.CANCELLED and not (self.sections or self.measurements or self.conclusion):
            raise ValueError("a result must carry report text, measurements or a conclusion")
        if len(self.accession_number) > 16:
            raise ValueError("accession number is longer than 16 characters (DICOM SH)")
        birth = self.patient_birth_date
        if birth and not (len(birth) in (4, 6, 8) and birth.isdigit()):
            raise ValueError("birth date must be YYYY[MM[DD]] (PID-7 to day precision)")
        if self.patient_sex not in ("", "F", "M", "O", "U", "A", "N"):
            raise ValueError("patient sex must be an HL7 table 0001 code")
        kinds = [s.kind for s in self.sections]
        if len(kinds) != len(set(kinds)):
            raise ValueError("each report section may appear once")

    @property
    def order_key(self) -> str:
        """The key that keeps one order's messages in sequence: the placer number, else the filler number."""
        number = self.placer_order_number or self.filler_order_number
        assert number is not None  # guaranteed by __post_init__
        return f"{number.namespace}|{number.number}"
