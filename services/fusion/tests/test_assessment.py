"""A study assessed in context: the demo chest radiograph against a prior CTR, a screening-age smoker's nodule
grown from 6 to 8 mm, an intracranial hemorrhage candidate, and missing context named."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, date, datetime

import pytest

from radcds_fusion.adapters.codec import assessment_payload
from radcds_fusion.domain.assessment import StudyFindings, assess_study, priors_with_ehr
from radcds_fusion.domain.comparison import Change, MeasuredFinding
from radcds_fusion.domain.confidence import ConfidenceLevel
from radcds_fusion.domain.context import ClinicalContext, ImplantedDevice, PriorStudy, SmokingStatus
from radcds_fusion.domain.nodules import Composition, Nodule
from radcds_fusion.domain.recommendations import RecommendationState
from radcds_fusion.knowledge import load_critical_policy, load_findings, load_guidelines

CTR = "cardiothoracic-ratio"
NODULE = "427359005"
ICH = "1386000"
AT = datetime(2026, 12, 1, 12, tzinfo=UTC)
SMOKER = ClinicalContext(
    birth_date=date(1961, 5, 2),
    sex="male",
    copd=True,
    known_cancer=False,
    immunosuppressed=False,
    smoking_status=SmokingStatus.CURRENT,
    pack_years=30,
)


@pytest.fixture(scope="module")
def knowledge():
    return load_guidelines(), load_critical_policy(), load_findings()


def run(knowledge, study, priors, context=SMOKER):
    guidelines, policy, labels = knowledge
    return assess_study(
        study=study,
        priors=priors,
        context=context,
        guidelines=guidelines,
        policy=policy,
        labels=labels,
        new_id=lambda guideline: f"{study.study_uid}-{guideline}",
        at=AT,
    )


def test_demo_chest_radiograph_ctr_compared_with_the_prior_ctr(knowledge):
    # chest_ctr measures 0.467 on RG1_UNCI.dcm; radcds held a CTR of 0.44 from an earlier radiograph.
    study = StudyFindings(
        "p1", "1.2.3", date(2026, 12, 1), "CR", "chest", (MeasuredFinding(CTR, "chest", date(2026, 12, 1), 0.467),)
    )
    prior = MeasuredFinding(CTR, "chest", date(2026, 6, 3), 0.44)
    result = run(knowledge, study, [prior])
    assert result.comparison_lines == ("CTR 0.47, previously 0.44 on 2026-06-03: stable.",)
    assert result.recommendations == ()


def test_ctr_without_a_prior_says_there_is_nothing_to_compare_with(knowledge):
    study = StudyFindings(
        "p1", "1.2.3", date(2026, 12, 1), "CR", "chest", (MeasuredFinding(CTR, "chest", date(2026, 12, 1), 0.467),)
    )
    assert run(knowledge, study, []).comparison_lines == ("CTR 0.47: no prior study to compare with.",)


def test_pacemaker_lowers_the_ctr_confidence(knowledge):
    study = StudyFindings(
        "p1", "1.2.3", date(2026, 12, 1), "CR", "chest", (MeasuredFinding(CTR, "chest", date(2026, 12, 1), 0.58),)
    )
    context = ClinicalContext(devices=(ImplantedDevice("14106009", "Cardiac pacemaker"),))
    result = run(knowledge, study, [], context)
    ((code, confidence),) = result.confidence
    assert code == CTR
    assert confidence.level is ConfidenceLevel.MODERATE
    assert "change the CTR" in confidence.reasons[0]
    # the report names the finding as the knowledge does, in the event too
    assert result.finding_labels == ((CTR, "CTR"),)
    (item,) = assessment_payload(result, version=1, at=AT)["confidence"]
    assert (item["code"], item["label"], item["level"]) == (CTR, "CTR", "moderate")


def test_nodule_grown_from_6_to_8_mm_is_increased_with_vdt_and_a_fleischner_recommendation(knowledge):
    now = MeasuredFinding(
        NODULE,
        "right upper lobe",
        date(2026, 12, 1),
        nodule=Nodule(Composition.SOLID, 8.2, 7.8, location="right upper lobe"),
    )
    prior = MeasuredFinding(
        NODULE,
        "right upper lobe",
        date(2026, 6, 4),
        nodule=Nodule(Composition.SOLID, 6.1, 5.9, location="right upper lobe"),
    )
    study = StudyFindings("p1", "1.2.9", date(2026, 12, 1), "CT", "chest", (now,), screening=False)
    result = run(knowledge, study, [prior])
    (comparison,) = result.comparisons
    assert comparison.change is Change.INCREASED
    assert result.comparison_lines == (
        "Solid nodule, right upper lobe 8.0 mm, previously 6.0 mm on 2026-06-04: increased by 2.0 mm in 180 days; "
        "volume doubling time 145 days.",
    )
    fleischner = next(g for g in result.guidelines if g.guideline_id == "fleischner-2017")
    assert fleischner.applies
    assert fleischner.nodules[0].branch_id == "solid-single-6-8-high-risk"
    lung_rads = next(g for g in result.guidelines if g.guideline_id == "lung-rads-v2022")
    assert not lung_rads.applies
    (made,) = result.recommendations
    assert made.recommendation.state is RecommendationState.PROPOSED
    assert made.recommendation.due_by == date(2027, 12, 1)
    assert result.recommendation_lines == (
        "fleischner-2017 1.0.0: CT at 6-12 months, then CT at 18-24 months. Due by 2027-12-01.",
        "lung-rads-v2022 1.0.0: applies to lung cancer screening CT only.",
    )
    assert "smoking: current, 30 pack-years" in result.context_used
    assert "COPD" in result.context_used


def test_screening_ct_gets_lung_rads_with_growth_and_fleischner_says_why_not(knowledge):
    now = MeasuredFinding(NODULE, "rul", date(2026, 12, 1), nodule=Nodule(Composition.SOLID, 8.2, 7.8))
    prior = MeasuredFinding(NODULE, "rul", date(2026, 6, 4), nodule=Nodule(Composition.SOLID, 6.1, 5.9))
    study = StudyFindings("p1", "1.2.9", date(2026, 12, 1), "CT", "chest", (now,), screening=True)
    result = run(knowledge, study, [prior])
    lung_rads = next(g for g in result.guidelines if g.guideline_id == "lung-rads-v2022")
    assert lung_rads.category == "4B"  # growing, >= 8 mm
    assert (
        result.recommendation_lines[0]
        == "fleischner-2017 1.0.0: does not apply to lung cancer screening (Lung-RADS applies)."
    )
    (made,) = result.recommendations
    assert made.recommendation.guideline_id == "lung-rads-v2022"


def test_new_hemorrhage_candidate_is_critical_and_a_stable_one_is_not(knowledge):
    def study(area):
        return StudyFindings(
            "p2", "1.2.5", date(2026, 12, 1), "CT", "head", (MeasuredFinding(ICH, "brain", date(2026, 12, 1), area),)
        )

    prior_study_other = MeasuredFinding(CTR, "chest", date(2026, 1, 1), 0.5)
    assert len(run(knowledge, study(120.0), [prior_study_other]).critical) == 1
    prior_ich = MeasuredFinding(ICH, "brain", date(2026, 11, 30), 118.0)
    assert run(knowledge, study(120.0), [prior_ich]).critical == ()
    assert len(run(knowledge, study(160.0), [prior_ich]).critical) == 1


def test_missing_context_is_named_and_the_assessment_still_made(knowledge):
    now = MeasuredFinding(NODULE, "rul", date(2026, 12, 1), nodule=Nodule(Composition.SOLID, 7.0, 7.0))
    study = StudyFindings("p1", "1.2.9", date(2026, 12, 1), "CT", "chest", (now,), screening=False)
    context = ClinicalContext(missing=("Patient (EHR timed out)", "Condition (EHR timed out)"))
    result = run(knowledge, study, [], context)
    assert result.missing[:2] == ("Patient (EHR timed out)", "Condition (EHR timed out)")
    assert "patient age" in result.missing
    assert result.recommendations  # high-risk management assumed, recommendation still made
    assert "high-risk management applied" in result.recommendation_lines[0]


def test_priors_from_the_same_or_a_later_date_are_not_priors(knowledge):
    study = StudyFindings(
        "p1", "1.2.3", date(2026, 12, 1), "CR", "chest", (MeasuredFinding(CTR, "chest", date(2026, 12, 1), 0.467),)
    )
    later = MeasuredFinding(CTR, "chest", date(2026, 12, 5), 0.40)
    same_day = MeasuredFinding(CTR, "chest", date(2026, 12, 1), 0.467)
    assert run(knowledge, study, [later, same_day]).comparison_lines == ("CTR 0.47: no prior study to compare with.",)


def _ehr_nodule(code: str, on: date, mm: float) -> MeasuredFinding:
    return MeasuredFinding(
        code, "39607008", on, value=mm, unit="mm", nodule=Nodule(Composition.SOLID, mm, location="39607008")
    )


def test_ehr_prior_nodule_code_is_tracked_as_the_nodule_and_the_current_study_is_not_its_own_prior():
    ehr = replace(
        SMOKER,
        prior_studies=(
            PriorStudy("1.2.1", date(2026, 6, 4), findings=(_ehr_nodule("786838002", date(2026, 6, 4), 6.0),)),
            PriorStudy("1.2.9", date(2026, 12, 1), findings=(_ehr_nodule("786838002", date(2026, 12, 1), 8.0),)),
        ),
    )
    (prior,) = priors_with_ehr(
        [], ehr, study_uid="1.2.9", nodule_codes=frozenset({"786838002", NODULE}), nodule_code=NODULE
    )
    assert prior.code == NODULE and prior.study_date == date(2026, 6, 4) and prior.nodule is not None


def test_own_prior_wins_over_the_ehr_copy_of_the_same_finding_on_the_same_day():
    own = MeasuredFinding(NODULE, "right upper lobe", date(2026, 6, 4), nodule=Nodule(Composition.SOLID, 6.2))
    ehr = replace(
        SMOKER,
        prior_studies=(PriorStudy(None, date(2026, 6, 4), findings=(_ehr_nodule(NODULE, date(2026, 6, 4), 6.0),)),),
    )
    assert priors_with_ehr([own], ehr, study_uid="1.2.9", nodule_codes=frozenset({NODULE}), nodule_code=NODULE) == [own]


def test_ehr_prior_6_mm_nodule_and_a_new_8_mm_one_are_compared_as_increased(knowledge):
    ehr = replace(
        SMOKER,
        prior_studies=(
            PriorStudy("1.2.1", date(2026, 6, 4), findings=(_ehr_nodule("786838002", date(2026, 6, 4), 6.0),)),
        ),
    )
    now = MeasuredFinding(NODULE, "39607008", date(2026, 12, 1), nodule=Nodule(Composition.SOLID, 8.0))
    study = StudyFindings("p1", "1.2.9", date(2026, 12, 1), "CT", "chest", (now,), screening=False)
    priors = priors_with_ehr([], ehr, study_uid="1.2.9", nodule_codes=frozenset({"786838002"}), nodule_code=NODULE)
    (comparison,) = run(knowledge, study, priors, context=ehr).comparisons
    assert comparison.change is Change.INCREASED and comparison.volume_doubling_time_days is not None
