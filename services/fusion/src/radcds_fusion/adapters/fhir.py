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
        "subject": {"reference": f"Patient/{rec.patient_id}"},
        "authoredOn": rec.created_on.isoformat(),
        "occurrencePeriod": {"start": rec.due_from.isoformat(), "end": rec.due_by.isoformat()},
        "reasonCode": [{"text": rec.reason}],
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
