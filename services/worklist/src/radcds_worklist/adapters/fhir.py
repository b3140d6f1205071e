"""A radiologist's feedback on an AI finding as a FHIR R4 ``Observation``, checked with ``fhir.resources.R4B``.

Why an Observation. FHIR R4 Observation (§10.1, Diagnostics module) is "measurements and simple assertions made about
a patient, device or other subject"; its ``focus`` (Observation.focus, 0..* Reference(Any), trial use) names "the
actual focus of an observation when it is not the patient of record", which is exactly a judgement *about* another
resource: here the AI's Observation and the model Device that made it. The alternatives fit worse:

- ``DetectedIssue`` (R4, Clinical Decision Support) is a clinical issue with a proposed or active action (a drug
  interaction, a duplicate order) found by a system or a clinician; a radiologist overruling software is not a
  patient-care issue, and DetectedIssue has no place for "accepted".
- ``Basic`` (R4, Foundation) would hold it, but as a resource with no agreed elements: nothing would be searchable
  (performer, date, focus, value) without inventing extensions for all of it.

So: ``status`` ``final``; a local ``category`` ``ai-feedback`` (the observation-category value set is extensible
and none of its codes, survey included, means "assessment of an AI result"); ``code`` ``ai-finding-assessment`` in
the worklist's CodeSystem; ``focus`` the AI finding (reporting's Observation for it when known, a logical reference
by identifier otherwise) and the model's ``Device`` (the same deterministic Device id reporting writes);
``performer`` the radiologist's Practitioner; ``valueCodeableConcept`` the action (accepted | edited | rejected);
one ``component`` ``rejection-reason`` whose value is the coded reason, with the radiologist's words as the
CodeableConcept's ``text`` (R4 §2.24.0.4: "a human language representation of the concept as seen/selected/uttered
by the user"); ``derivedFrom`` the ImagingStudy; ``effectiveDateTime`` and ``issued`` the moment of the decision.
``Observation.device`` is *not* the model: R4 defines it as "the device used to generate the observation data", and
the data here is the radiologist's judgement. The DiagnosticReport the decision was made in goes in an extension
(``derivedFrom`` does not allow DiagnosticReport).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fhir.resources.R4B.observation import Observation

from radcds.adapters.fhir.report import device_reference, imaging_study_id, resource_id
from radcds_worklist.domain.feedback import Action, FindingDecision

#: The worklist's CodeSystem: the category and code of the feedback Observation, and its component's code.
WORKLIST_CODE_SYSTEM = "https://radcds.example.org/fhir/CodeSystem/worklist"
#: The action a radiologist took (accepted | edited | rejected).
ACTION_CODE_SYSTEM = "https://radcds.example.org/fhir/CodeSystem/ai-finding-action"
#: Why a finding was rejected (false-positive | wrong-location | wrong-measurement | artefact-or-device | other).
REASON_CODE_SYSTEM = "https://radcds.example.org/fhir/CodeSystem/ai-rejection-reason"
#: Identifier systems: of the feedback itself, and of an AI finding the worklist knows (value ``id`` or ``id|code``).
FEEDBACK_SYSTEM = "https://radcds.example.org/fhir/sid/worklist-feedback"
FINDING_SYSTEM = "https://radcds.example.org/fhir/sid/worklist-finding"
#: Extension: the DiagnosticReport the decision was made in.
REPORT_EXTENSION = "https://radcds.example.org/fhir/StructureDefinition/ai-feedback-report"

CATEGORY = {"system": WORKLIST_CODE_SYSTEM, "code": "ai-feedback", "display": "AI finding feedback"}
CODE = {
    "system": WORKLIST_CODE_SYSTEM,
    "code": "ai-finding-assessment",
    "display": "Radiologist's assessment of an AI finding",
}
REASON_COMPONENT = {"system": WORKLIST_CODE_SYSTEM, "code": "rejection-reason", "display": "Reason for rejection"}
_ACTION_DISPLAY = {Action.ACCEPTED: "Accepted", Action.EDITED: "Edited, then signed", Action.REJECTED: "Rejected"}


def ai_observation_id(sop_instance_uid: str, model_name: str, code: str, *, coded_finding: bool) -> str:
    """The id reporting gives the Observation of one measurement or coded finding of an analysis (the key format
    of :func:`radcds.adapters.fhir.report.observations`)."""
    if coded_finding:
        return str(resource_id("Observation", sop_instance_uid, model_name, "finding", code))
    return str(resource_id("Observation", sop_instance_uid, model_name, code))


def _finding_reference(decision: FindingDecision) -> dict[str, Any]:
    finding = decision.finding
    ref: dict[str, Any]
    if finding.observation_id:
        ref = {"reference": f"Observation/{finding.observation_id}"}
    else:
        value = f"{finding.finding_id}|{finding.code}" if finding.code else finding.finding_id
        ref = {"type": "Observation", "identifier": {"system": FINDING_SYSTEM, "value": value}}
    label = finding.display or finding.code or f"analysis by {finding.model.name}"
    ref["display"] = f"AI finding: {label}"
    return ref


def feedback_observation(decision: FindingDecision, *, feedback_id: str, recorded_at: datetime) -> dict[str, Any]:
    """The FHIR R4 Observation recording ``decision`` (validated; raises ``pydantic.ValidationError`` if not)."""
    finding, user = decision.finding, decision.user
    when = recorded_at.isoformat()
    resource: dict[str, Any] = {
        "resourceType": "Observation",
        "id": feedback_id,
        "identifier": [{"system": FEEDBACK_SYSTEM, "value": feedback_id}],
        "status": "final",
        "category": [{"coding": [CATEGORY]}],
        "code": {"coding": [CODE], "text": "Assessment of an AI finding"},
        "focus": [_finding_reference(decision), device_reference(finding.model)],
        "effectiveDateTime": when,
        "issued": when,
        "performer": [{"reference": user.practitioner, "display": user.name}],
        "valueCodeableConcept": {
            "coding": [
                {
                    "system": ACTION_CODE_SYSTEM,
                    "code": decision.action.value,
                    "display": _ACTION_DISPLAY[decision.action],
                }
            ]
        },
        "derivedFrom": [{"reference": f"ImagingStudy/{imaging_study_id(finding.study_uid)}"}],
    }
    if finding.patient_ref:
        resource["subject"] = {"reference": finding.patient_ref}
    if decision.reason is not None:
        coding = {"system": REASON_CODE_SYSTEM, "code": decision.reason.value, "display": decision.reason.display}
        reason: dict[str, Any] = {"coding": [coding]}
        if decision.reason_text:
            reason["text"] = decision.reason_text
        resource["component"] = [{"code": {"coding": [REASON_COMPONENT]}, "valueCodeableConcept": reason}]
    if decision.report_id:
        resource["extension"] = [
            {"url": REPORT_EXTENSION, "valueReference": {"reference": f"DiagnosticReport/{decision.report_id}"}}
        ]
    Observation.model_validate(resource)
    return resource
