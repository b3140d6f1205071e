"""Unit tests for radcds_inference.domain.envelope: which series a model runs on, and why not."""

from __future__ import annotations

import pytest

from radcds_inference.domain.envelope import (
    Decision,
    ModelEnvelope,
    Range,
    SeriesAttributes,
    assess,
    patient_age_years,
)

CHEST = ModelEnvelope(
    modalities=frozenset({"CR", "DX"}),
    body_parts=frozenset({"CHEST"}),
    view_positions=frozenset({"PA"}),
    patient_age_years=Range(18, None),
    allow_unknown=frozenset({"patient_age"}),
)
HEAD = ModelEnvelope(
    modalities=frozenset({"CT"}),
    body_parts=frozenset({"HEAD", "BRAIN"}),
    slice_thickness_mm=Range(2.5, 5.0),
    patient_age_years=Range(18, None),
    allow_unknown=frozenset({"body_part"}),
)


def test_pa_chest_adult_runs() -> None:
    assert assess("chest_ctr", CHEST, SeriesAttributes("CR", "CHEST", "PA", patient_age_years=64)).run


@pytest.mark.parametrize("view", ["AP", "LL", "RL"])
def test_ap_or_lateral_chest_is_not_analysed_with_view_reason(view: str) -> None:
    decision = assess("chest_ctr", CHEST, SeriesAttributes("DX", "CHEST", view))
    assert decision.decision is Decision.NOT_ANALYSED
    assert decision.reason == f"not analysed: chest_ctr: view position {view} is outside the validated envelope (PA)"


def test_chest_without_view_position_is_not_analysed() -> None:
    decision = assess("chest_ctr", CHEST, SeriesAttributes("CR", "CHEST", ""))
    assert decision.decision is Decision.NOT_ANALYSED
    assert "View Position (0018,5101) is absent" in decision.reason


def test_child_chest_is_not_analysed_with_age_reason() -> None:
    decision = assess("chest_ctr", CHEST, SeriesAttributes("CR", "CHEST", "PA", patient_age_years=7))
    assert decision.reason == (
        "not analysed: chest_ctr: patient age 7 years is outside the validated envelope (at least 18 years)"
    )


def test_unknown_age_runs_only_when_allowed() -> None:
    assert assess("chest_ctr", CHEST, SeriesAttributes("CR", "CHEST", "PA")).run
    decision = assess("head", HEAD, SeriesAttributes("CT", "HEAD", slice_thickness_mm=5.0))
    assert decision.decision is Decision.NOT_ANALYSED
    assert "patient age is unknown" in decision.reason


@pytest.mark.parametrize(("thickness", "runs"), [(1.0, False), (2.5, True), (5.0, True), (10.0, False)])
def test_ct_slice_thickness_outside_range_is_not_analysed(thickness: float, runs: bool) -> None:
    series = SeriesAttributes("CT", "HEAD", slice_thickness_mm=thickness, patient_age_years=40)
    decision = assess("head", HEAD, series)
    assert decision.run is runs
    if not runs:
        assert decision.reason.startswith(f"not analysed: head: slice thickness {thickness:g} mm is outside")


def test_ct_without_slice_thickness_is_not_analysed() -> None:
    decision = assess("head", HEAD, SeriesAttributes("CT", "HEAD", patient_age_years=40))
    assert "Slice Thickness (0018,0050) is absent" in decision.reason


def test_other_modality_or_body_part_is_not_applicable() -> None:
    assert assess("chest_ctr", CHEST, SeriesAttributes("CT", "CHEST")).decision is Decision.NOT_APPLICABLE
    assert assess("head", HEAD, SeriesAttributes("CT", "ABDOMEN", "", 5.0, 40)).decision is Decision.NOT_APPLICABLE


def test_absent_body_part_runs_when_allowed_and_is_not_analysed_otherwise() -> None:
    assert assess("head", HEAD, SeriesAttributes("CT", "", slice_thickness_mm=5.0, patient_age_years=40)).run
    decision = assess("chest_ctr", CHEST, SeriesAttributes("CR", "", "PA"))
    assert decision.decision is Decision.NOT_ANALYSED
    assert "Body Part Examined (0018,0015) is absent" in decision.reason


def test_attribute_values_compare_case_and_space_insensitively() -> None:
    assert assess("chest_ctr", CHEST, SeriesAttributes("cr ", "chest", "pa ")).run


@pytest.mark.parametrize(
    ("age", "birth", "study", "years"),
    [
        ("064Y", "", "", 64.0),
        ("006M", "", "", 0.5),
        ("", "19400305", "20040826", 64.0),
        ("", "19400905", "20040826", 63.0),
        ("", "", "20040826", None),
        ("64", "", "", None),
    ],
)
def test_patient_age_from_age_string_or_dates(age: str, birth: str, study: str, years: float | None) -> None:
    assert patient_age_years(age, birth, study) == years


def test_invalid_envelope_is_refused() -> None:
    with pytest.raises(ValueError, match="minimum"):
        Range(5, 1)
    with pytest.raises(ValueError, match="modality"):
        ModelEnvelope(modalities=frozenset())
    with pytest.raises(ValueError, match="allow_unknown"):
        ModelEnvelope(modalities=frozenset({"CT"}), allow_unknown=frozenset({"weight"}))
