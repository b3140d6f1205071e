"""Trauma decision rules (CCHR, PECARN, NEXUS, Canadian C-Spine, Ottawa ankle/foot/knee) from FHIR JSON.

Each test builds the draft ServiceRequest and the patient's FHIR resources by hand (see fhir_fixtures)
and checks the outcome: a positive, a negative and a missing-data case per rule.
"""

from __future__ import annotations

from radcds_referral.adapters.clinical_context import imaging_order_from_service_request
from radcds_referral.domain.appropriateness import Outcome, PatientContext, SuggestionAction, evaluate_order

from .fhir_fixtures import ICD, RULES, condition, context, finding, findings, quantity, service_request

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
HEAD_CT = service_request("70450", (ICD, "S06.0X0A"))  # CT head w/o contrast for concussion
GCS_15 = quantity("9269-2", 15, "{score}")


def rate(sr: dict, ctx: PatientContext):
    return evaluate_order(imaging_order_from_service_request(sr), ctx, RULES)


# --- Canadian CT Head Rule ------------------------------------------------------------------------


def test_canadian_ct_head_low_risk_adult_gcs_15_returns_not_appropriate():
    # 40-year-old, GCS 15, every CCHR factor and exclusion documented absent.
    ev = rate(HEAD_CT, context(40, GCS_15, *findings(False, *CCHR_FLAGS)))
    assert ev.outcome is Outcome.NOT_APPROPRIATE
    assert ev.rule is not None and ev.rule.id == "canadian-ct-head"
    assert ev.suggestions[0].action is SuggestionAction.REMOVE
    assert "Stiell" in ev.detail and "Lancet" in ev.detail
    assert ev.shows_card


def test_canadian_ct_head_age_65_or_older_returns_appropriate_even_with_gaps():
    # 70-year-old: a high-risk factor decides although GCS and other findings are undocumented.
    ev = rate(HEAD_CT, context(70))
    assert ev.outcome is Outcome.APPROPRIATE and ev.branch == "high-risk"
    assert not ev.shows_card


def test_canadian_ct_head_vomiting_undocumented_returns_needs_information():
    flags = [f for f in CCHR_FLAGS if f != "vomiting-2-or-more"]
    ev = rate(HEAD_CT, context(40, GCS_15, *findings(False, *flags)))
    assert ev.outcome is Outcome.NEEDS_INFORMATION and ev.rating is None
    assert [m.key for m in ev.missing] == ["vomiting-2-or-more"]


def test_canadian_ct_head_anticoagulated_patient_returns_no_criteria_apply():
    # Condition Z79.01 (long-term anticoagulants) sets the exclusion flag present.
    flags = [f for f in CCHR_FLAGS if f != "anticoagulation-or-coagulopathy"]
    ctx = context(40, GCS_15, *findings(False, *flags), conditions=[condition(ICD, "Z79.01")])
    assert rate(HEAD_CT, ctx).outcome is Outcome.NO_CRITERIA_APPLY


# --- PECARN ---------------------------------------------------------------------------------------

U2 = ("altered-mental-status", "palpable-skull-fracture", "scalp-hematoma-non-frontal")
U2 += ("loss-of-consciousness-5s-or-more", "severe-mechanism", "not-acting-normally")
O2 = ("altered-mental-status", "basilar-skull-fracture-signs", "loss-of-consciousness", "vomiting")
O2 += ("severe-mechanism", "severe-headache")


def test_pecarn_under_2_without_predictors_returns_not_appropriate():
    ev = rate(HEAD_CT, context(1, GCS_15, *findings(False, *U2)))
    assert ev.outcome is Outcome.NOT_APPROPRIATE and ev.rule is not None and ev.rule.id == "pecarn-head"
    assert ev.branch == "under-2-very-low-risk"


def test_pecarn_under_2_palpable_skull_fracture_returns_appropriate():
    ev = rate(HEAD_CT, context(1, finding("palpable-skull-fracture", True)))
    assert ev.outcome is Outcome.APPROPRIATE and ev.branch == "under-2-high-risk"


