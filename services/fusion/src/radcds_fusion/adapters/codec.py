"""fusion's domain objects to and from JSON: the rows of its tables and the payloads of its events
(schemas ``fusion-assessment-produced.v1`` and ``fusion-recommendation-changed.v1``)."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from radcds_fusion.domain.assessment import StudyAssessment
from radcds_fusion.domain.comparison import MeasuredFinding
from radcds_fusion.domain.nodules import Composition, Feature, Nodule
from radcds_fusion.domain.recommendations import (
    Recommendation,
    RecommendationChanged,
    RecommendationState,
    RequestedProcedure,
)


def finding_to_json(f: MeasuredFinding) -> dict[str, Any]:
    """A measured finding as a row's JSON."""
    out: dict[str, Any] = {"code": f.code, "bodySite": f.body_site, "studyDate": f.study_date.isoformat()}
    if f.value is not None:
        out["value"] = f.value
    if f.unit:
        out["unit"] = f.unit
    if f.position_mm is not None:
        out["positionMm"] = list(f.position_mm)
    if f.reference:
        out["reference"] = f.reference
    if f.nodule is not None:
        n = f.nodule
        out["nodule"] = {
            "composition": n.composition.value,
            "longAxisMm": n.long_axis_mm,
            "shortAxisMm": n.short_axis_mm,
            "volumeMm3": n.volume_mm3,
            "solidComponentMm": n.solid_component_mm,
            "location": n.location,
            "features": sorted(x.value for x in n.features),
        }
    return out


def finding_from_json(data: dict[str, Any]) -> MeasuredFinding:
    """The inverse of :func:`finding_to_json`."""
    nodule = None
    if "nodule" in data:
        n = data["nodule"]
        nodule = Nodule(
            Composition(n["composition"]),
            long_axis_mm=n.get("longAxisMm"),
            short_axis_mm=n.get("shortAxisMm"),
            volume_mm3=n.get("volumeMm3"),
            solid_component_mm=n.get("solidComponentMm"),
            location=n.get("location"),
            features=frozenset(Feature(x) for x in n.get("features", [])),
        )
    position = data.get("positionMm")
    return MeasuredFinding(
        code=data["code"],
        body_site=data.get("bodySite"),
        study_date=date.fromisoformat(data["studyDate"]),
        value=data.get("value"),
        unit=data.get("unit"),
        position_mm=(float(position[0]), float(position[1]), float(position[2])) if position else None,
        nodule=nodule,
        reference=data.get("reference"),
    )


def recommendation_to_json(r: Recommendation) -> dict[str, Any]:
    """A recommendation as a row's JSON."""
    return {
        "id": r.id,
        "patientId": r.patient_id,
        "procedure": {
            "modality": r.procedure.modality,
            "bodyRegion": r.procedure.body_region,
            "display": r.procedure.display,
            "codes": sorted(r.procedure.codes),
        },
        "createdOn": r.created_on.isoformat(),
        "dueFrom": r.due_from.isoformat(),
        "dueBy": r.due_by.isoformat(),
        "reason": r.reason,
        "guidelineId": r.guideline_id,
        "guidelineVersion": r.guideline_version,
        "citation": r.citation,
        "state": r.state.value,
        "optional": r.optional,
        "studyUid": r.study_uid,
        "findingCode": r.finding_code,
        "patientIdentifier": r.patient_identifier,
        "ehrPatientId": r.ehr_patient_id,
        "closedBy": r.closed_by,
        "cancelReason": r.cancel_reason,
        "changedAt": r.changed_at.isoformat() if r.changed_at else None,
        "changedBy": r.changed_by,
    }


def recommendation_from_json(d: dict[str, Any]) -> Recommendation:
    """The inverse of :func:`recommendation_to_json`."""
    p = d["procedure"]
    return Recommendation(
        id=d["id"],
        patient_id=d["patientId"],
        procedure=RequestedProcedure(p["modality"], p["bodyRegion"], p["display"], frozenset(p["codes"])),
        created_on=date.fromisoformat(d["createdOn"]),
        due_from=date.fromisoformat(d["dueFrom"]),
        due_by=date.fromisoformat(d["dueBy"]),
        reason=d["reason"],
        guideline_id=d["guidelineId"],
        guideline_version=d["guidelineVersion"],
        citation=d["citation"],
        state=RecommendationState(d["state"]),
        optional=d["optional"],
        study_uid=d.get("studyUid"),
        finding_code=d.get("findingCode"),
        patient_identifier=d.get("patientIdentifier"),
        ehr_patient_id=d.get("ehrPatientId"),
        closed_by=d.get("closedBy"),
        cancel_reason=d.get("cancelReason"),
        changed_at=datetime.fromisoformat(d["changedAt"]) if d.get("changedAt") else None,
        changed_by=d.get("changedBy"),
    )


