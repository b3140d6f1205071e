"""Synthetic CDS Hooks calls (hand-written, no patient data) for the demo, the tests and the benchmark.

Each scenario is an order-sign (or patient-view) request an EHR could send, with a full prefetch.
Decision-rule findings travel as Observations in the radcds finding code system with
``valueBoolean`` (see docs/referral.md, section Rules).
"""

from __future__ import annotations

import uuid
from datetime import date, timedelta
from typing import Any

from radcds_referral.adapters.clinical_context import RADCDS_CONTEXT, RADCDS_FINDING

CPT = "http://www.ama-assn.org/go/cpt"
ICD10CM = "http://hl7.org/fhir/sid/icd-10-cm"
LOINC = "http://loinc.org"
SNOMED = "http://snomed.info/sct"
#: Canadian CT Head Rule factors and exclusions (rule file canadian-ct-head.json).
CCHR_FLAGS = (
    "suspected-open-or-depressed-skull-fracture",
    "basal-skull-fracture-signs",
    "vomiting-2-or-more",
    "amnesia-before-impact-30-min-or-more",
    "dangerous-mechanism",
    "anticoagulation-or-coagulopathy",
    "seizure-after-injury",
    "focal-neurological-deficit",
)


def _bundle(resources: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "resourceType": "Bundle",
        "type": "searchset",
        "total": len(resources),
        "entry": [{"resource": r} for r in resources],
    }


def patient(
    age_years: int, *, patient_id: str = "example-patient", gender: str = "male", today: date | None = None
) -> dict[str, Any]:
    """A Patient of the given age."""
    today = today or date.today()
    birth = today.replace(year=today.year - age_years) - timedelta(days=10)
    return {"resourceType": "Patient", "id": patient_id, "gender": gender, "birthDate": birth.isoformat()}


def finding(flag: str, present: bool, *, today: date | None = None) -> dict[str, Any]:
    """A decision-rule finding documented today."""
    return {
        "resourceType": "Observation",
        "id": f"finding-{flag}",
        "status": "final",
        "code": {"coding": [{"system": RADCDS_FINDING, "code": flag}]},
        "effectiveDateTime": (today or date.today()).isoformat(),
        "valueBoolean": present,
    }


def gcs(score: int, *, today: date | None = None) -> dict[str, Any]:
    """Glasgow Coma Scale total (LOINC 9269-2)."""
    return {
        "resourceType": "Observation",
        "id": "gcs",
        "status": "final",
        "code": {"coding": [{"system": LOINC, "code": "9269-2", "display": "Glasgow coma score total"}]},
        "effectiveDateTime": (today or date.today()).isoformat(),
        "valueQuantity": {"value": score, "unit": "{score}", "system": "http://unitsofmeasure.org", "code": "{score}"},
    }


def imaging_order(
    cpt: str,
    display: str,
    reason: tuple[str, str] | None,
    *,
    order_id: str = "draft-ct-head",
    patient_id: str = "example-patient",
) -> dict[str, Any]:
    """A draft imaging ServiceRequest with a CPT code and an ICD-10-CM reason."""
    order: dict[str, Any] = {
        "resourceType": "ServiceRequest",
        "id": order_id,
        "status": "draft",
        "intent": "order",
        "code": {"coding": [{"system": CPT, "code": cpt, "display": display}], "text": display},
        "subject": {"reference": f"Patient/{patient_id}"},
    }
    if reason is not None:
        order["reasonCode"] = [{"coding": [{"system": ICD10CM, "code": reason[0], "display": reason[1]}]}]
    return order


def order_sign(
    orders: list[dict[str, Any]],
    *,
    observations: list[dict[str, Any]],
    patient_resource: dict[str, Any],
    conditions: list[dict[str, Any]] | None = None,
    allergies: list[dict[str, Any]] | None = None,
    hook_instance: str | None = None,
) -> dict[str, Any]:
    """An order-sign call with every prefetch key filled."""
    pid = patient_resource["id"]
    return {
        "hook": "order-sign",
        "hookInstance": hook_instance or str(uuid.uuid4()),
        "context": {
            "userId": "Practitioner/example",
            "patientId": pid,
            "encounterId": "example-encounter",
            "draftOrders": {"resourceType": "Bundle", "type": "collection", "entry": [{"resource": o} for o in orders]},
        },
        "prefetch": {
            "patient": patient_resource,
            "conditions": _bundle(conditions or []),
            "observations": _bundle(observations),
            "allergies": _bundle(allergies or []),
        },
    }