def test_pecarn_age_17_is_rated_by_pecarn_not_canadian_ct_head():
    # 16-17 fall in both populations; PECARN has the higher priority.
    ev = rate(HEAD_CT, context(17, GCS_15, *findings(False, *O2)))
    assert ev.rule is not None and ev.rule.id == "pecarn-head" and ev.outcome is Outcome.NOT_APPROPRIATE


def test_pecarn_2_plus_vomiting_returns_appropriate_intermediate():
    ev = rate(HEAD_CT, context(8, GCS_15, *findings(False, *O2[:2]), finding("vomiting", True)))
    assert ev.outcome is Outcome.APPROPRIATE and ev.branch == "2-plus-intermediate"


def test_pecarn_2_plus_severe_headache_undocumented_returns_needs_information():
    ev = rate(HEAD_CT, context(8, GCS_15, *findings(False, *O2[:-1])))
    assert ev.outcome is Outcome.NEEDS_INFORMATION
    assert [m.key for m in ev.missing] == ["severe-headache"]


# --- NEXUS and Canadian C-Spine -------------------------------------------------------------------

CSPINE_CT = service_request("72125", (ICD, "S13.4XXA"))  # CT c-spine for a neck sprain
NEXUS = ("midline-cervical-tenderness", "intoxication", "altered-alertness", "focal-neurological-deficit")
NEXUS += ("distracting-injury",)


def test_nexus_child_with_all_low_risk_criteria_returns_not_appropriate():
    # 12-year-old: outside the Canadian C-Spine Rule (age < 16), so NEXUS rates.
    ev = rate(CSPINE_CT, context(12, *findings(False, *NEXUS)))
    assert ev.outcome is Outcome.NOT_APPROPRIATE and ev.rule is not None and ev.rule.id == "nexus-cspine"


def test_nexus_midline_tenderness_returns_appropriate():
    ev = rate(CSPINE_CT, context(12, finding("midline-cervical-tenderness", True)))
    assert ev.outcome is Outcome.APPROPRIATE


def test_nexus_intoxication_undocumented_returns_needs_information():
    ev = rate(CSPINE_CT, context(12, *findings(False, *[f for f in NEXUS if f != "intoxication"])))
    assert ev.outcome is Outcome.NEEDS_INFORMATION and [m.key for m in ev.missing] == ["intoxication"]


CCS_CLEAR = ("cspine-dangerous-mechanism", "extremity-paresthesias", "unable-to-rotate-neck-45")


def test_canadian_cspine_alert_adult_cleared_returns_not_appropriate():
    # 30-year-old, GCS 15, no high-risk factor, ambulatory (low-risk factor), rotates the neck.
    ctx = context(30, GCS_15, *findings(False, *CCS_CLEAR), finding("ambulatory-at-any-time", True))
    ev = rate(CSPINE_CT, ctx)
    assert ev.outcome is Outcome.NOT_APPROPRIATE and ev.rule is not None and ev.rule.id == "canadian-cspine"
    assert any("Ambulatory" in line for line in ev.criteria)


def test_canadian_cspine_age_65_returns_appropriate():
    ev = rate(CSPINE_CT, context(70, GCS_15))
    assert ev.outcome is Outcome.APPROPRIATE and ev.rule is not None and ev.rule.id == "canadian-cspine"


def test_canadian_cspine_without_gcs_returns_needs_information_for_gcs():
    ev = rate(CSPINE_CT, context(30, *findings(False, *CCS_CLEAR, *NEXUS)))
    assert ev.outcome is Outcome.NEEDS_INFORMATION and [m.key for m in ev.missing] == ["gcs"]


def test_canadian_cspine_stale_gcs_counts_as_undocumented():
    # GCS from 5 days ago is older than the rule's 1-day limit.
    from datetime import timedelta

    from .fhir_fixtures import TODAY

    ctx = context(30, quantity("9269-2", 15, "{score}", when=TODAY - timedelta(days=5)))
    assert rate(CSPINE_CT, ctx).outcome is Outcome.NEEDS_INFORMATION


