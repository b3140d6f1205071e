"""Fleischner Society 2017 (MacMahon et al., Radiology 2017;284:228-243, Table 1) as encoded in
knowledge/guidelines/fleischner-2017.json: every branch, both sides of every cut-point, applicability."""

from __future__ import annotations

import pytest

from radcds_fusion.domain.guidelines import NoduleInput, PatientContext, Risk, assess
from radcds_fusion.domain.nodules import Composition, Nodule
from radcds_fusion.knowledge import load_guidelines

SOLID, PART, GGN = Composition.SOLID, Composition.PART_SOLID, Composition.GROUND_GLASS


@pytest.fixture(scope="module")
def fleischner():
    return load_guidelines()["fleischner-2017"]


def ctx(risk: Risk | None = Risk.LOW, **kw):
    base = {"age_years": 60, "known_cancer": False, "immunosuppressed": False, "screening": False, "risk": risk}
    return PatientContext(**(base | kw))


def one(d: float, comp: Composition = SOLID, solid: float | None = None) -> list[NoduleInput]:
    return [NoduleInput(Nodule(comp, d, d, solid_component_mm=solid))]


def two(d: float, comp: Composition = SOLID) -> list[NoduleInput]:
    return [NoduleInput(Nodule(comp, d, d)), NoduleInput(Nodule(comp, 3.0, 3.0))]


@pytest.mark.parametrize(
    ("nodules", "risk", "branch", "months"),
    [
        (one(5.0), Risk.LOW, "solid-single-small-low-risk", None),
        (one(5.0), Risk.HIGH, "solid-single-small-high-risk", (12, 12)),
        (one(7.0), Risk.LOW, "solid-single-6-8-low-risk", (6, 12)),
        (one(7.0), Risk.HIGH, "solid-single-6-8-high-risk", (6, 12)),
        (one(10.0), Risk.LOW, "solid-single-large", (3, 3)),
        (one(10.0), Risk.HIGH, "solid-single-large", (3, 3)),
        (two(5.0), Risk.LOW, "solid-multiple-small-low-risk", None),
        (two(5.0), Risk.HIGH, "solid-multiple-small-high-risk", (12, 12)),
        (two(7.0), Risk.LOW, "solid-multiple-6-8-low-risk", (3, 6)),
        (two(7.0), Risk.HIGH, "solid-multiple-6-8-high-risk", (3, 6)),
        (two(10.0), Risk.LOW, "solid-multiple-large", (3, 6)),
        (one(5.0, GGN), Risk.LOW, "ground-glass-single-small", None),
        (one(7.0, GGN), Risk.LOW, "ground-glass-single-6-or-more", (6, 12)),
        (one(5.0, PART, 2.0), Risk.LOW, "part-solid-single-small", None),
        (one(8.0, PART, 4.0), Risk.LOW, "part-solid-single-6-or-more", (3, 6)),
        (one(9.0, PART, 6.0), Risk.LOW, "part-solid-single-solid-component-6-or-more", (3, 6)),
        (two(5.0, GGN), Risk.LOW, "subsolid-multiple-small", (3, 6)),
        (two(7.0, PART), Risk.LOW, "subsolid-multiple-6-or-more", (3, 6)),
    ],
)
def test_every_fleischner_branch_gives_its_recommendation(fleischner, nodules, risk, branch, months):
    result = assess(fleischner, nodules=nodules, context=ctx(risk))
    assert result.applies
    decided = max((r for r in result.nodules if r.outcome), key=lambda r: r.outcome.rank)
    assert decided.branch_id == branch
    follow_up = result.outcome.follow_up
    assert (None if follow_up is None else (follow_up.min_months, follow_up.max_months)) == months


def test_every_branch_of_the_data_is_exercised_by_the_branch_table(fleischner):
    ids = {b.id for b in fleischner.branches}
    tested = {row[2] for row in test_every_fleischner_branch_gives_its_recommendation.pytestmark[0].args[1]}
    assert ids == tested


