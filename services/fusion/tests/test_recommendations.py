"""Recommendations tracked to closure: made from a guideline assessment, closed by a matching order or study,
overdue after the due date, cancelled with a reason; final states stay final."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, date, datetime

import pytest

from radcds_fusion.domain.guidelines import NoduleInput, PatientContext, Risk, assess
from radcds_fusion.domain.nodules import Composition, Nodule
from radcds_fusion.domain.recommendations import (
    EhrPatient,
    InvalidTransition,
    ObservedProcedure,
    RecommendationState,
    RequestedProcedure,
    add_months,
    cancel,
    close,
    close_matching,
    is_patient_of,
    mark_overdue,
    recommend,
)
from radcds_fusion.knowledge import load_guidelines

CT_CHEST = RequestedProcedure("CT", "chest", "CT chest", frozenset({"71250", "71260", "71270", "71271"}))
STUDY = date(2026, 3, 31)
AT = datetime(2026, 3, 31, 12, tzinfo=UTC)


@pytest.fixture(scope="module")
def eight_mm_assessment():
    context = PatientContext(age_years=64, known_cancer=False, immunosuppressed=False, screening=False, risk=Risk.HIGH)
    nodule = Nodule(Composition.SOLID, 8.2, 7.8)
    return assess(load_guidelines()["fleischner-2017"], nodules=[NoduleInput(nodule)], context=context)


@pytest.fixture
def rec(eight_mm_assessment):
    made = recommend(
        id="r1", patient_id="p1", assessment=eight_mm_assessment, procedure=CT_CHEST, study_date=STUDY, at=AT
    )
    assert made is not None
    return made.recommendation


def seen(code=None, modality="CT", region="chest", on=date(2026, 9, 1), patient="p1"):
    return ObservedProcedure(patient, modality, region, code, on, "ServiceRequest/o1")


def test_fleischner_8_mm_high_risk_recommends_ct_in_6_to_12_months_citing_the_guideline(rec):
    assert rec.state is RecommendationState.PROPOSED
    assert (rec.due_from, rec.due_by) == (date(2026, 9, 30), date(2027, 3, 31))
    assert rec.reason == "CT at 6-12 months, then CT at 18-24 months."
    assert rec.guideline_id == "fleischner-2017"
    assert "Radiology 2017" in rec.citation


def test_no_follow_up_means_no_recommendation():
    small = assess(
        load_guidelines()["fleischner-2017"],
        nodules=[NoduleInput(Nodule(Composition.SOLID, 4.0))],
        context=PatientContext(
            age_years=50, known_cancer=False, immunosuppressed=False, screening=False, risk=Risk.LOW
        ),
    )
    assert recommend(id="r", patient_id="p", assessment=small, procedure=CT_CHEST, study_date=STUDY, at=AT) is None


@pytest.mark.parametrize(
    "order", [seen(code="71250", modality=None, region=None), seen(), seen(modality="ct", region="Chest")]
)
def test_matching_order_closes_the_recommendation(rec, order):
    changed = close(rec, order, at=AT)
    assert changed.previous_state is RecommendationState.PROPOSED
    assert changed.recommendation.state is RecommendationState.CLOSED
    assert changed.recommendation.closed_by == "ServiceRequest/o1"


@pytest.mark.parametrize(
    "order",
    [
        seen(patient="p2"),
        seen(modality="MR"),
        seen(region="head"),
        seen(on=date(2026, 3, 30)),
        seen(code="70450", modality="CT", region="head"),
    ],
)
def test_order_for_another_patient_procedure_or_earlier_date_does_not_close_it(rec, order):
    assert close_matching([rec], order, at=AT) == []
    with pytest.raises(InvalidTransition, match="does not fulfil"):
        close(rec, order, at=AT)


@pytest.mark.parametrize(("today", "overdue"), [(date(2027, 3, 31), False), (date(2027, 4, 1), True)])
def test_recommendation_becomes_overdue_the_day_after_its_due_date(rec, today, overdue):
    changed = mark_overdue(rec, today=today, at=AT)
    assert (changed is not None) is overdue
    if overdue:
        assert changed.recommendation.state is RecommendationState.OVERDUE


def test_overdue_recommendation_is_still_closed_by_a_late_order(rec):
    overdue = mark_overdue(rec, today=date(2027, 5, 1), at=AT).recommendation
    assert mark_overdue(overdue, today=date(2027, 6, 1), at=AT) is None  # already overdue: no new event
    changed = close(overdue, seen(on=date(2027, 5, 2)), at=AT)
    assert changed.previous_state is RecommendationState.OVERDUE
    assert changed.recommendation.state is RecommendationState.CLOSED


def test_cancel_needs_a_reason_and_records_who(rec):
    with pytest.raises(InvalidTransition, match="needs a reason"):
        cancel(rec, reason=" ", by="Practitioner/1", at=AT)
    changed = cancel(rec, reason="patient enrolled in screening programme", by="Practitioner/1", at=AT)
    assert changed.recommendation.state is RecommendationState.CANCELLED
    assert changed.recommendation.changed_by == "Practitioner/1"


def test_final_states_stay_final(rec):
    closed = close(rec, seen(), at=AT).recommendation
    with pytest.raises(InvalidTransition, match="it is closed"):
        cancel(closed, reason="x", by="Practitioner/1", at=AT)
    cancelled = cancel(rec, reason="x", by="Practitioner/1", at=AT).recommendation
    with pytest.raises(InvalidTransition, match="it is cancelled"):
        close(cancelled, seen(), at=AT)
    assert close_matching([closed, cancelled], seen(), at=AT) == []
    assert mark_overdue(cancelled, today=date(2030, 1, 1), at=AT) is None


@pytest.mark.parametrize(
    ("start", "months", "expected"),
    [
        (date(2026, 1, 31), 1, date(2026, 2, 28)),
        (date(2026, 11, 15), 3, date(2027, 2, 15)),
        (date(2026, 1, 1), 0.5, date(2026, 1, 16)),
        (date(2026, 1, 1), 0, date(2026, 1, 1)),
    ],
)
def test_add_months_clamps_to_the_month_end(start, months, expected):
    assert add_months(start, months) == expected


@pytest.mark.parametrize(
    ("ehr_id", "identifier", "mrn_system", "patient", "same"),
    [
        ("ehr-7", "MRN-1", "urn:mrn", EhrPatient("ehr-7"), True),  # the EHR id fusion recorded
        ("ehr-7", "MRN-1", "urn:mrn", EhrPatient("ehr-8", frozenset({("urn:mrn", "MRN-1")})), False),  # recorded wins
        (None, "MRN-1", "urn:mrn", EhrPatient("ehr-8", frozenset({("urn:mrn", "MRN-1")})), True),  # the MRN
        (None, "MRN-1", "urn:mrn", EhrPatient("ehr-8", frozenset({("urn:other", "MRN-1")})), False),  # other authority
        (None, "MRN-1", None, EhrPatient("ehr-8", frozenset({("urn:mrn", "MRN-1")})), False),  # no MRN system known
        (None, None, "urn:mrn", EhrPatient("ehr-8", frozenset({("urn:mrn", "MRN-1")})), False),  # no MRN recorded
        (None, "MRN-1", "urn:mrn", EhrPatient("ehr-8"), False),  # no identifiers sent
    ],
    ids=["ehr-id", "other-ehr-id", "mrn", "other-authority", "no-mrn-system", "no-identifier", "no-identifiers"],
)
def test_ehr_patient_is_the_recommendations_patient_only_by_recorded_ehr_id_or_mrn_in_the_mrn_system(
    rec, ehr_id, identifier, mrn_system, patient, same
):
    made_for = replace(rec, ehr_patient_id=ehr_id, patient_identifier=identifier)
    assert is_patient_of(made_for, patient, mrn_system=mrn_system) is same
