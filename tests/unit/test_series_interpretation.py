"""radcds_inference.domain.model_outputs.interpret_series: a series' model outputs → coded measurements, findings,
key slice.

Output rows are written by hand here (the models' numeric cores are tested on real images in
test_chest_ctr_model.py / test_head_ct_hyperdensity_model.py); the expected values are computed
in each test from the same rows.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from radcds.domain import codes
from radcds_inference.adapters.triton.manifest import load_manifest
from radcds_inference.domain.model_outputs import SeriesOutputs, interpret_series

MANIFEST = load_manifest(Path(__file__).resolve().parents[2] / "models")
CHEST = MANIFEST.entry("chest_ctr")
HEAD = MANIFEST.entry("head_ct_hyperdensity")
NAN = math.nan


def _values(result):
    return {m.code.code: m.value for m in result.measurements}


def test_chest_ctr_above_half_on_pa_is_cardiomegaly_not_critical():
    outputs = SeriesOutputs((0,), ((0.55, NAN, NAN, 220.0, 400.0),), ((300, 150, 310, 370, 200, 40, 440),), 4)
    result = interpret_series(CHEST, outputs, view_position="PA")
    assert result.findings == (codes.CARDIOMEGALY,) and result.critical is False
    assert _values(result) == {"cardiothoracic-ratio": 0.55}  # mm widths unknown (NaN) are left out
    assert result.location.points[0] == (300 * 4 + 2, 150 * 4 + 2)  # centre of the 4x4 block on the source grid


def test_chest_ctr_above_half_on_ap_is_not_cardiomegaly():
    outputs = SeriesOutputs((0,), ((0.55, NAN, NAN, 220.0, 400.0),), ((1, 1, 1, 1, 1, 1, 1),))
    assert interpret_series(CHEST, outputs, view_position="AP").findings == ()


def test_chest_lungs_not_found_is_not_analysed_with_the_reason():
    outputs = SeriesOutputs((1,), ((NAN,) * 5,), ((-1,) * 7,))
    result = interpret_series(CHEST, outputs, view_position="PA")
    assert result.not_analysed_reason == "not analysed: chest_ctr: lung fields not found"


def test_head_ct_slices_are_summed_and_the_largest_region_slice_is_key():
    rows = (
        (0, 0.0, 0.0, 0.0, NAN, NAN, 9000.0, 2),
        (1, 100.0, 500.0, 100.0, 80.0, 65.0, 9500.0, 0),
        (2, 60.0, 300.0, 40.0, 70.0, 60.0, 9200.0, 1),
    )
    outputs = SeriesOutputs((0, 0, 0), rows, ((-1, -1), (200, 210), (150, 160)))
    result = interpret_series(HEAD, outputs)
    values = _values(result)
    assert values["hyperdense-region-count"] == 3
    assert values["hyperdense-region-area"] == 160.0
    assert values["hyperdense-region-volume"] == 800.0
    assert values["hyperdense-largest-region-area"] == 100.0
    assert values["hyperdense-region-max-hu"] == 80.0
    assert values["hyperdense-region-mean-hu"] == pytest.approx((65.0 * 100 + 60.0 * 60) / 160, abs=1e-3)
    assert values["intracranial-area"] == 27700.0
    assert result.key_slice == 1 and result.location.points == ((200.0, 210.0),)
    assert result.findings == (codes.INTRACRANIAL_HEMORRHAGE,) and result.critical is True


def test_head_ct_without_regions_is_negative_and_has_no_hu_statistics():
    outputs = SeriesOutputs(
        (0, 0), ((0, 0, 0, 0, NAN, NAN, 100.0, 0), (0, 0, 0, 0, NAN, NAN, 300.0, 0)), ((-1, -1),) * 2
    )
    result = interpret_series(HEAD, outputs)
    assert result.findings == () and result.critical is False and result.location is None
    assert "hyperdense-region-max-hu" not in _values(result)
    assert result.key_slice == 1  # largest intracranial area


def test_head_ct_without_any_intracranial_area_is_not_analysed():
    outputs = SeriesOutputs((1,), ((0, 0, 0, 0, NAN, NAN, 0, 0),), ((-1, -1),))
    assert interpret_series(HEAD, outputs).not_analysed_reason.startswith("not analysed: head_ct_hyperdensity:")


def _head_location_row(centroid, box, outline):
    """A head_ct_hyperdensity LOCATIONS row (model card, "Interface"): centroid, box, 16 outline slots."""
    flat = [v for point in outline for v in point]
    return (*centroid, *box, *flat, *([-1] * (32 - len(flat))))


def test_head_ct_location_points_are_the_centroid_then_the_outline_in_order():
    rows = ((0, 0.0, 0.0, 0.0, NAN, NAN, 9000.0, 0), (1, 100.0, 500.0, 100.0, 80.0, 65.0, 9500.0, 0))
    outline = ((190, 205), (195, 220), (210, 218), (208, 200))
    locations = (
        _head_location_row((-1, -1), (-1,) * 4, ()),
        _head_location_row((200, 210), (190, 200, 210, 220), outline),
    )
    result = interpret_series(HEAD, SeriesOutputs((0, 0), rows, locations))
    assert result.location.points == ((200.0, 210.0), *((float(r), float(c)) for r, c in outline))
    assert result.location.description == (
        "largest region centred at (row, column) (200, 210) on slice 2 of 2, within rows 190-210 and columns "
        "200-220; points: the centre, then the 4 vertices of its outline (convex hull), clockwise as displayed"
    )


def test_head_ct_location_without_outline_vertices_gives_the_bounding_box_corners():
    rows = ((1, 100.0, 500.0, 100.0, 80.0, 65.0, 9500.0, 0),)
    locations = ((200, 210, 190, 200, 210, 220),)
    result = interpret_series(HEAD, SeriesOutputs((0,), rows, locations))
    assert result.location.points == ((200.0, 210.0), (190.0, 200.0), (190.0, 220.0), (210.0, 220.0), (210.0, 200.0))
    assert "the 4 corners of its bounding box" in result.location.description


def test_head_ct_location_on_a_downsampled_grid_maps_outline_to_source_block_centres():
    rows = ((1, 100.0, 500.0, 100.0, 80.0, 65.0, 9500.0, 0),)
    locations = (_head_location_row((50, 60), (45, 55, 55, 65), ((45, 60), (50, 65), (55, 60))),)
    result = interpret_series(HEAD, SeriesOutputs((0,), rows, locations, 2))
    assert result.location.points == ((101.0, 121.0), (91.0, 121.0), (101.0, 131.0), (111.0, 121.0))
