"""PE (Wells/PERC/D-dimer), low back pain, contrast and pregnancy safety, indication handling, patient-view.

Inputs are hand-written FHIR R4 JSON (fhir_fixtures) passed through the adapter; each test names the
condition and the expected outcome.
"""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

from radcds_referral.adapters.clinical_context import (
    imaging_order_from_service_request,
    patient_context_from_fhir,
    resources,
)
from radcds_referral.domain.appropriateness import (
    Indicator,
    Outcome,
    PatientContext,
    SuggestionAction,
    evaluate_order,
    evaluate_patient,
)

from .fhir_fixtures import (
    CPT,
    ICD,
    LOINC,
    RULES,
    SCT,
    TODAY,
    allergy,
    coded,
    condition,
    context,
    context_value,
    finding,
    findings,
    imaging_study,
    quantity,
    service_request,
)


def rate(sr: dict, ctx: PatientContext):
    return evaluate_order(imaging_order_from_service_request(sr), ctx, RULES)


# --- CT pulmonary angiography: Wells, PERC, D-dimer ------------------------------------------------

CTPA = service_request("71275", (ICD, "R06.02"))  # CTA chest for shortness of breath
WELLS_ITEMS = ("clinical-signs-dvt", "pe-most-likely-diagnosis", "immobilisation-or-recent-surgery", "prior-dvt-pe")
WELLS_ITEMS += ("hemoptysis", "malignancy")
PERC_FLAGS = ("exogenous-estrogen", "unilateral-leg-swelling", "recent-surgery-or-trauma")
HR_80 = quantity("8867-4", 80, "/min")
SPO2_98 = quantity("59408-5", 98, "%")


def test_pe_high_wells_score_returns_appropriate():
    # Signs of DVT (3) + PE most likely (3) + heart rate 110 (1.5) = 7.5 > 6.
    ctx = context(60, *[finding(f, True) for f in WELLS_ITEMS[:2]], quantity("8867-4", 110, "/min"))
    ev = rate(CTPA, ctx)
    assert ev.outcome is Outcome.APPROPRIATE and ev.branch == "high-probability"
    # Other items undocumented: the score is an interval whose low end already exceeds 6.
    assert "Wells score for PE = 7.5 to 12.5 (items not documented)" in ev.criteria


def test_pe_low_wells_and_perc_negative_from_prefetch_bundle_returns_not_appropriate():
    # Hand-written prefetch Bundle (prefetch_pe_bundle.json): 34-year-old, all Wells and PERC items absent.
    bundle = json.loads((Path(__file__).parent / "prefetch_pe_bundle.json").read_text())
    patient = resources(bundle, "Patient")
    assert patient is not None
    ctx = patient_context_from_fhir(
        today=TODAY, patient=patient[0], observations=resources(bundle, "Observation"), conditions=[]
    )
    ev = rate(CTPA, ctx)
    assert ev.outcome is Outcome.NOT_APPROPRIATE and ev.branch == "low-probability-perc-negative"
    assert ev.suggestions[0].action is SuggestionAction.REMOVE
    assert "Kline" in ev.detail and "Wells" in ev.detail


def test_pe_moderate_wells_negative_d_dimer_returns_not_appropriate():
    # Prior DVT (1.5) + haemoptysis (1) = 2.5 (moderate); D-dimer 0.3 mg/L FEU = 300 ng/mL, below 500.
    ctx = context(
        60,
        HR_80,
        *findings(False, *WELLS_ITEMS[:3], "malignancy"),
        *findings(True, "prior-dvt-pe", "hemoptysis"),
        quantity("48065-7", 0.3, "mg/L"),
    )
    ev = rate(CTPA, ctx)
    assert ev.outcome is Outcome.NOT_APPROPRIATE and ev.branch == "d-dimer-negative"


def test_pe_moderate_wells_positive_d_dimer_returns_appropriate():
    ctx = context(
        60,
        HR_80,
        *findings(False, *WELLS_ITEMS[:3], "malignancy"),
        *findings(True, "prior-dvt-pe", "hemoptysis"),
        quantity("48065-7", 1200, "ng/mL"),
    )
    assert rate(CTPA, ctx).branch == "d-dimer-positive"