def low_risk_minor_head_injury(*, hook_instance: str | None = None) -> dict[str, Any]:
    """40-year-old, GCS 15 after a concussion, every Canadian CT Head Rule factor documented absent,
    CT head without contrast ordered: the rule says CT is not needed."""
    return order_sign(
        [imaging_order("70450", "CT head without contrast", ("S06.0X0A", "Concussion without loss of consciousness"))],
        observations=[gcs(15), *(finding(f, False) for f in CCHR_FLAGS)],
        patient_resource=patient(40),
        hook_instance=hook_instance,
    )


def older_adult_head_injury(*, hook_instance: str | None = None) -> dict[str, Any]:
    """70-year-old with a concussion: age 65 or older is a Canadian CT Head Rule high-risk factor."""
    return order_sign(
        [imaging_order("70450", "CT head without contrast", ("S06.0X0A", "Concussion without loss of consciousness"))],
        observations=[gcs(15)],
        patient_resource=patient(70),
        hook_instance=hook_instance,
    )


def head_ct_without_indication(*, hook_instance: str | None = None) -> dict[str, Any]:
    """CT head ordered with no reasonCode: no rating, one card asking for the indication."""
    return order_sign(
        [imaging_order("70450", "CT head without contrast", None)],
        observations=[],
        patient_resource=patient(40),
        hook_instance=hook_instance,
    )


def ctpa_without_d_dimer(*, hook_instance: str | None = None) -> dict[str, Any]:
    """40-year-old woman, not pregnant, short of breath, Wells score 4 and no D-dimer on file, CTPA ordered:
    the rule suggests a D-dimer first (and cancelling the CTPA)."""
    today = date.today().isoformat()
    wells = {
        "resourceType": "Observation",
        "id": "wells-score",
        "status": "final",
        "code": {"coding": [{"system": RADCDS_CONTEXT, "code": "wells-score"}]},
        "effectiveDateTime": today,
        "valueQuantity": {"value": 4, "unit": "{score}"},
    }
    not_pregnant = {
        "resourceType": "Observation",
        "id": "pregnancy-status",
        "status": "final",
        "code": {"coding": [{"system": LOINC, "code": "82810-3", "display": "Pregnancy status"}]},
        "effectiveDateTime": today,
        "valueCodeableConcept": {"coding": [{"system": SNOMED, "code": "60001007", "display": "Not pregnant"}]},
    }
    return order_sign(
        [imaging_order("71275", "CT angiography chest", ("R06.02", "Shortness of breath"), order_id="draft-ctpa")],
        observations=[wells, not_pregnant],
        patient_resource=patient(40, gender="female"),
        hook_instance=hook_instance,
    )


def lung_screening_candidate(*, hook_instance: str | None = None) -> dict[str, Any]:
    """patient-view for a 65-year-old daily smoker with 30 pack-years and no chest CT on file:
    eligible for annual low-dose CT under USPSTF 2021."""
    today = date.today().isoformat()
    smoker = {
        "resourceType": "Observation",
        "id": "smoking",
        "status": "final",
        "code": {"coding": [{"system": LOINC, "code": "72166-2", "display": "Tobacco smoking status"}]},
        "effectiveDateTime": today,
        "valueCodeableConcept": {
            "coding": [{"system": SNOMED, "code": "449868002", "display": "Smokes tobacco daily"}]
        },
    }
    pack_years = {
        "resourceType": "Observation",
        "id": "pack-years",
        "status": "final",
        "code": {"coding": [{"system": SNOMED, "code": "401201003", "display": "Cigarette pack-years"}]},
        "effectiveDateTime": today,
        "valueQuantity": {"value": 30, "unit": "{pack-years}"},
    }
    pat = patient(65, patient_id="example-smoker")
    return {
        "hook": "patient-view",
        "hookInstance": hook_instance or str(uuid.uuid4()),
        "context": {"userId": "Practitioner/example", "patientId": pat["id"]},
        "prefetch": {
            "patient": pat,
            "conditions": _bundle([]),
            "observations": _bundle([smoker, pack_years]),
            "serviceRequests": _bundle([]),
            "imagingStudies": _bundle([]),
        },
    }
