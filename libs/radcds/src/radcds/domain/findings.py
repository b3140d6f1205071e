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


@dataclass(frozen=True, slots=True)
class ImageAnalysis:
    """What one model measured on one instance, or why it did not run."""

    instance: InstanceReference
    context: StudyContext
    model: ModelIdentity
    measurements: tuple[Measurement, ...] = field(default=())
    not_analysed_reason: str = ""

    def __post_init__(self) -> None:
        if self.not_analysed_reason and self.measurements:
            raise ValueError("an analysis that did not run cannot carry measurements")
        if not self.not_analysed_reason and not self.measurements:
            raise ValueError("an analysis must carry measurements or a not-analysed reason")

    @property
    def analysed(self) -> bool:
        """True when the model ran and produced measurements."""
        return not self.not_analysed_reason