def test_pe_low_wells_perc_positive_without_d_dimer_suggests_adding_d_dimer():
    # Age 60 makes PERC positive; no D-dimer on file.
    ctx = context(60, HR_80, SPO2_98, *findings(False, *WELLS_ITEMS, *PERC_FLAGS))
    ev = rate(CTPA, ctx)
    assert ev.outcome is Outcome.NOT_APPROPRIATE and ev.branch == "no-d-dimer"
    add = ev.suggestions[0]
    assert add.action is SuggestionAction.ADD and add.recommended
    assert {(c.system, c.code) for c in add.codes} == {(LOINC, "48065-7"), (CPT, "85379")}


def test_pe_old_d_dimer_is_ignored_and_d_dimer_suggested_again():
    old = quantity("48065-7", 200, "ng/mL", when=TODAY - timedelta(days=10))
    ctx = context(60, HR_80, SPO2_98, old, *findings(False, *WELLS_ITEMS, *PERC_FLAGS))
    assert rate(CTPA, ctx).branch == "no-d-dimer"


def test_pe_nothing_documented_returns_needs_information_listing_wells_items():
    ev = rate(CTPA, context(60))
    assert ev.outcome is Outcome.NEEDS_INFORMATION and ev.rating is None
    keys = {m.key for m in ev.missing}
    assert {"clinical-signs-dvt", "heart-rate", "hemoptysis"} <= keys


def test_pe_wells_score_documented_directly_is_used():
    ev = rate(CTPA, context(60, context_value("wells-score", 7)))
    assert ev.outcome is Outcome.APPROPRIATE


def test_pe_rule_does_not_apply_to_pregnant_patient_but_pregnancy_warning_does():
    ctx = context(30, coded("82810-3", "77386006"), context_value("wells-score", 0), gender="female")
    ev = rate(CTPA, ctx)
    assert ev.outcome is Outcome.NO_CRITERIA_APPLY and ev.rule is None
    assert [r.id for r in ev.safety] == ["pregnancy-ionising-radiation"]
    assert ev.indicator is Indicator.WARNING and ev.shows_card


# --- Low back pain --------------------------------------------------------------------------------

LBP_MRI = service_request("72148", (ICD, "M54.50"))  # MRI lumbar spine for low back pain
RED_FLAGS = ("red-flag-cancer-history", "red-flag-unexplained-weight-loss", "red-flag-infection-risk")
RED_FLAGS += ("red-flag-progressive-neurological-deficit", "red-flag-cauda-equina", "red-flag-significant-trauma")
RED_FLAGS += ("red-flag-osteoporosis-or-steroid-use",)


def test_low_back_pain_two_weeks_without_red_flags_returns_not_appropriate_and_suggests_removal():
    # Condition M54.50 with onset 14 days ago gives the symptom duration.
    lbp = condition(ICD, "M54.50", onset=TODAY - timedelta(days=14))
    ev = rate(LBP_MRI, context(40, *findings(False, *RED_FLAGS), conditions=[lbp]))
    assert ev.outcome is Outcome.NOT_APPROPRIATE
    assert [s.action for s in ev.suggestions] == [SuggestionAction.REMOVE]
    assert ev.override_reasons and "Chou" in ev.detail


def test_low_back_pain_with_cancer_history_condition_returns_appropriate():
    # Active breast cancer (C50.911) on the problem list sets the cancer red flag present.
    conds = [condition(ICD, "M54.50", onset=TODAY - timedelta(days=14)), condition(ICD, "C50.911")]
    assert rate(LBP_MRI, context(40, conditions=conds)).outcome is Outcome.APPROPRIATE


def test_low_back_pain_onset_unknown_returns_needs_information():
    ev = rate(LBP_MRI, context(40, *findings(False, *RED_FLAGS), conditions=[condition(ICD, "M54.50")]))
    assert ev.outcome is Outcome.NEEDS_INFORMATION
    assert [m.key for m in ev.missing] == ["symptom-duration-days"]


def test_low_back_pain_beyond_six_weeks_returns_no_criteria_apply():
    lbp = condition(ICD, "M54.50", onset=TODAY - timedelta(days=60))
    assert rate(LBP_MRI, context(40, *findings(False, *RED_FLAGS), conditions=[lbp])).branch == "persistent"


# --- Iodinated contrast ---------------------------------------------------------------------------

CT_ABD_CONTRAST = service_request("74160", (ICD, "R10.9"))  # CT abdomen with contrast, abdominal pain


