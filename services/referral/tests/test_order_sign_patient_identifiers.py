"""order-sign events carry the identifiers of the hook's Patient (from the prefetch) so that fusion can close the
patient's follow-up recommendation by MRN; order-select events, Patients without a system on their identifiers,
``old`` identifiers and a Patient that is not ``context.patientId`` carry none."""

from __future__ import annotations

from typing import Any

from radcds_devstack import scenarios
from radcds_referral.handlers import patient_identifiers

from . import test_cds_hooks_api
from .test_cds_hooks_api import _call, _events

env = test_cds_hooks_api.env  # the fixture of the CDS Hooks contract tests

MRN = {"system": "urn:oid:2.16.840.1.113883.3.999", "value": "MRN-1"}  # the hospital's MRN (an example OID)


def ct_chest_call(identifiers: list[dict[str, Any]]) -> dict[str, Any]:
    """order-sign of a CT chest without contrast for a solitary pulmonary nodule (a follow-up a guideline asked for)."""
    patient = scenarios.patient(66, patient_id="ehr-patient-1")
    patient["identifier"] = identifiers
    order = scenarios.imaging_order(
        "71250", "CT chest without contrast", ("R91.1", "Solitary pulmonary nodule"), order_id="draft-ct-chest"
    )
    return scenarios.order_sign([order], observations=[], patient_resource=patient)


def test_order_sign_event_carries_the_patients_identifiers_with_a_system(env):
    old = {"use": "old", "system": "urn:oid:2.16.840.1.113883.3.999", "value": "MRN-0"}
    response = _call(env, ct_chest_call([MRN, old, {"value": "no-system"}]))
    assert response.status_code == 200
    ((_, payload, _, subject),) = _events(env, 1)  # schema-checked by the recording publisher
    assert (subject, payload["hook"], payload["patientId"]) == ("draft-ct-chest", "order-sign", "ehr-patient-1")
    assert payload["orderCodes"] == [{"system": scenarios.CPT, "code": "71250"}]
    assert payload["patientIdentifiers"] == [MRN]


def test_order_select_event_carries_no_patient_identifiers(env):
    call = ct_chest_call([MRN])
    call["hook"] = "order-select"
    call["context"]["selections"] = ["ServiceRequest/draft-ct-chest"]
    assert _call(env, call, service="radcds-imaging-order-select").status_code == 200
    ((_, payload, _, _),) = _events(env, 1)
    assert payload["hook"] == "order-select" and "patientIdentifiers" not in payload


def test_patient_without_identifiers_gives_an_event_without_the_field(env):
    assert _call(env, ct_chest_call([])).status_code == 200
    ((_, payload, _, _),) = _events(env, 1)
    assert "patientIdentifiers" not in payload


def test_identifiers_of_a_patient_other_than_the_hooks_patient_are_never_taken():
    patient = {"resourceType": "Patient", "id": "someone-else", "identifier": [MRN]}
    assert patient_identifiers(patient, "ehr-patient-1") == []
    assert patient_identifiers({**patient, "id": "ehr-patient-1"}, "ehr-patient-1") == [MRN]
    assert patient_identifiers(None, "ehr-patient-1") == []