def assessment_payload(a: StudyAssessment, *, version: int, at: datetime) -> dict[str, Any]:
    """The ``fusion-assessment-produced.v1`` payload of ``a``."""
    comparisons = []
    for c, text in zip(a.comparisons, a.comparison_lines, strict=True):
        finding = c.current or c.prior
        assert finding is not None  # a comparison has a current finding, a prior, or both
        item: dict[str, Any] = {"code": finding.code, "change": c.change.value, "text": text}
        if c.current is not None and c.current.value is not None:
            item["value"] = c.current.value
        if c.prior is not None:
            item["priorStudyDate"] = c.prior.study_date.isoformat()
            if c.prior.value is not None:
                item["priorValue"] = c.prior.value
        if c.delta is not None:
            item["delta"] = round(c.delta, 6)
        if c.interval_days is not None:
            item["intervalDays"] = c.interval_days
        if c.volume_doubling_time_days is not None:
            item["volumeDoublingTimeDays"] = round(c.volume_doubling_time_days, 1)
        comparisons.append(item)
    guidelines = []
    for g in a.guidelines:
        entry: dict[str, Any] = {
            "id": g.guideline_id,
            "version": g.guideline_version,
            "citation": g.citation,
            "applies": g.applies,
        }
        if g.not_applicable_reason:
            entry["notApplicableReason"] = g.not_applicable_reason
        if g.category:
            entry["category"] = g.category
        if g.outcome is not None:
            entry["recommendation"] = g.outcome.recommendation
        if g.assumptions:
            entry["assumptions"] = list(g.assumptions)
        guidelines.append(entry)
    payload: dict[str, Any] = {
        "studyInstanceUid": a.study_uid,
        "patientId": a.patient_id,
        "version": version,
        "assessedAt": at.isoformat(),
        "comparisons": comparisons,
        "guidelines": guidelines,
        "recommendations": [
            {
                "id": r.recommendation.id,
                "state": r.recommendation.state.value,
                "procedure": r.recommendation.procedure.display,
                "dueFrom": r.recommendation.due_from.isoformat(),
                "dueBy": r.recommendation.due_by.isoformat(),
                "reason": r.recommendation.reason,
                "guidelineId": r.recommendation.guideline_id,
                "guidelineVersion": r.recommendation.guideline_version,
                "optional": r.recommendation.optional,
            }
            for r in a.recommendations
        ],
        "critical": bool(a.critical),
        "confidence": [
            {"code": code, "level": c.level.value, "reasons": list(c.reasons)}
            | ({"label": label} if (label := dict(a.finding_labels).get(code)) else {})
            for code, c in a.confidence
        ],
        "contextUsed": list(a.context_used),
        "missingContext": list(a.missing),
        "sections": {
            "comparison": list(a.comparison_lines),
            "recommendations": list(a.recommendation_lines),
            "missingContext": list(a.missing),
        },
    }
    if a.critical:
        payload["criticalReasons"] = [c.reason for c in a.critical]
    return payload


def recommendation_payload(changed: RecommendationChanged, service_request: dict[str, Any]) -> dict[str, Any]:
    """The ``fusion-recommendation-changed.v1`` payload of ``changed``."""
    r = changed.recommendation
    payload: dict[str, Any] = {
        "recommendationId": r.id,
        "patientId": r.patient_id,
        "state": r.state.value,
        "dueFrom": r.due_from.isoformat(),
        "dueBy": r.due_by.isoformat(),
        "procedure": r.procedure.display,
        "reason": r.reason,
        "guidelineId": r.guideline_id,
        "changedAt": (r.changed_at or datetime.now().astimezone()).isoformat(),
        "serviceRequest": service_request,
    }
    if changed.previous_state is not None:
        payload["previousState"] = changed.previous_state.value
    if r.study_uid:
        payload["studyInstanceUid"] = r.study_uid
    if r.closed_by:
        payload["closedBy"] = r.closed_by
    if r.cancel_reason:
        payload["cancelReason"] = r.cancel_reason
    return payload