def test_contrast_ct_with_egfr_below_30_returns_warning_suggesting_non_contrast_study():
    ev = rate(CT_ABD_CONTRAST, context(70, quantity("62238-1", 24, "mL/min/{1.73_m2}"), allergies=[]))
    assert [r.id for r in ev.safety] == ["iodinated-contrast"]
    assert ev.indicator is Indicator.WARNING and ev.shows_card
    assert ev.suggestions[0].action is SuggestionAction.REPLACE
    assert ev.suggestions[0].code is not None and ev.suggestions[0].code.code == "74150"
    assert ev.outcome is Outcome.NO_CRITERIA_APPLY  # the rating stays the clinical one


def test_contrast_ct_with_documented_contrast_allergy_returns_warning():
    ev = rate(CT_ABD_CONTRAST, context(50, allergies=[allergy("293637006")]))
    assert [r.id for r in ev.safety] == ["iodinated-contrast"] and ev.indicator is Indicator.WARNING


def test_contrast_ct_with_normal_egfr_and_no_allergy_returns_no_warning():
    ev = rate(CT_ABD_CONTRAST, context(50, quantity("98979-8", 85, "mL/min/{1.73_m2}"), allergies=[]))
    assert ev.safety == () and not ev.shows_card


def test_contrast_ct_without_egfr_or_allergy_list_stays_silent_not_negative():
    ctx = context(50)
    assert "iodinated-contrast-allergy" not in ctx.findings  # unknown, not "no allergy"
    assert rate(CT_ABD_CONTRAST, ctx).safety == ()


def test_contrast_allergy_recognised_from_text_only():
    ctx = context(50, allergies=[allergy(text="Iodinated contrast media - hives")])
    assert ctx.findings["iodinated-contrast-allergy"] is True


# --- Pregnancy and ionising radiation ----------------------------------------------------------------

CT_ABD_PELVIS = service_request("74177", (ICD, "R10.31"))  # CT abdomen/pelvis with contrast, RLQ pain


def test_pregnant_patient_ct_abdomen_pelvis_returns_critical_with_ultrasound_suggestion():
    ev = rate(CT_ABD_PELVIS, context(28, coded("82810-3", "77386006"), gender="female"))
    assert ev.indicator is Indicator.CRITICAL and ev.safety[0].id == "pregnancy-ionising-radiation"
    assert ev.suggestions[0].code is not None and ev.suggestions[0].code.code == "76700"


def test_pregnant_patient_positive_urine_hcg_ct_head_returns_warning():
    hcg = coded("2106-3", "10828004")  # urine hCG positive
    ev = rate(service_request("70450", (ICD, "R51.9")), context(28, hcg, gender="female"))
    assert ev.indicator is Indicator.WARNING and ev.safety[0].id == "pregnancy-ionising-radiation"


def test_not_pregnant_patient_returns_no_pregnancy_warning():
    ev = rate(CT_ABD_PELVIS, context(28, coded("82810-3", "60001007"), gender="female"))
    assert all(r.id != "pregnancy-ionising-radiation" for r in ev.safety)


def test_pregnancy_status_unknown_returns_no_pregnancy_warning():
    ev = rate(CT_ABD_PELVIS, context(28, gender="female"))
    assert ev.safety == ()


def test_mri_order_for_pregnant_patient_returns_no_pregnancy_warning():
    ev = rate(service_request("74181", (ICD, "R10.31")), context(28, coded("82810-3", "77386006"), gender="female"))
    assert ev.safety == ()


# --- Indication handling ----------------------------------------------------------------------------


def test_imaging_order_without_reason_returns_needs_information_for_indication():
    ev = rate(service_request("70450"), context(40))
    assert ev.outcome is Outcome.NEEDS_INFORMATION and ev.rule is None
    assert [m.key for m in ev.missing] == ["indication"]


def test_imaging_order_with_vague_reason_returns_needs_information_for_specific_indication():
    ev = rate(service_request("70450", (ICD, "R69")), context(40))
    assert [m.key for m in ev.missing] == ["specific-indication"]


def test_non_imaging_order_without_reason_returns_no_criteria_apply():
    ev = rate(service_request("85379"), context(40))  # a D-dimer order is not imaging
    assert ev.outcome is Outcome.NO_CRITERIA_APPLY and not ev.shows_card


def test_imaging_order_with_unrelated_indication_returns_no_criteria_apply():
    ev = rate(service_request("70450", (ICD, "G43.909")), context(40))  # migraine: no head-injury rule
    assert ev.outcome is Outcome.NO_CRITERIA_APPLY and ev.rule is None


