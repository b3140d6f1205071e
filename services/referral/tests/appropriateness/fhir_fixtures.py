"""Hand-written FHIR R4 JSON builders for the appropriateness tests (no external source).

Each builder returns one resource as a plain dict, the way it arrives in a CDS Hooks ``draftOrders`` Bundle
or prefetch; the tests feed them through ``radcds_referral.adapters.clinical_context``.
``prefetch_pe_bundle.json`` (same folder) is a hand-written prefetch Bundle: a 34-year-old non-pregnant woman
with suspected PE, Wells items all absent, normal vital signs and PERC items absent, plus an
OperationOutcome entry that the adapter must skip.
"""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path
from typing import Any

from radcds_referral.adapters.clinical_context import RADCDS_CONTEXT, RADCDS_FINDING, patient_context_from_fhir
from radcds_referral.domain.appropriateness import PatientContext, load_rules

TODAY = date(2026, 3, 2)
CPT = "http://www.ama-assn.org/go/cpt"
ICD = "http://hl7.org/fhir/sid/icd-10-cm"
SCT = "http://snomed.info/sct"
LOINC = "http://loinc.org"
REPO = Path(__file__).resolve().parents[4]
RULES_DIR = REPO / "services" / "referral" / "knowledge" / "rules"
SCHEMA = REPO / "services" / "referral" / "knowledge" / "rule.schema.json"
RULES = load_rules(RULES_DIR)

Resource = dict[str, Any]


def patient(age: float, gender: str = "male") -> Resource:
    """Patient aged ``age`` years on TODAY (birthDate a few days past the birthday)."""
    years = int(age)
    birth = TODAY.replace(year=TODAY.year - years) - timedelta(days=int((age - years) * 365) + 3)
    return {"resourceType": "Patient", "id": "p1", "gender": gender, "birthDate": birth.isoformat()}


def service_request(cpt: str, *reasons: tuple[str, str], rid: str = "sr-1", status: str = "draft") -> Resource:
    """Draft imaging ServiceRequest with a CPT code and reasonCode codings given as (system, code)."""
    sr: Resource = {
        "resourceType": "ServiceRequest",
        "id": rid,
        "status": status,
        "intent": "order",
        "code": {"coding": [{"system": CPT, "code": cpt}], "text": f"CPT {cpt}"},
        "subject": {"reference": "Patient/p1"},
    }
    if reasons:
        sr["reasonCode"] = [{"coding": [{"system": s, "code": c}]} for s, c in reasons]
    return sr


def finding(flag: str, present: bool, when: date = TODAY) -> Resource:
    """Decision-rule finding as an Observation in the radcds finding code system with valueBoolean."""
    return {
        "resourceType": "Observation",
        "status": "final",
        "code": {"coding": [{"system": RADCDS_FINDING, "code": flag}]},
        "effectiveDateTime": when.isoformat(),
        "valueBoolean": present,
    }


def findings(present: bool, *flags: str) -> list[Resource]:
    """Several findings with the same value."""
    return [finding(f, present) for f in flags]


def quantity(loinc: str, value: float, unit: str, when: date = TODAY, system: str = LOINC) -> Resource:
    """Numeric Observation (valueQuantity)."""
    return {
        "resourceType": "Observation",
        "status": "final",
        "code": {"coding": [{"system": system, "code": loinc}]},
        "effectiveDateTime": when.isoformat(),
        "valueQuantity": {"value": value, "unit": unit, "code": unit},
    }


def coded(loinc: str, snomed: str, when: date = TODAY) -> Resource:
    """Observation with a SNOMED CT valueCodeableConcept (smoking status, pregnancy status)."""
    return {
        "resourceType": "Observation",
        "status": "final",
        "code": {"coding": [{"system": LOINC, "code": loinc}]},
        "effectiveDateTime": when.isoformat(),
        "valueCodeableConcept": {"coding": [{"system": SCT, "code": snomed}]},
    }


def context_value(key: str, value: float) -> Resource:
    """Context value without a standard code (radcds clinical-context code system)."""
    return quantity(key, value, "1", system=RADCDS_CONTEXT)


def condition(system: str, code: str, onset: date | None = None, status: str = "active") -> Resource:
    """Condition with a clinicalStatus and optional onsetDateTime."""
    cond: Resource = {
        "resourceType": "Condition",
        "clinicalStatus": {
            "coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": status}]
        },
        "code": {"coding": [{"system": system, "code": code}]},
    }
    if onset:
        cond["onsetDateTime"] = onset.isoformat()
    return cond


def allergy(snomed: str | None = None, text: str = "") -> Resource:
    """AllergyIntolerance by SNOMED CT code or by text only."""
    code: Resource = {"text": text} if text else {}
    if snomed:
        code["coding"] = [{"system": SCT, "code": snomed}]
    return {"resourceType": "AllergyIntolerance", "code": code}


def imaging_study(cpt: str, started: date) -> Resource:
    """Completed ImagingStudy with a CPT procedureCode."""
    return {
        "resourceType": "ImagingStudy",
        "status": "available",
        "started": started.isoformat(),
        "procedureCode": [{"coding": [{"system": CPT, "code": cpt}]}],
    }


def context(
    age: float,
    *observations: Resource,
    gender: str = "male",
    conditions: list[Resource] | None = None,
    allergies: list[Resource] | None = None,
    imaging_studies: list[Resource] | None = None,
    service_requests: list[Resource] | None = None,
) -> PatientContext:
    """PatientContext through the FHIR adapter."""
    return patient_context_from_fhir(
        today=TODAY,
        patient=patient(age, gender),
        conditions=conditions or [],
        observations=list(observations),
        allergies=allergies,
        imaging_studies=imaging_studies,
        service_requests=service_requests,
    )
