"""Comparison with priors: every change state, matching by code/site/location, VDT from two measurements."""

from __future__ import annotations

import math
from datetime import date

import pytest

from radcds_fusion.domain.comparison import (
    Change,
    MeasuredFinding,
    compare,
    match_and_compare,
    volume_doubling_time_days,
)
from radcds_fusion.domain.guidelines import NoduleStatus
from radcds_fusion.domain.nodules import Composition, Nodule

NODULE = "427359005"  # SNOMED CT: solitary nodule of lung
CTR = "cardiothoracic-ratio"


def nodule(d: float, day: date, pos=(0.0, 0.0, 0.0), site="right upper lobe") -> MeasuredFinding:
    return MeasuredFinding(NODULE, site, day, position_mm=pos, nodule=Nodule(Composition.SOLID, d, d))


PRIOR = date(2026, 1, 15)
NOW = date(2026, 7, 14)  # 180 days later


def test_nodule_from_6_to_8_mm_in_180_days_increased_with_its_volume_doubling_time():
    result = compare(nodule(8.0, NOW), nodule(6.0, PRIOR))
    assert result.change is Change.INCREASED
    assert result.delta == pytest.approx(2.0)
    assert result.interval_days == 180
    # Spheres: V2/V1 = (8/6)^3, so VDT = 180 ln2 / (3 ln(4/3)) = 144.6 days.
    assert result.volume_doubling_time_days == pytest.approx(180 * math.log(2) / (3 * math.log(4 / 3)))
    assert round(result.volume_doubling_time_days) == 145
    assert result.nodule_status is NoduleStatus.GROWING


def test_vdt_uses_measured_volumes_when_present():
    v1 = MeasuredFinding(NODULE, "rul", PRIOR, nodule=Nodule(Composition.SOLID, volume_mm3=150.0))
    v2 = MeasuredFinding(NODULE, "rul", NOW, nodule=Nodule(Composition.SOLID, volume_mm3=300.0))
    result = compare(v2, v1)
    assert result.volume_doubling_time_days == pytest.approx(180.0)
    assert result.change is Change.INCREASED


@pytest.mark.parametrize(
    ("before", "after", "change"),
    [(6.0, 7.5, Change.STABLE), (6.0, 7.6, Change.INCREASED), (7.5, 6.0, Change.STABLE), (7.6, 6.0, Change.DECREASED)],
)
def test_nodule_within_1_5_mm_is_stable(before, after, change):
    assert compare(nodule(after, NOW), nodule(before, PRIOR)).change is change


def test_growth_over_more_than_12_months_is_not_lung_rads_growth():
    result = compare(nodule(8.0, date(2027, 7, 14)), nodule(6.0, PRIOR))
    assert result.change is Change.INCREASED
    assert result.nodule_status is NoduleStatus.STABLE


def test_decreasing_nodule_has_status_decreasing_and_negative_vdt():
    result = compare(nodule(5.0, NOW), nodule(7.0, PRIOR))
    assert result.nodule_status is NoduleStatus.DECREASING
    assert result.volume_doubling_time_days < 0


def test_scalar_measurement_compared_with_the_given_tolerance():
    ctr_now = MeasuredFinding(CTR, "chest", NOW, value=0.47)
    ctr_prior = MeasuredFinding(CTR, "chest", PRIOR, value=0.44)
    assert compare(ctr_now, ctr_prior, tolerance=0.02).change is Change.INCREASED
    assert compare(ctr_now, ctr_prior, tolerance=0.05).change is Change.STABLE
    with pytest.raises(ValueError, match="no tolerance"):
        compare(ctr_now, ctr_prior)


def test_matching_pairs_nearest_nodule_and_reports_new_and_resolved():
    priors = [nodule(6.0, PRIOR, (10, 10, 10)), nodule(4.0, PRIOR, (80, 0, 0)), nodule(5.0, PRIOR, (0, 0, 0), "lll")]
    current = [nodule(8.0, NOW, (12, 9, 10)), nodule(4.2, NOW, (79, 1, 0)), nodule(3.0, NOW, (0, 0, 0), "rml")]
    results = match_and_compare(current, priors)
    by_change = {(r.change, (r.current or r.prior).body_site) for r in results}
    assert by_change == {
        (Change.INCREASED, "right upper lobe"),
        (Change.STABLE, "right upper lobe"),
        (Change.NEW, "rml"),
        (Change.RESOLVED, "lll"),
    }
    increased = next(r for r in results if r.change is Change.INCREASED)
    assert increased.prior.nodule.long_axis_mm == 6.0


def test_only_the_latest_prior_study_is_compared():
    older = nodule(5.0, date(2025, 1, 1))
    latest = nodule(6.0, PRIOR)
    (result,) = match_and_compare([nodule(6.5, NOW)], [older, latest])
    assert result.prior is latest
    assert result.change is Change.STABLE


def test_no_change_in_volume_has_no_doubling_time():
    assert volume_doubling_time_days(100.0, 100.0, 90) is None
    with pytest.raises(ValueError, match="positive"):
        volume_doubling_time_days(0.0, 100.0, 90)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"long_axis_mm": -1.0},
        {"long_axis_mm": 4.0, "short_axis_mm": 5.0},
        {"short_axis_mm": 4.0},
        {},
        {"long_axis_mm": 6.0, "solid_component_mm": 3.0},
        {"long_axis_mm": float("nan")},
    ],
)
def test_impossible_nodule_measurements_are_refused(kwargs):
    with pytest.raises(ValueError, match=r"must be a positive number|short axis|needs a diameter|solid component"):
        Nodule(Composition.SOLID, **kwargs)


def test_clinical_context_gives_age_on_the_study_date_and_fleischner_risk():
    from radcds_fusion.domain.context import ClinicalContext, SmokingStatus
    from radcds_fusion.domain.guidelines import Risk

    ctx = ClinicalContext(birth_date=date(1991, 7, 15), smoking_status=SmokingStatus.FORMER, pack_years=30)
    assert ctx.age_on(date(2026, 7, 14)) == 34
    assert ctx.age_on(date(2026, 7, 15)) == 35
    guideline_ctx = ctx.for_guidelines(study_date=date(2026, 7, 15), screening=False)
    assert guideline_ctx.age_years == 35
    assert guideline_ctx.risk is Risk.HIGH
    assert (
        ClinicalContext(smoking_status=SmokingStatus.NEVER).for_guidelines(study_date=NOW, screening=None).risk
        is Risk.LOW
    )
    assert ClinicalContext().for_guidelines(study_date=NOW, screening=None).risk is None


@pytest.mark.parametrize(
    ("area", "change"), [(133.0, Change.STABLE), (134.0, Change.INCREASED), (66.0, Change.DECREASED)]
)
def test_relative_tolerance_compares_by_fraction_of_the_prior(area, change):
    prior = MeasuredFinding("1386000", "brain", PRIOR, value=100.0)
    now = MeasuredFinding("1386000", "brain", NOW, value=area)
    assert compare(now, prior, relative_tolerance=0.33).change is change
