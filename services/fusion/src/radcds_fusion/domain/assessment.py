"""One study's findings in the patient's context: comparison with priors, guideline follow-up, critical results,
confidence and the text of the report's "Comparison with priors", "Recommendations" and "Missing context"
sections. Pure: the caller hands in the study, the priors, the context and the knowledge."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import date, datetime

from radcds_fusion.domain.comparison import Change, Comparison, MeasuredFinding, match_and_compare
from radcds_fusion.domain.confidence import Confidence, assess_confidence
from radcds_fusion.domain.context import ClinicalContext
from radcds_fusion.domain.critical import CriticalPolicy, CriticalResult, critical_results
from radcds_fusion.domain.guidelines import Guideline, GuidelineAssessment, NoduleInput, assess
from radcds_fusion.domain.recommendations import RecommendationChanged, RequestedProcedure, recommend

#: CPT codes of chest CT orders that fulfil a chest CT follow-up (with/without contrast, low-dose screening).
CHEST_CT_CODES = frozenset({"71250", "71260", "71270", "71271"})
#: Follow-up procedures named in the guideline files, as the orders that fulfil them.
PROCEDURES: Mapping[str, RequestedProcedure] = {
    name: RequestedProcedure("CT", "chest", name, CHEST_CT_CODES)
    for name in ("CT chest", "low-dose CT chest", "diagnostic CT chest")
}


@dataclass(frozen=True, slots=True)
class FindingLabel:
    """A finding fusion tracks over time (``knowledge/findings.json``): how it reads in the report, how its value
    is written, its body region, and the tolerance within which it is "stable" (absolute, or relative to the
    prior value)."""

    label: str
    places: int = 2
    unit: str = ""
    body_region: str = ""
    tolerance: float | None = None
    relative_tolerance: float | None = None
    #: For a coded finding: the measurement code that gives its value (e.g. the hyperdense region's area).
    value_measurement: str | None = None


@dataclass(frozen=True, slots=True)
class StudyFindings:
    """The measured findings of one study (from inference's findings events and measurement SRs)."""

    patient_id: str
    study_uid: str
    study_date: date
    modality: str
    body_region: str
    findings: tuple[MeasuredFinding, ...]
    #: (model name, reason) for each model that declined the study (outside its validated envelope).
    not_analysed: tuple[tuple[str, str], ...] = ()
    screening: bool | None = None


@dataclass(frozen=True, slots=True)
class StudyAssessment:
    """What fusion concluded about one study."""

    study_uid: str
    patient_id: str
    comparisons: tuple[Comparison, ...]
    guidelines: tuple[GuidelineAssessment, ...]
    recommendations: tuple[RecommendationChanged, ...]
    critical: tuple[CriticalResult, ...]
    confidence: tuple[tuple[str, Confidence], ...]
    context_used: tuple[str, ...]
    missing: tuple[str, ...]
    comparison_lines: tuple[str, ...]
    recommendation_lines: tuple[str, ...]
    #: How the report names each finding code (knowledge/findings.json), e.g. "CTR", "Pulmonary nodule".
    finding_labels: tuple[tuple[str, str], ...] = ()


def priors_with_ehr(
    own: Sequence[MeasuredFinding],
    context: ClinicalContext,
    *,
    study_uid: str,
    nodule_codes: frozenset[str],
    nodule_code: str,
) -> list[MeasuredFinding]:
    """radcds's own prior findings with the measured findings of the EHR's prior studies (issue #11: "prior
    ImagingStudy, DiagnosticReport and Observations for the same body region").

    The EHR's nodule codes (``nodule_codes``, e.g. SNOMED CT 786838002 "Pulmonary nodule") are tracked as
    ``nodule_code``, as an SR's are. radcds's own measurement wins where both hold the same finding on the same
    day (the EHR may hold the report radcds sent), and the current study is never its own prior.
    """
    out = list(own)
    seen = {(f.code, f.study_date) for f in own}
    for prior in context.prior_studies:
        if prior.study_uid is not None and prior.study_uid == study_uid:
            continue
        for finding in prior.findings:
            code = nodule_code if finding.nodule is not None and finding.code in nodule_codes else finding.code
            if (code, finding.study_date) in seen:
                continue
            out.append(finding if code == finding.code else replace(finding, code=code))
    return out


def assess_study(
    *,
    study: StudyFindings,
    priors: Sequence[MeasuredFinding],
    context: ClinicalContext,
    guidelines: Mapping[str, Guideline],
    policy: CriticalPolicy,
    labels: Mapping[str, FindingLabel],
    new_id: Callable[[str], str],
    at: datetime,
) -> StudyAssessment:
    """Assess ``study`` against ``priors`` in ``context`` (see the module docstring). ``new_id(guideline_id)``
    names the recommendation a guideline makes for this study (deterministic, so a re-assessment updates it)."""
    earlier = [p for p in priors if p.study_date < study.study_date]
    comparisons = tuple(
        match_and_compare(
            study.findings,
            earlier,
            tolerances={c: f.tolerance for c, f in labels.items() if f.tolerance is not None},
            relative_tolerances={
                c: f.relative_tolerance for c, f in labels.items() if f.relative_tolerance is not None
            },
        )
    )
    missing: list[str] = list(context.missing)
    results: list[GuidelineAssessment] = []
    recommendations: list[RecommendationChanged] = []
    nodules = [c for c in comparisons if c.current is not None and c.current.nodule is not None]
    if nodules and study.modality == "CT" and study.body_region == "chest":
        guideline_context = context.for_guidelines(study_date=study.study_date, screening=study.screening)
        inputs = [NoduleInput(c.current.nodule, c.nodule_status) for c in nodules if c.current and c.current.nodule]
        for guideline in guidelines.values():
            result = assess(guideline, nodules=inputs, context=guideline_context)
            results.append(result)
            missing.extend(result.missing)
            follow_up = result.outcome.follow_up if result.outcome else None
            if follow_up is None:
                continue
            made = recommend(
                id=new_id(guideline.id),
                patient_id=study.patient_id,
                assessment=result,
                procedure=PROCEDURES.get(follow_up.procedure, RequestedProcedure("CT", "chest", follow_up.procedure)),
                study_date=study.study_date,
                at=at,
                study_uid=study.study_uid,
                finding_code=nodules[0].current.code if nodules[0].current else None,
            )
            if made is not None:
                recommendations.append(made)
    envelope = [f"{model}: {reason}" for model, reason in study.not_analysed]
    confidence = tuple(
        (
            f.code,
            assess_confidence(
                body_region=study.body_region,
                measurement=labels[f.code].label if f.code in labels else None,
                devices=context.devices,
                envelope_reasons=envelope,
                missing_context=context.missing,
            ),
        )
        for f in study.findings
    )
    has_priors = bool(earlier)
    return StudyAssessment(
        study_uid=study.study_uid,
        patient_id=study.patient_id,
        comparisons=comparisons,
        guidelines=tuple(results),
        recommendations=tuple(recommendations),
        critical=tuple(critical_results(policy, comparisons)),
        confidence=confidence,
        context_used=_context_used(context, study.study_date),
        missing=tuple(dict.fromkeys(missing)),
        comparison_lines=tuple(comparison_line(c, labels, has_priors=has_priors) for c in comparisons),
        finding_labels=tuple(dict.fromkeys((f.code, labels[f.code].label) for f in study.findings if f.code in labels)),
        recommendation_lines=tuple(_recommendation_lines(results, recommendations)),
    )


def comparison_line(c: Comparison, labels: Mapping[str, FindingLabel], *, has_priors: bool) -> str:
    """One line of the report's "Comparison with priors" section, e.g.
    "CTR 0.47, previously 0.44 on 2026-01-15: stable"."""
    finding = c.current or c.prior
    assert finding is not None
    label = labels.get(finding.code, FindingLabel(finding.code))
    if finding.nodule is not None:
        name = f"{finding.nodule.composition.value.capitalize()} nodule"
        name += f", {finding.nodule.location}" if finding.nodule.location else ""
    else:
        name = label.label
    if c.change is Change.NEW:
        now = _value(c.current, label)
        if not has_priors:
            return f"{name} {now}: no prior study to compare with."
        return f"{name} {now}: new (not on the prior study)."
    prior = c.prior
    assert prior is not None  # every other change has a prior
    if c.change is Change.RESOLVED:
        return f"{name}, previously {_value(prior, label)} on {prior.study_date.isoformat()}: not seen now."
    text = f"{name} {_value(c.current, label)}, previously {_value(prior, label)} on {prior.study_date.isoformat()}"
    if c.change is Change.STABLE:
        return f"{text}: stable."
    size = f"{abs(c.delta):.{_places(finding, label)}f}{_unit(finding, label)}" if c.delta is not None else ""
    text += f": {c.change.value} by {size} in {c.interval_days} days"
    if c.volume_doubling_time_days is not None and c.volume_doubling_time_days > 0:
        text += f"; volume doubling time {round(c.volume_doubling_time_days)} days"
    return text + "."


def _places(finding: MeasuredFinding, label: FindingLabel) -> int:
    return 1 if finding.nodule is not None else label.places


def _unit(finding: MeasuredFinding, label: FindingLabel) -> str:
    return " mm" if finding.nodule is not None else (f" {label.unit}" if label.unit else "")


def _value(finding: MeasuredFinding | None, label: FindingLabel) -> str:
    if finding is None:
        return ""
    if finding.nodule is not None:
        d = finding.nodule.mean_diameter_mm
        return f"{d:.1f} mm" if d is not None else f"{finding.nodule.volume_mm3:g} mm³"
    if finding.value is None:
        return ""
    return f"{finding.value:.{label.places}f}{_unit(finding, label)}"


def _recommendation_lines(
    results: Sequence[GuidelineAssessment], recommendations: Sequence[RecommendationChanged]
) -> list[str]:
    lines = []
    by_guideline = {r.recommendation.guideline_id: r.recommendation for r in recommendations}
    for result in results:
        if not result.applies:
            lines.append(f"{result.guideline_id} {result.guideline_version}: {result.not_applicable_reason}.")
            continue
        outcome = result.outcome
        if outcome is None:
            continue
        category = f"category {result.category}: " if result.category else ""
        line = f"{result.guideline_id} {result.guideline_version}: {category}{outcome.recommendation}"
        rec = by_guideline.get(result.guideline_id)
        if rec is not None:
            line += f" Due by {rec.due_by.isoformat()}."
        if result.assumptions:
            line += " (" + "; ".join(result.assumptions) + ")"
        lines.append(line)
    return lines


def _context_used(context: ClinicalContext, on: date) -> tuple[str, ...]:
    used = []
    age = context.age_on(on)
    if age is not None:
        used.append(f"age {age}")
    if context.sex:
        used.append(f"sex {context.sex}")
    if context.smoking_status is not None:
        smoking = f"smoking: {context.smoking_status.value}"
        if context.pack_years is not None:
            smoking += f", {context.pack_years:g} pack-years"
        used.append(smoking)
    for flag, text in (("copd", "COPD"), ("known_cancer", "known cancer"), ("immunosuppressed", "immunosuppressed")):
        value = getattr(context, flag)
        if value is not None:
            used.append(text if value else f"no {text}")
    used.extend(f"device: {d.display}" for d in context.devices)
    if context.egfr_ml_min_173m2 is not None:
        used.append(f"eGFR {context.egfr_ml_min_173m2:g} mL/min/1.73m2")
    if context.prior_studies:
        used.append(f"{len(context.prior_studies)} prior studies in the EHR")
    return tuple(used)
