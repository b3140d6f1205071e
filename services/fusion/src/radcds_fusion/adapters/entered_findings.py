"""Structured findings a radiologist sent with the report (reporting's ``findings.entered`` event,
``report-findings-entered.v1``) as the measured nodules fusion tracks, like the nodules of a TID 1500 SR."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from radcds.domain import codes
from radcds.domain.events import StructuredFindingsEntered
from radcds_fusion.domain.comparison import MeasuredFinding
from radcds_fusion.domain.context import PatientRef
from radcds_fusion.domain.nodules import Composition, Nodule

#: Every nodule finding code is tracked as one (knowledge/findings.json): SNOMED CT 427359005.
TRACKED_NODULE = codes.NODULE_FINDINGS[0].code
#: Lobes by SNOMED CT code, with the code meanings a TID 1500 Finding Site carries (so a radiologist's nodule and an
#: SR's nodule of the same lobe are the same site when compared with priors).
_SITE_MEANINGS = {c.code: c.display for c in codes.LUNG_SITES}


class ImpossibleFinding(ValueError):
    """A radiologist-entered nodule whose measurements are impossible (the consumer dead-letters the event)."""


@dataclass(frozen=True, slots=True)
class EnteredFindings:
    """What one ``findings.entered`` event says about a study."""

    patient: PatientRef
    study_uid: str
    study_date: date
    modality: str
    #: The report: the unit a later version of the same report replaces.
    source: str
    findings: tuple[MeasuredFinding, ...]


def entered_findings(event: StructuredFindingsEntered, *, today: date) -> EnteredFindings:
    """The radiologist's nodules of one report version as fusion's measured findings (source ``radiologist``).

    Raises:
        ImpossibleFinding: a short axis above the long axis, a solid part on a nodule that is not part-solid, a size
            that is not positive.
    """
    study_date = date.fromisoformat(event.study_date) if event.study_date else today
    findings = []
    for f in event.findings:
        site = _SITE_MEANINGS.get(f.body_site.code, f.body_site.display or f.body_site.code)
        try:
            nodule = Nodule(
                Composition(f.composition),
                long_axis_mm=f.long_axis_mm,
                short_axis_mm=f.short_axis_mm,
                solid_component_mm=f.solid_part_mm,
                location=site,
            )
        except ValueError as exc:
            raise ImpossibleFinding(f"radiologist-entered nodule {f.observation_id}: {exc}") from exc
        findings.append(
            MeasuredFinding(
                code=TRACKED_NODULE,
                body_site=site,
                study_date=study_date,
                nodule=nodule,
                reference=f"Observation/{f.observation_id}",
            )
        )
    identifier = event.patient_identifier[1] if event.patient_identifier else ""
    return EnteredFindings(
        patient=PatientRef(event.patient_id, identifier),
        study_uid=event.study_instance_uid,
        study_date=study_date,
        modality="CT" if "CT" in event.modalities else next(iter(event.modalities), ""),
        source=f"radiologist:{event.diagnostic_report_id}",
        findings=tuple(findings),
    )