def test_snomed_reason_code_selects_rule():
    ev = rate(service_request("70450", (SCT, "82271004")), context(70))
    assert ev.rule is not None and ev.rule.id == "canadian-ct-head"


# --- Patient view: USPSTF lung cancer screening ----------------------------------------------------

SMOKER = coded("72166-2", "449868002")  # smokes tobacco daily
NEVER = coded("72166-2", "266919005")
PACK_YEARS_30 = quantity("401201003", 30, "{pack-years}", system=SCT)


def by_rule(evaluations, rule_id):
    return [e for e in evaluations if e.rule is not None and e.rule.id == rule_id]


def test_lung_screening_eligible_current_smoker_without_recent_ct_returns_info_card_with_ldct():
    ctx = context(65, SMOKER, PACK_YEARS_30, imaging_studies=[], service_requests=[])
    [ev] = by_rule(evaluate_patient(ctx, RULES, TODAY), "uspstf-lung-screening")
    assert ev.outcome is Outcome.ADVISORY and ev.indicator is Indicator.INFO
    assert ev.suggestions[0].action is SuggestionAction.ADD and ev.suggestions[0].code is not None
    assert ev.suggestions[0].code.code == "71271"


def test_lung_screening_former_smoker_quit_20_years_ago_returns_nothing():
    quit_date = {
        "resourceType": "Observation",
        "status": "final",
        "code": {"coding": [{"system": SCT, "code": "160625004"}]},
        "valueDateTime": (TODAY - timedelta(days=365 * 20)).isoformat(),
    }
    ctx = context(65, coded("72166-2", "8517006"), quit_date, PACK_YEARS_30, imaging_studies=[])
    assert by_rule(evaluate_patient(ctx, RULES, TODAY), "uspstf-lung-screening") == []


def test_lung_screening_never_smoker_returns_nothing():
    ctx = context(65, NEVER, imaging_studies=[])
    assert by_rule(evaluate_patient(ctx, RULES, TODAY), "uspstf-lung-screening") == []


def test_lung_screening_chest_ct_six_months_ago_returns_nothing():
    ctx = context(65, SMOKER, PACK_YEARS_30, imaging_studies=[imaging_study("71271", TODAY - timedelta(days=180))])
    assert by_rule(evaluate_patient(ctx, RULES, TODAY), "uspstf-lung-screening") == []


def test_lung_screening_pack_years_missing_returns_needs_information():
    ctx = context(65, SMOKER, imaging_studies=[])
    [ev] = by_rule(evaluate_patient(ctx, RULES, TODAY), "uspstf-lung-screening")
    assert ev.outcome is Outcome.NEEDS_INFORMATION and [m.key for m in ev.missing] == ["pack-years"]


# --- Patient view: overdue nodule follow-up -------------------------------------------------------


def nodule_follow_up(due_days_ago: int) -> dict:
    """Active ServiceRequest recommending CT chest (71250) for a solitary nodule (R91.1), due in the past."""
    sr = service_request("71250", (ICD, "R91.1"), rid="rec-1", status="active")
    sr["intent"] = "plan"
    sr["authoredOn"] = (TODAY - timedelta(days=200)).isoformat()
    sr["occurrenceDateTime"] = (TODAY - timedelta(days=due_days_ago)).isoformat()
    return sr


def test_nodule_follow_up_past_due_without_ct_returns_warning():
    ctx = context(60, imaging_studies=[], service_requests=[nodule_follow_up(30)])
    [ev] = by_rule(evaluate_patient(ctx, RULES, TODAY), "nodule-follow-up-overdue")
    assert ev.outcome is Outcome.ADVISORY and ev.indicator is Indicator.WARNING
    assert "MacMahon" in ev.detail


def test_nodule_follow_up_done_after_recommendation_returns_nothing():
    ctx = context(
        60,
        imaging_studies=[imaging_study("71250", TODAY - timedelta(days=20))],
        service_requests=[nodule_follow_up(30)],
    )
    assert by_rule(evaluate_patient(ctx, RULES, TODAY), "nodule-follow-up-overdue") == []


def test_nodule_follow_up_imaging_history_unknown_returns_needs_information():
    ctx = context(60, imaging_studies=None, service_requests=[nodule_follow_up(30)])
    [ev] = by_rule(evaluate_patient(ctx, RULES, TODAY), "nodule-follow-up-overdue")
    assert ev.outcome is Outcome.NEEDS_INFORMATION
