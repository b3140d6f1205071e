"""Unit tests for radcds_inference.domain.model_outputs: model output vectors to coded measurements and findings."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from radcds.domain import codes
from radcds_inference.adapters.triton.manifest import load_manifest
from radcds_inference.domain.model_outputs import cardiomegaly_present, coded_measurements, hemorrhage_candidate

MODELS = Path(__file__).resolve().parents[2] / "models"


def test_chest_outputs_with_spacing_give_three_coded_measurements() -> None:
    entry = load_manifest(MODELS).entry("chest_ctr")
    measurements = coded_measurements(entry.measurements, [0.4674, 137.6, 294.4, 172.0, 368.0])
    assert [(m.code, m.value, m.unit) for m in measurements] == [
        (codes.CARDIOTHORACIC_RATIO, 0.467, "{ratio}"),
        (codes.CARDIAC_WIDTH, 137.6, "mm"),
        (codes.THORACIC_WIDTH, 294.4, "mm"),
    ]


def test_chest_outputs_without_spacing_keep_only_the_ratio() -> None:
    entry = load_manifest(MODELS).entry("chest_ctr")
    measurements = coded_measurements(entry.measurements, [0.4674, math.nan, math.nan, 172.0, 368.0])
    assert [m.code for m in measurements] == [codes.CARDIOTHORACIC_RATIO]


def test_negative_head_ct_outputs_leave_out_nan_hu_statistics() -> None:
    entry = load_manifest(MODELS).entry("head_ct_hyperdensity")
    values = [0.0, 0.0, 0.0, 0.0, math.nan, math.nan, 12568.35, 10.0]
    measured = {m.code for m in coded_measurements(entry.measurements, values)}
    assert codes.HYPERDENSE_MAX_HU not in measured
    assert codes.HYPERDENSE_REGION_COUNT in measured
    assert codes.BRAIN_AREA in measured


def test_output_vector_shorter_than_the_manifest_is_refused() -> None:
    entry = load_manifest(MODELS).entry("chest_ctr")
    with pytest.raises(ValueError, match="outside a vector"):
        coded_measurements(entry.measurements, [0.5])


@pytest.mark.parametrize(
    ("ratio", "view", "present"),
    [(0.51, "PA", True), (0.50, "PA", False), (0.467, "PA", False), (0.6, "AP", False), (0.6, "LL", False)],
)
def test_cardiomegaly_only_above_half_on_pa(ratio: float, view: str, present: bool) -> None:
    assert cardiomegaly_present(ratio, view_position=view) is present


def test_hemorrhage_candidate_when_any_slice_has_a_region() -> None:
    assert hemorrhage_candidate([0, 0, 1])
    assert not hemorrhage_candidate([0, 0])