@pytest.mark.parametrize(
    ("diameter", "branch"),
    [
        # Size is the mean diameter rounded to the nearest mm: the < 6 / 6-8 cut is at 5.5 mm measured.
        (5.4, "solid-single-small-low-risk"),
        (5.5, "solid-single-6-8-low-risk"),
        (5.9, "solid-single-6-8-low-risk"),
        (6.0, "solid-single-6-8-low-risk"),
        # The 6-8 / > 8 cut is at 8.5 mm measured.
        (7.9, "solid-single-6-8-low-risk"),
        (8.0, "solid-single-6-8-low-risk"),
        (8.4, "solid-single-6-8-low-risk"),
        (8.5, "solid-single-large"),
    ],
)
def test_solid_nodule_size_bands_on_both_sides_of_each_cut_point(fleischner, diameter, branch):
    result = assess(fleischner, nodules=one(diameter), context=ctx())
    assert result.nodules[0].branch_id == branch


def test_mean_of_long_and_short_axis_decides_the_band(fleischner):
    # 7 x 4 mm: mean 5.5 -> 6 mm (6-8 band); the long axis alone would say 7, the short axis 4.
    result = assess(fleischner, nodules=[NoduleInput(Nodule(SOLID, 7.0, 4.0))], context=ctx())
    assert result.nodules[0].branch_id == "solid-single-6-8-low-risk"
    assert result.nodules[0].size_used == "mean diameter 6 mm (from 5.5 mm)"


@pytest.mark.parametrize(
    ("volume", "branch"),
    [
        (99.0, "solid-single-small-low-risk"),
        (100.0, "solid-single-6-8-low-risk"),
        (250.0, "solid-single-6-8-low-risk"),
        (251.0, "solid-single-large"),
    ],
)
def test_volume_bands_apply_when_no_diameter_was_measured(fleischner, volume, branch):
    result = assess(fleischner, nodules=[NoduleInput(Nodule(SOLID, volume_mm3=volume))], context=ctx())
    assert result.nodules[0].branch_id == branch


@pytest.mark.parametrize(
    ("solid", "branch"),
    [(5.4, "part-solid-single-6-or-more"), (5.5, "part-solid-single-solid-component-6-or-more")],
)
def test_part_solid_solid_component_cut_point(fleischner, solid, branch):
    result = assess(fleischner, nodules=one(9.0, PART, solid), context=ctx())
    assert result.nodules[0].branch_id == branch


@pytest.mark.parametrize(
    ("diameter", "branch"), [(5.4, "ground-glass-single-small"), (5.5, "ground-glass-single-6-or-more")]
)
def test_ground_glass_cut_point(fleischner, diameter, branch):
    assert assess(fleischner, nodules=one(diameter, GGN), context=ctx()).nodules[0].branch_id == branch


@pytest.mark.parametrize(("age", "applies"), [(34, False), (35, True)])
def test_fleischner_does_not_apply_under_35_years(fleischner, age, applies):
    result = assess(fleischner, nodules=one(7.0), context=ctx(age_years=age))
    assert result.applies is applies
    if not applies:
        assert result.not_applicable_reason == "does not apply to patients younger than 35 years"
        assert result.outcome is None


@pytest.mark.parametrize(
    ("context", "reason"),
    [
        ({"known_cancer": True}, "does not apply to patients with a known cancer (possible metastases)"),
        ({"immunosuppressed": True}, "does not apply to immunosuppressed patients (infection risk)"),
        ({"screening": True}, "does not apply to lung cancer screening (Lung-RADS applies)"),
    ],
)
def test_fleischner_says_why_it_does_not_apply(fleischner, context, reason):
    result = assess(fleischner, nodules=one(7.0), context=ctx(**context))
    assert not result.applies
    assert result.not_applicable_reason == reason


def test_unknown_risk_applies_high_risk_management_and_names_what_is_missing(fleischner):
    result = assess(fleischner, nodules=one(7.0), context=ctx(risk=None, age_years=None, known_cancer=None))
    assert result.applies
    assert result.nodules[0].branch_id == "solid-single-6-8-high-risk"
    assert result.assumptions == ("smoking history and other risk factors unknown: high-risk management applied",)
    assert set(result.missing) == {
        "patient age",
        "known cancer (not documented)",
        "smoking history and other lung cancer risk factors",
    }


def test_multiple_nodules_are_managed_by_the_most_suspicious_one(fleischner):
    nodules = [NoduleInput(Nodule(SOLID, 4.0, 4.0)), NoduleInput(Nodule(SOLID, 11.0, 9.0))]
    result = assess(fleischner, nodules=nodules, context=ctx())
    assert [r.branch_id for r in result.nodules] == ["solid-multiple-small-low-risk", "solid-multiple-large"]
    assert result.outcome.recommendation == "CT at 3-6 months, then consider CT at 18-24 months."
