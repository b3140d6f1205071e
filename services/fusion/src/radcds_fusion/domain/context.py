"""The patient's clinical context as fusion uses it, gathered from the EHR's FHIR API and radcds's own priors.

Every field may be unknown (``None`` or empty): a slow or missing EHR degrades the assessment, which then names
what was missing (``missing``), and never blocks it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from enum import StrEnum

from radcds_fusion.domain.comparison import MeasuredFinding
from radcds_fusion.domain.guidelines import PatientContext, fleischner_risk


class SmokingStatus(StrEnum):
    """Tobacco smoking status (US Core Smoking Status, LOINC 72166-2), reduced to what guidelines need."""

    CURRENT = "current"
    FORMER = "former"
    NEVER = "never"


@dataclass(frozen=True, slots=True)
class ImplantedDevice:
    """A device in the patient (FHIR Device or Procedure), e.g. a cardiac pacemaker (SNOMED CT 14106009)."""

    code: str
    display: str
    body_site: str | None = None


@dataclass(frozen=True, slots=True)
class PriorStudy:
    """A prior imaging study of the patient (FHIR ImagingStudy), with its report when one is known."""

    study_uid: str | None
    started: date | None
    modalities: tuple[str, ...] = ()
    body_site: str | None = None
    description: str | None = None
    report_reference: str | None = None  # e.g. "DiagnosticReport/123"
    #: Measured findings the EHR holds for this study (e.g. a nodule's size from an imaging Observation).
    findings: tuple[MeasuredFinding, ...] = ()


@dataclass(frozen=True, slots=True)
class ClinicalContext:
    """What the EHR told us about the patient, and what it could not tell."""

    birth_date: date | None = None
    sex: str | None = None  # FHIR AdministrativeGender
    known_cancer: bool | None = None
    copd: bool | None = None
    immunosuppressed: bool | None = None
    smoking_status: SmokingStatus | None = None
    pack_years: float | None = None
    years_since_quit: float | None = None
    egfr_ml_min_173m2: float | None = None
    creatinine_mg_dl: float | None = None
    devices: tuple[ImplantedDevice, ...] = ()
    procedures: tuple[str, ...] = ()
    prior_studies: tuple[PriorStudy, ...] = ()
    #: Context sources that could not be read (e.g. "Condition (EHR timed out)").
    missing: tuple[str, ...] = field(default_factory=tuple)
    #: The EHR's Patient id the context was read for, when the patient was found by identifier (one match).
    ehr_patient_id: str | None = None

    def age_on(self, day: date) -> int | None:
        """Age in whole years on ``day``."""
        if self.birth_date is None:
            return None
        years = day.year - self.birth_date.year
        if (day.month, day.day) < (self.birth_date.month, self.birth_date.day):
            years -= 1
        return years

    def for_guidelines(self, *, study_date: date, screening: bool | None) -> PatientContext:
        """The subset the follow-up guidelines read (Fleischner risk from smoking history)."""
        return PatientContext(
            age_years=self.age_on(study_date),
            known_cancer=self.known_cancer,
            immunosuppressed=self.immunosuppressed,
            screening=screening,
            risk=fleischner_risk(
                smoking_status=self.smoking_status.value if self.smoking_status else None,
                pack_years=self.pack_years,
                other_risk_factor=True if self.copd else None,
            ),
        )


@dataclass(frozen=True, slots=True)
class PatientRef:
    """A patient as fusion knows it: radcds's Patient id (the reporting service's) and the identifier the EHR
    knows them by (DICOM Patient ID and its issuer, i.e. the MRN and its assigning authority)."""

    id: str
    identifier: str
    issuer: str = ""
