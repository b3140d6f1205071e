"""Lung-RADS v2022 as encoded in knowledge/guidelines/lung-rads-v2022.json: every category at both sides of each
size threshold (mean diameter to 0.1 mm), growth, stepped management, category 0, 4X and the S modifier."""

from __future__ import annotations

import pytest

from radcds_fusion.domain.guidelines import NoduleInput, NoduleStatus, PatientContext, assess
from radcds_fusion.domain.nodules import Composition, Feature, Nodule
from radcds_fusion.knowledge import load_guidelines

SOLID, PART, GGN = Composition.SOLID, Composition.PART_SOLID, Composition.GROUND_GLASS
BASE, NEW, GROW, STABLE = NoduleStatus.BASELINE, NoduleStatus.NEW, NoduleStatus.GROWING, NoduleStatus.STABLE
SCREEN = PatientContext(age_years=64, screening=True)


@pytest.fixture(scope="module")
def lung_rads():
    return load_guidelines()["lung-rads-v2022"]


def category(guideline, d, comp=SOLID, status=BASE, solid=None, features=(), prior=None, flags=frozenset()):
    nodule = Nodule(comp, d, d, solid_component_mm=solid, features=frozenset(features))
    return assess(
        guideline, nodules=[NoduleInput(nodule, status, prior)], context=SCREEN, exam_flags=frozenset(flags)
    ).category


@pytest.mark.parametrize(
    ("d", "expected"),
    [(5.9, "2"), (6.0, "3"), (7.9, "3"), (8.0, "4A"), (14.9, "4A"), (15.0, "4B")],
)
def test_solid_baseline_thresholds(lung_rads, d, expected):
    assert category(lung_rads, d) == expected


@pytest.mark.parametrize(
    ("d", "expected"),
    [(3.9, "2"), (4.0, "3"), (5.9, "3"), (6.0, "4A"), (7.9, "4A"), (8.0, "4B")],
)
def test_solid_new_thresholds(lung_rads, d, expected):
    assert category(lung_rads, d, status=NEW) == expected


@pytest.mark.parametrize(("d", "expected"), [(7.9, "4A"), (8.0, "4B")])
def test_solid_growing_threshold(lung_rads, d, expected):
    assert category(lung_rads, d, status=GROW) == expected


def test_mean_diameter_is_rounded_to_one_decimal_before_the_threshold(lung_rads):
    # (6.1 + 5.8) / 2 = 5.95 -> 6.0 mm: category 3, not 2.
    nodule = Nodule(SOLID, 6.1, 5.8)
    result = assess(lung_rads, nodules=[NoduleInput(nodule)], context=SCREEN)
    assert result.category == "3"
    assert result.nodules[0].size_used == "mean diameter 6 mm (from 5.95 mm)"


@pytest.mark.parametrize(
    ("d", "solid", "status", "expected"),
    [
        (5.9, None, BASE, "2"),
        (6.0, 5.9, BASE, "3"),
        (6.0, 6.0, BASE, "4A"),
        (9.0, 7.9, BASE, "4A"),
        (9.0, 8.0, BASE, "4B"),
        (5.9, None, NEW, "3"),
        (6.0, 3.9, NEW, "4A"),
        (6.0, 4.0, NEW, "4B"),
        (7.0, 3.9, GROW, "4A"),
        (7.0, 4.0, GROW, "4B"),
    ],
)
def test_part_solid_thresholds(lung_rads, d, solid, status, expected):
    assert category(lung_rads, d, PART, status, solid) == expected


@pytest.mark.parametrize(
    ("d", "status", "expected"),
    [(29.9, BASE, "2"), (30.0, BASE, "3"), (29.9, NEW, "2"), (30.0, NEW, "3"), (30.0, STABLE, "2")],
)
def test_ground_glass_thresholds(lung_rads, d, status, expected):
    assert category(lung_rads, d, GGN, status) == expected


@pytest.mark.parametrize(("d", "expected"), [(9.9, "2"), (10.0, "4A")])
def test_juxtapleural_solid_nodule_under_10_mm_is_category_2(lung_rads, d, expected):
    assert category(lung_rads, d, features=[Feature.JUXTAPLEURAL]) == expected


def test_no_nodule_is_category_1_with_annual_screening(lung_rads):
    result = assess(lung_rads, nodules=[], context=SCREEN)
    assert result.category == "1"
    assert result.outcome.follow_up.min_months == 12


def test_benign_calcification_is_category_1_whatever_the_size(lung_rads):
    assert category(lung_rads, 20.0, features=[Feature.BENIGN_CALCIFICATION_OR_FAT]) == "1"


def test_endobronchial_nodule_is_4a_and_4b_when_it_persists(lung_rads):
    assert category(lung_rads, 5.0, features=[Feature.ENDOBRONCHIAL]) == "4A"
    assert category(lung_rads, 5.0, status=STABLE, features=[Feature.ENDOBRONCHIAL], prior="4A") == "4B"


@pytest.mark.parametrize(("prior", "expected"), [("3", "2"), ("4A", "3")])
def test_stepped_management_downgrades_a_stable_nodule(lung_rads, prior, expected):
    assert category(lung_rads, 7.0, status=STABLE, prior=prior) == expected


def test_suspicious_features_upgrade_category_3_or_4_to_4x(lung_rads):
    assert category(lung_rads, 7.0, features=[Feature.SUSPICIOUS]) == "4X"
    assert category(lung_rads, 4.0, features=[Feature.SUSPICIOUS]) == "2"


@pytest.mark.parametrize("flag", ["incomplete", "infectious-inflammatory"])
def test_exam_level_findings_give_category_0(lung_rads, flag):
    assert category(lung_rads, 12.0, flags={flag}) == "0"


def test_significant_other_finding_adds_the_s_modifier(lung_rads):
    assert category(lung_rads, 7.0, flags={"significant-other-finding"}) == "3S"


def test_exam_category_is_the_most_suspicious_nodule(lung_rads):
    nodules = [NoduleInput(Nodule(SOLID, 5.0, 5.0)), NoduleInput(Nodule(SOLID, 16.0, 14.0))]
    assert assess(lung_rads, nodules=nodules, context=SCREEN).category == "4B"


def test_lung_rads_does_not_apply_outside_screening(lung_rads):
    result = assess(lung_rads, nodules=[NoduleInput(Nodule(SOLID, 7.0, 7.0))], context=PatientContext(screening=False))
    assert not result.applies
    assert result.not_applicable_reason == "applies to lung cancer screening CT only"


def test_every_category_has_its_management_interval(lung_rads):
    intervals = {
        b.outcome.category: (b.outcome.follow_up.min_months, b.outcome.follow_up.max_months)
        for b in lung_rads.branches
        if b.outcome.follow_up
    }
    assert intervals == {"1": (12, 12), "2": (12, 12), "3": (6, 6), "4A": (3, 3), "4B": (0, 1)}
