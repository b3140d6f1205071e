"""FHIR R4 JSON → DraftImagingOrder / PatientContext (radcds_referral.adapters.clinical_context)."""

from __future__ import annotations

from datetime import date, timedelta

from radcds_referral.adapters.clinical_context import (
    RADCDS_FINDING,
    imaging_order_from_service_request,
    patient_context_from_fhir,
    resources,
)
from radcds_referral.domain.appropriateness import age_in_years

from .fhir_fixtures import CPT, ICD, SCT, TODAY, allergy, coded, condition, context, finding, quantity

V3_INTERPRETATION = "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation"


def test_service_request_codes_reasons_and_id_are_read():
    # Draft order with two codings (CPT + SNOMED CT) and a text, two reasons.
    sr = {
        "resourceType": "ServiceRequest",
        "id": "sr-9",
        "code": {"coding": [{"system": CPT, "code": "70450"}, {"system": SCT, "code": "303653007"}], "text": "CT head"},
        "reasonCode": [{"coding": [{"system": ICD, "code": "S06.0X0A"}]}, {"text": "fall"}],
    }
    order = imaging_order_from_service_request(sr)
    assert order.id == "sr-9" and order.display == "CT head"
    assert [c.code for c in order.codes] == ["70450", "303653007"]
    assert [c.code for c in order.reason_codes] == ["S06.0X0A"]


def test_resources_skips_operation_outcome_and_null_prefetch():
    assert resources(None) is None
    assert resources({"resourceType": "OperationOutcome"}) is None
    bundle = {"resourceType": "Bundle", "entry": [{"resource": {"resourceType": "Condition"}}, {"search": {}}]}
    assert resources(bundle, "Condition") == [{"resourceType": "Condition"}]


def test_age_is_computed_on_the_given_day():
    assert age_in_years(date(2000, 3, 2), date(2026, 3, 2)) == 26
    assert 25.99 < age_in_years(date(2000, 3, 3), date(2026, 3, 2)) < 26
    assert age_in_years(date(2024, 2, 29), date(2025, 3, 1)) == 1


def test_latest_observation_wins_and_entered_in_error_is_ignored():
    old = quantity("9269-2", 13, "{score}", when=TODAY - timedelta(days=1))
    new = quantity("9269-2", 15, "{score}")
    wrong = quantity("9269-2", 3, "{score}") | {"status": "entered-in-error"}
    ctx = context(40, new, old, wrong)
    assert ctx.observations["gcs"].value == 15


def test_d_dimer_ddu_is_converted_to_feu_and_interpretation_wins():
    ddu = quantity("48066-5", 300, "ng/mL")  # 300 DDU ≈ 600 FEU → positive by the fixed cut-off
    assert context(50, ddu).observations["d-dimer-positive"].value is True
    normal = quantity("48065-7", 700, "ng/mL") | {
        "interpretation": [{"coding": [{"system": V3_INTERPRETATION, "code": "N"}]}]
    }
    assert context(50, normal).observations["d-dimer-positive"].value is False


def test_smoking_status_codes_are_normalised_and_unknown_stays_unknown():
    assert context(60, coded("72166-2", "8517006")).observations["smoking-status"].value == "former"
    assert "smoking-status" not in context(60, coded("72166-2", "266927001")).observations


def test_finding_flags_from_radcds_code_system_and_snomed_observation():
    vomit = {
        "resourceType": "Observation",
        "status": "final",
        "code": {"coding": [{"system": SCT, "code": "422400008"}]},
        "effectiveDateTime": TODAY.isoformat(),
        "valueCodeableConcept": {"coding": [{"system": SCT, "code": "373067005"}]},  # No
    }
    ctx = context(30, vomit, finding("distracting-injury", True))
    assert ctx.findings == {"vomiting": False, "distracting-injury": True}


def test_old_findings_outside_the_window_are_ignored():
    ctx = context(30, finding("distracting-injury", True, when=TODAY - timedelta(days=30)))
    assert "distracting-injury" not in ctx.findings


def test_condition_sets_flag_present_only_when_active_and_not_refuted():
    resolved = condition(ICD, "I26.99", status="resolved")
    refuted = condition(ICD, "Z79.01") | {"verificationStatus": {"coding": [{"code": "refuted"}]}}
    assert context(50, conditions=[resolved, refuted]).findings == {}
    assert context(50, conditions=[condition(ICD, "Z86.711")]).findings == {"prior-dvt-pe": True}


def test_allergy_list_absent_is_unknown_and_empty_list_is_no_contrast_allergy():
    assert context(50).allergies is None
    assert context(50, allergies=[]).findings["iodinated-contrast-allergy"] is False
    assert context(50, allergies=[allergy("293637006")]).findings["iodinated-contrast-allergy"] is True


def test_prior_recommendation_from_active_service_request_with_due_date():
    rec = {
        "resourceType": "ServiceRequest",
        "id": "rec",
        "status": "active",
        "code": {"coding": [{"system": CPT, "code": "71250"}]},
        "reasonCode": [{"coding": [{"system": SCT, "code": "427359005"}]}],
        "authoredOn": "2025-06-01",
        "occurrenceDateTime": "2025-12-01",
    }
    done = rec | {"id": "done", "status": "completed"}
    ctx = patient_context_from_fhir(today=TODAY, service_requests=[rec, done])
    assert ctx.prior_recommendations is not None and [r.id for r in ctx.prior_recommendations] == ["rec"]
    assert ctx.prior_recommendations[0].due == date(2025, 12, 1)
    assert ctx.prior_studies is None  # not fetched: unknown


def test_finding_with_unusable_value_is_ignored():
    obs = {
        "resourceType": "Observation",
        "status": "final",
        "code": {"coding": [{"system": RADCDS_FINDING, "code": "intoxication"}]},
        "valueString": "maybe",
    }
    assert context(30, obs).findings == {}
