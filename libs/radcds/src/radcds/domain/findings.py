"""Value objects for what an imaging model measured on a DICOM instance.

These are the domain view of the "findings" that the inference service publishes and the
reporting service turns into FHIR Observations (FHIR R4 Observation, section 8.2.2) and a
DiagnosticReport (section 8.1).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from radcds.domain.codes import Coding


@dataclass(frozen=True, slots=True)
class ModelIdentity:
    """Which algorithm produced a result: the Triton model name and version."""

    name: str
    version: str

    def __post_init__(self) -> None:
        if not self.name or not self.version:
            raise ValueError("a model needs a name and a version")


@dataclass(frozen=True, slots=True)
class Measurement:
    """One quantitative result in UCUM units (FHIR Observation.valueQuantity).

    ``critical`` marks a critical result (ACR Practice Parameter for Communication of Diagnostic
    Imaging Findings: a finding that needs non-routine, timely communication, e.g. intracranial
    hemorrhage, SNOMED CT 1386000). The model that produced the measurement decides; it defaults to
    False so that events written before the flag existed still decode.
    """

    code: Coding
    value: float
    unit: str
    critical: bool = False

    def __post_init__(self) -> None:
        if self.value != self.value:  # NaN is never a measurement
            raise ValueError(f"measurement {self.code.code} is NaN")


@dataclass(frozen=True, slots=True)
class InstanceReference:
    """The DICOM instance a result was computed on (PS3.3 C.12.1 SOP Common, C.7.3.1)."""

    study_instance_uid: str
    series_instance_uid: str
    sop_instance_uid: str
    sop_class_uid: str


@dataclass(frozen=True, slots=True)
class StudyContext:
    """Patient and order context of a study, as read from its DICOM header (PS3.3 C.7.1.1)."""

    patient_id: str
    issuer_of_patient_id: str = ""
    accession_number: str = ""
    modality: str = ""
    study_date: str = ""  # DICOM DA, YYYYMMDD
    study_time: str = ""  # DICOM TM
    study_description: str = ""
    #: Patient's Name (0010,0010), PN alphabetic group as in the header: ``family^given^middle^prefix^suffix``.
    patient_name: str = ""
    #: Patient's Sex (0010,0040): ``M``, ``F``, ``O`` or empty (PS3.3 C.7.1.1).
    patient_sex: str = ""
    #: Patient's Birth Date (0010,0030), DICOM DA ``YYYYMMDD`` or empty.
    patient_birth_date: str = ""


@dataclass(frozen=True, slots=True)
class KeyImageReference:
    """The image that best shows a result: SOP Instance UID and frame (PS3.3 C.17.3.2.1 IMAGE reference;
    the source image of a TID 1501 measurement group)."""

    sop_instance_uid: str
    sop_class_uid: str
    frame_number: int = 1

    def __post_init__(self) -> None:
        if not self.sop_instance_uid or not self.sop_class_uid:
            raise ValueError("a key image needs a SOP Instance UID and a SOP Class UID")
        if self.frame_number < 1:
            raise ValueError(f"frame numbers start at 1 (PS3.3 C.7.6.6), got {self.frame_number}")


@dataclass(frozen=True, slots=True)
class ImageLocation:
    """Where on the key image a result lies.

    ``points`` are (row, column) pixel coordinates on the *source* image grid (PS3.3 C.18.6.1.1,
    SCOORD ``POINT`` with column as x and row as y); ``description`` says the same in words
    (e.g. "largest region centred at row 260, column 250, image left half").
    """

    description: str
    points: tuple[tuple[float, float], ...] = ()

    def __post_init__(self) -> None:
        if not self.description:
            raise ValueError("a location needs a description")


@dataclass(frozen=True, slots=True)
class ImageAnalysis:
    """What one model measured on one series (or instance), or why it did not run.

    ``instance`` is the key image when the model ran, else the first instance of the series.
    ``findings`` are coded (SNOMED CT) conclusions of the model's rules; ``critical`` is the
    priority flag (any finding in :data:`radcds.domain.codes.CRITICAL_FINDINGS`).
    ``structured_report`` is the DICOM SR (TID 1500) holding the same result, when one was stored.
    """

    instance: InstanceReference
    context: StudyContext
    model: ModelIdentity
    measurements: tuple[Measurement, ...] = field(default=())
    not_analysed_reason: str = ""
    findings: tuple[Coding, ...] = field(default=())
    critical: bool = False
    location: ImageLocation | None = None
    key_image: KeyImageReference | None = None
    structured_report: InstanceReference | None = None

    def __post_init__(self) -> None:
        if self.not_analysed_reason and (self.measurements or self.findings or self.critical):
            raise ValueError("an analysis that did not run cannot carry measurements or findings")
        if not self.not_analysed_reason and not self.measurements:
            raise ValueError("an analysis must carry measurements or a not-analysed reason")

    @property
    def analysed(self) -> bool:
        """True when the model ran and produced measurements."""
        return not self.not_analysed_reason
