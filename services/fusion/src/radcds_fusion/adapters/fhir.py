"""Recommendations as FHIR R4 ServiceRequests (intent ``proposal``; R4 ServiceRequest, section 12.9), checked with
``fhir.resources.R4B``.

State mapping (R4 RequestStatus): proposed and overdue → ``active`` (overdue also carries the meta tag
``overdue`` of the radcds recommendation-state code system), closed → ``completed``, cancelled → ``revoked``.
"""

from __future__ import annotations

from html import escape
from typing import Any

from fhir.resources.R4B.servicerequest import ServiceRequest

from radcds_fusion.domain.recommendations import Recommendation, RecommendationState

RECOMMENDATION_STATE_SYSTEM = "https://radcds.example.org/fhir/CodeSystem/recommendation-state"
CPT = "http://www.ama-assn.org/go/cpt"
SNOMED_CT = "http://snomed.info/sct"
_STATUS = {
    RecommendationState.PROPOSED: "active",
    RecommendationState.OVERDUE: "active",
    RecommendationState.CLOSED: "completed",
    RecommendationState.CANCELLED: "revoked",
}


#: Display of the finding codes a recommendation can follow (SNOMED CT).
FINDING_DISPLAYS = {"427359005": "Solitary nodule of lung", "1386000": "Intracranial hemorrhage"}


def _reason(rec: Recommendation) -> dict[str, Any]:
    concept: dict[str, Any] = {"text": rec.reason}
    if rec.finding_code:
        concept["coding"] = [
            {"system": SNOMED_CT, "code": rec.finding_code, "display": FINDING_DISPLAYS.get(rec.finding_code, "")}
        ]
        if not concept["coding"][0]["display"]:
            del concept["coding"][0]["display"]
    return concept


def _subject(rec: Recommendation) -> dict[str, Any]:
    subject: dict[str, Any] = {"reference": f"Patient/{rec.patient_id}"}
    if rec.patient_identifier:
        subject["identifier"] = {"value": rec.patient_identifier}
    return subject


def service_request(rec: Recommendation, *, version: int) -> dict[str, Any]:
    """The FHIR R4 ServiceRequest of ``rec`` (validated; raises ``pydantic.ValidationError`` if not valid)."""
    proc = rec.procedure
    note = [{"text": f"Guideline: {rec.guideline_id} {rec.guideline_version}. {rec.citation}"}]
    if rec.cancel_reason:
        note.append({"text": f"Cancelled: {rec.cancel_reason}"})
    resource: dict[str, Any] = {
        "resourceType": "ServiceRequest",
        "id": rec.id,
        "meta": {
            "versionId": str(version),
            "tag": [{"system": RECOMMENDATION_STATE_SYSTEM, "code": rec.state.value}],
        },
        "text": {
            "status": "generated",
            "div": (
                '<div xmlns="http://www.w3.org/1999/xhtml"><p>Follow-up recommendation: '
                f"{escape(proc.display)} between {rec.due_from.isoformat()} and {rec.due_by.isoformat()} "
                f"({escape(rec.state.value)}).</p><p>{escape(rec.reason)}</p></div>"
            ),
        },
        "status": _STATUS[rec.state],
        "intent": "proposal",
        "category": [{"coding": [{"system": SNOMED_CT, "code": "363679005", "display": "Imaging"}]}],
        "code": {
            "coding": [{"system": CPT, "code": c} for c in sorted(proc.codes)],
            "text": proc.display,
        },
        "subject": _subject(rec),
        "authoredOn": rec.created_on.isoformat(),
        "occurrencePeriod": {"start": rec.due_from.isoformat(), "end": rec.due_by.isoformat()},
        "reasonCode": [_reason(rec)],
        "note": note,
    }
    if rec.optional:
        resource["priority"] = "routine"
        resource["note"].append({"text": "Optional follow-up."})
    if rec.study_uid:
        resource["supportingInfo"] = [
            {"type": "ImagingStudy", "identifier": {"system": "urn:dicom:uid", "value": f"urn:oid:{rec.study_uid}"}}
        ]
    ServiceRequest.model_validate(resource)
    return resource
