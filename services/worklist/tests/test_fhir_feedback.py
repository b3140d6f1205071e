"""The feedback on an AI finding as a FHIR R4 Observation: it parses with fhir.resources.R4B, names the finding and
the model Device in ``focus``, the radiologist as performer, the action as its value and the reason as a component."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from fhir.resources.R4B.observation import Observation

from radcds.adapters.fhir.report import device_id, imaging_study_id, observations
from radcds.domain import codes
from radcds.domain.findings import ImageAnalysis, InstanceReference, Measurement, ModelIdentity, StudyContext
from radcds_worklist.adapters.fhir import (
    ACTION_CODE_SYSTEM,
    REASON_CODE_SYSTEM,
    REPORT_EXTENSION,
    ai_observation_id,
    feedback_observation,
)
from radcds_worklist.domain.access import Role, User
from radcds_worklist.domain.feedback import Action, AiFinding, FindingDecision, RejectionReason

STUDY = "1.2.826.0.1.3680043.8.498.10"
MODEL = ModelIdentity("chest_ctr", "1")
ADA = User("issuer|ada", "Dr Ada Lovelace", frozenset({Role.RADIOLOGIST}), "Practitioner/dr-ada")
WHEN = datetime(2026, 3, 1, 10, 0, tzinfo=UTC)


def _finding(**changes) -> AiFinding:
    fields = {"finding_id": "f-1", "study_uid": STUDY, "model": MODEL, "code": "8186001", "display": "Cardiomegaly"}
    return AiFinding(**(fields | changes))


def test_rejection_with_other_reason_is_a_valid_r4_observation_with_coded_reason_and_the_words():
    decision = FindingDecision(_finding(), Action.REJECTED, ADA, RejectionReason.OTHER, "pacemaker lead", "r-1")
    resource = feedback_observation(decision, feedback_id="fb-1", recorded_at=WHEN)

    parsed = Observation.model_validate(resource)
    assert parsed.status == "final"
    assert parsed.code.coding[0].code == "ai-finding-assessment"
    assert parsed.valueCodeableConcept.coding[0].system == ACTION_CODE_SYSTEM
    assert parsed.valueCodeableConcept.coding[0].code == "rejected"
    (component,) = parsed.component
    assert component.code.coding[0].code == "rejection-reason"
    assert component.valueCodeableConcept.coding[0].system == REASON_CODE_SYSTEM
    assert component.valueCodeableConcept.coding[0].code == "other"
    assert component.valueCodeableConcept.text == "pacemaker lead"
    assert parsed.performer[0].reference == "Practitioner/dr-ada"
    assert resource["effectiveDateTime"] == "2026-03-01T10:00:00+00:00"
    assert resource["derivedFrom"] == [{"reference": f"ImagingStudy/{imaging_study_id(STUDY)}"}]
    assert resource["extension"] == [{"url": REPORT_EXTENSION, "valueReference": {"reference": "DiagnosticReport/r-1"}}]


def test_finding_without_a_known_observation_is_named_by_identifier_and_the_model_by_reportings_device():
    decision = FindingDecision(_finding(), Action.ACCEPTED, ADA)
    resource = feedback_observation(decision, feedback_id="fb-2", recorded_at=WHEN)

    finding, device = resource["focus"]
    assert finding["type"] == "Observation"
    assert finding["identifier"]["value"] == "f-1|8186001"
    assert device["reference"] == f"Device/{device_id(MODEL)}"
    assert "component" not in resource and "extension" not in resource and "subject" not in resource
    assert "device" not in resource  # Observation.device is what made *this* observation: the radiologist did


def test_finding_with_reportings_observation_is_a_literal_reference_and_the_patient_the_subject():
    decision = FindingDecision(
        _finding(observation_id="obs-9", patient_ref="Patient/p-1"), Action.EDITED, ADA, report_id=None
    )
    resource = feedback_observation(decision, feedback_id="fb-3", recorded_at=WHEN)
    Observation.model_validate(resource)
    assert resource["focus"][0]["reference"] == "Observation/obs-9"
    assert resource["subject"] == {"reference": "Patient/p-1"}
    assert resource["valueCodeableConcept"]["coding"][0]["code"] == "edited"


def test_ai_observation_id_matches_the_ids_reporting_gives_measurement_and_finding_observations():
    instance = InstanceReference(STUDY, STUDY + ".1", STUDY + ".1.1", "1.2.840.10008.5.1.4.1.1.1")
    analysis = ImageAnalysis(
        instance,
        StudyContext(patient_id="MRN1", modality="CR"),
        MODEL,
        measurements=(Measurement(codes.CARDIOTHORACIC_RATIO, 0.56, codes.UNIT_RATIO),),
        findings=(codes.CARDIOMEGALY,),
    )
    ids = {o["id"] for o in observations(analysis, effective="2026-03-01T10:00:00+00:00")}
    sop = instance.sop_instance_uid
    assert ai_observation_id(sop, MODEL.name, "cardiothoracic-ratio", coded_finding=False) in ids
    assert ai_observation_id(sop, MODEL.name, "8186001", coded_finding=True) in ids


def test_a_feedback_id_that_is_no_fhir_id_fails_r4_validation():
    decision = FindingDecision(_finding(), Action.ACCEPTED, ADA)
    with pytest.raises(ValueError, match="id"):
        feedback_observation(decision, feedback_id="fb 4", recorded_at=WHEN)