# --- Ottawa ankle, foot and knee ------------------------------------------------------------------

ANKLE_XR = service_request("73610", (ICD, "S93.401A"))  # ankle x-ray, ankle sprain
FOOT_XR = service_request("73630", (ICD, "S93.601A"))  # foot x-ray, foot sprain
KNEE_XR = service_request("73562", (ICD, "S83.91XA"))  # knee x-ray, knee sprain
ANKLE = ("bone-tenderness-posterior-lateral-malleolus", "bone-tenderness-posterior-medial-malleolus")
ANKLE += ("unable-to-bear-weight",)


def test_ottawa_ankle_lateral_malleolus_tenderness_returns_appropriate():
    ctx = context(30, finding("malleolar-zone-pain", True), finding(ANKLE[0], True))
    assert rate(ANKLE_XR, ctx).outcome is Outcome.APPROPRIATE


def test_ottawa_ankle_negative_returns_not_appropriate():
    ctx = context(30, finding("malleolar-zone-pain", True), *findings(False, *ANKLE))
    ev = rate(ANKLE_XR, ctx)
    assert ev.outcome is Outcome.NOT_APPROPRIATE and ev.rule is not None and ev.rule.id == "ottawa-ankle"


def test_ottawa_ankle_tenderness_undocumented_returns_needs_information():
    ctx = context(30, finding("malleolar-zone-pain", True), *findings(False, *ANKLE[1:]))
    ev = rate(ANKLE_XR, ctx)
    assert ev.outcome is Outcome.NEEDS_INFORMATION and [m.key for m in ev.missing] == [ANKLE[0]]


def test_ottawa_ankle_child_is_outside_the_rule_and_returns_no_criteria_apply():
    assert rate(ANKLE_XR, context(10, *findings(False, *ANKLE))).outcome is Outcome.NO_CRITERIA_APPLY


FOOT = ("bone-tenderness-base-fifth-metatarsal", "bone-tenderness-navicular", "unable-to-bear-weight")


def test_ottawa_foot_navicular_tenderness_returns_appropriate():
    ctx = context(45, finding("midfoot-zone-pain", True), finding("bone-tenderness-navicular", True))
    assert rate(FOOT_XR, ctx).outcome is Outcome.APPROPRIATE


def test_ottawa_foot_no_midfoot_pain_returns_not_appropriate():
    ev = rate(FOOT_XR, context(45, finding("midfoot-zone-pain", False)))
    assert ev.outcome is Outcome.NOT_APPROPRIATE and ev.rule is not None and ev.rule.id == "ottawa-foot"


def test_ottawa_foot_nothing_documented_returns_needs_information():
    ev = rate(FOOT_XR, context(45))
    assert ev.outcome is Outcome.NEEDS_INFORMATION
    assert {m.key for m in ev.missing} == {"midfoot-zone-pain", *FOOT}


KNEE = ("isolated-patellar-tenderness", "fibular-head-tenderness", "unable-to-flex-knee-90", "unable-to-bear-weight")


def test_ottawa_knee_age_55_or_older_returns_appropriate():
    assert rate(KNEE_XR, context(60)).outcome is Outcome.APPROPRIATE


def test_ottawa_knee_negative_returns_not_appropriate():
    ev = rate(KNEE_XR, context(30, *findings(False, *KNEE)))
    assert ev.outcome is Outcome.NOT_APPROPRIATE and ev.rule is not None and ev.rule.id == "ottawa-knee"


def test_ottawa_knee_flexion_undocumented_returns_needs_information():
    ev = rate(KNEE_XR, context(30, *findings(False, *[k for k in KNEE if k != "unable-to-flex-knee-90"])))
    assert ev.outcome is Outcome.NEEDS_INFORMATION and [m.key for m in ev.missing] == ["unable-to-flex-knee-90"]
