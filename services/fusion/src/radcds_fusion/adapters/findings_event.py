"""inference's findings events (``imaging-findings-produced.v1``) as the measured findings fusion tracks."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from radcds.adapters.fhir.report import patient_id_for
from radcds.domain.findings import ImageAnalysis
from radcds_fusion.domain.assessment import FindingLabel
from radcds_fusion.domain.comparison import MeasuredFinding
from radcds_fusion.domain.context import PatientRef

#: Code of the rows that record a model declining a study (kept with the study's findings, not compared).
NOT_ANALYSED = "not-analysed"


@dataclass(frozen=True, slots=True)
class AnalysedSeries:
    """What one findings event says about a study."""

    patient: PatientRef
    study_uid: str
    study_date: date
    modality: str
    source: str  # series and model: the unit a redelivered or repeated event replaces
    findings: tuple[MeasuredFinding, ...]


def study_date_of(dicom_date: str, fallback: date) -> date:
    """A DICOM DA (YYYYMMDD) as a date; ``fallback`` when absent or malformed."""
    try:
        return date(int(dicom_date[0:4]), int(dicom_date[4:6]), int(dicom_date[6:8]))
    except (ValueError, IndexError):
        return fallback


def analysed_series(analysis: ImageAnalysis, labels: dict[str, FindingLabel], *, today: date) -> AnalysedSeries:
    """The tracked findings of one analysis: each tracked measurement, each tracked coded finding valued by its
    measurement, and a ``not-analysed`` row (model and reason) when the model declined the series."""
    ctx = analysis.context
    day = study_date_of(ctx.study_date, today)
    measured = {m.code.code: m for m in analysis.measurements}
    found = {c.code for c in analysis.findings}
    model = f"{analysis.model.name} {analysis.model.version}"
    rows: list[MeasuredFinding] = []
    if analysis.not_analysed_reason:
        rows.append(MeasuredFinding(NOT_ANALYSED, model, day, reference=analysis.not_analysed_reason))
    for code, label in labels.items():
        if code in measured:
            own = measured[code]
            rows.append(MeasuredFinding(code, label.body_region, day, value=own.value, unit=own.unit, reference=model))
        elif code in found:
            valued_by = measured.get(label.value_measurement) if label.value_measurement else None
            rows.append(
                MeasuredFinding(
                    code,
                    label.body_region,
                    day,
                    value=valued_by.value if valued_by else None,
                    unit=valued_by.unit if valued_by else None,
                    reference=model,
                )
            )
    return AnalysedSeries(
        patient=PatientRef(patient_id_for(ctx), ctx.patient_id, ctx.issuer_of_patient_id),
        study_uid=analysis.instance.study_instance_uid,
        study_date=day,
        modality=ctx.modality,
        source=f"{analysis.instance.series_instance_uid}:{analysis.model.name}",
        findings=tuple(rows),
    )
