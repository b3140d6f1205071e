"""Unit tests for models/head_ct_hyperdensity/1/model.py, without Triton.

Real image: 693_UNCI.dcm from pydicom-data 1.0.0 (a CQ500 head CT slice, 512 x 512, 0.478516 mm,
5 mm, rescale -1024/1), prepared in HU by radcds_inference.adapters.dicom.preprocess. It must come out
negative. Every positive case below is DERIVED from that real slice by inserting a region of
stated density and size inside the brain; each test's docstring says so. Reference values
(area, HU statistics, centroid) are computed here from the inserted pixels by hand.
"""

from __future__ import annotations

import types
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pydicom
import pytest
from pydicom.data import get_testdata_file

from radcds_devstack.testing import model_code
from radcds_inference.adapters.dicom.preprocess import prepare_series
from radcds_inference.domain.envelope import PreprocessingSpec

MODEL_PATH = Path(__file__).resolve().parents[2] / "models" / "head_ct_hyperdensity" / "1" / "model.py"
SPACING = (0.478516, 0.478516, 5.0)
PIXEL_MM2 = SPACING[0] * SPACING[1]


def _load_model_module() -> types.ModuleType:
    return model_code(MODEL_PATH.parents[2], "head_ct_hyperdensity")


model = _load_model_module()


@pytest.fixture(scope="module")
def head_slice() -> npt.NDArray[np.int16]:
    path = get_testdata_file("693_UNCI.dcm")
    assert path is not None, "pydicom-data is not installed"
    series = prepare_series([pydicom.dcmread(path)], PreprocessingSpec(max_size=0, invert_monochrome1=False))
    assert series.pixel_spacing_mm == SPACING[:2]
    assert series.slice_thickness_mm == SPACING[2]
    return series.pixels[0]


def _disc(centre: tuple[int, int], radius_mm: float) -> npt.NDArray[np.bool_]:
    rows, columns = np.ogrid[:512, :512]
    return ((rows - centre[0]) * SPACING[0]) ** 2 + ((columns - centre[1]) * SPACING[1]) ** 2 <= radius_mm**2


def _insert(
    hu: npt.NDArray[np.int16], disc: npt.NDArray[np.bool_], low: int, high: int, seed: int = 693
) -> npt.NDArray[np.int16]:
    derived = hu.copy()
    derived[disc] = np.random.default_rng(seed).integers(low, high + 1, size=int(disc.sum()), dtype=np.int16)
    return derived


def test_real_head_ct_slice_is_negative(head_slice: npt.NDArray[np.int16]) -> None:
    result = model.find_hyperdensities(head_slice, SPACING)
    assert result.status == model.STATUS_MEASURED
    assert result.region_count == 0
    assert result.total_area_mm2 == 0.0
    # Lossy-compression ringing at the inner table gives 50..90 HU blobs: rejected, not reported.
    assert result.rejected_region_count > 0
    # A supratentorial adult slice: 80 to 200 cm2 inside the skull.
    assert 8000 < result.brain_area_mm2 < 20000


def test_real_head_ct_slice_intracranial_area_matches_reference_flood_fill(head_slice: npt.NDArray[np.int16]) -> None:
    result = model.find_hyperdensities(head_slice, SPACING)
    # Reference: breadth-first flood fill of non-bone pixels from the image centre.
    non_bone = head_slice <= model.BONE_HU
    seen = np.zeros_like(non_bone)
    stack = [(256, 256)]
    seen[256, 256] = True
    while stack:
        r, c = stack.pop()
        for dr, dc in ((1, 0), (-1, 0), (0, 1), (0, -1)):
            nr, nc = r + dr, c + dc
            if 0 <= nr < 512 and 0 <= nc < 512 and non_bone[nr, nc] and not seen[nr, nc]:
                seen[nr, nc] = True
                stack.append((nr, nc))
    assert result.brain_area_mm2 == pytest.approx(float(seen.sum()) * PIXEL_MM2)


def test_derived_disc_of_acute_blood_density_is_found_and_measured(head_slice: npt.NDArray[np.int16]) -> None:
    """DERIVED from 693_UNCI.dcm: a disc of radius 7 mm at (260, 250) with HU uniform in 60..76."""
    disc = _disc((260, 250), 7.0)
    derived = _insert(head_slice, disc, 60, 76)
    result = model.find_hyperdensities(derived, SPACING)
    assert result.region_count == 1
    inserted_area = float(disc.sum()) * PIXEL_MM2  # 154.1 mm2
    assert result.total_area_mm2 == pytest.approx(inserted_area, rel=0.1)
    assert result.total_volume_mm3 == pytest.approx(result.total_area_mm2 * 5.0)
    overlap = 2 * float((result.regions & disc).sum()) / float(result.regions.sum() + disc.sum())
    assert overlap > 0.9
    assert result.max_hu == float(derived[result.regions].max())
    assert result.mean_hu == pytest.approx(sum(float(v) for v in derived[result.regions]) / result.regions.sum())
    assert 60 <= result.mean_hu <= 76
    assert result.centroid == (260, 250)


def test_derived_disc_outline_is_its_bounding_box_and_a_hull_inside_the_region(
    head_slice: npt.NDArray[np.int16],
) -> None:
    """DERIVED from 693_UNCI.dcm: a disc of radius 7 mm at (260, 250) with HU uniform in 60..76."""
    disc = _disc((260, 250), 7.0)
    result = model.find_hyperdensities(_insert(head_slice, disc, 60, 76), SPACING)
    rows, columns = np.nonzero(result.regions)
    assert result.bounding_box == (rows.min(), columns.min(), rows.max(), columns.max())
    # The disc spans 7 / 0.478516 = 14.6 pixels either side of its centre.
    assert result.bounding_box == pytest.approx((260 - 14, 250 - 14, 260 + 14, 250 + 14), abs=1)
    outline = result.outline
    assert 8 <= len(outline) <= model.MAX_OUTLINE_POINTS
    assert all(result.regions[r, c] for r, c in outline)  # vertices are pixel centres of the region
    assert outline[0] == min(outline)  # starts at the top-most vertex
    # Clockwise as displayed: the shoelace sum with x = column, y = row (downwards) is positive.
    shoelace = sum(a[1] * b[0] - b[1] * a[0] for a, b in zip(outline, outline[1:] + outline[:1], strict=True))
    assert shoelace > 0
    # The reduced hull keeps most of the region: its area (shoelace / 2) is within 15% of the disc's.
    assert shoelace / 2 == pytest.approx(float(disc.sum()), rel=0.15)
    locations = result.locations().tolist()
    assert len(locations) == len(model.LOCATION_NAMES)
    assert locations[:6] == [260, 250, *result.bounding_box]
    assert locations[6 : 6 + 2 * len(outline)] == [v for point in outline for v in point]
    assert set(locations[6 + 2 * len(outline) :]) <= {-1}


def test_convex_hull_of_a_rectangle_is_its_four_corners_clockwise_from_top_left() -> None:
    points = [(r, c) for r in range(2, 6) for c in range(3, 10)]
    assert model.convex_hull(points) == [(2, 3), (2, 9), (5, 9), (5, 3)]


def test_reduce_polygon_drops_the_vertex_that_loses_least_area_first() -> None:
    # A square with one vertex bulging out by one pixel from its top edge: that vertex goes first.
    square = [(0, 0), (-1, 5), (0, 10), (10, 10), (10, 0)]
    assert model.reduce_polygon(square, 4) == [(0, 0), (0, 10), (10, 10), (10, 0)]


def test_derived_two_discs_are_counted_and_the_larger_is_located(head_slice: npt.NDArray[np.int16]) -> None:
    """DERIVED from 693_UNCI.dcm: discs of 4 mm at (230, 300) and 6 mm at (300, 220), HU 62..80."""
    small, large = _disc((230, 300), 4.0), _disc((300, 220), 6.0)
    derived = _insert(_insert(head_slice, small, 62, 80, seed=1), large, 62, 80, seed=2)
    result = model.find_hyperdensities(derived, SPACING)
    assert result.region_count == 2
    assert result.centroid == (300, 220)
    assert result.largest_region_area_mm2 == pytest.approx(float(large.sum()) * PIXEL_MM2, rel=0.1)


def test_derived_region_below_minimum_size_is_ignored_until_the_minimum_is_lowered(
    head_slice: npt.NDArray[np.int16],
) -> None:
    """DERIVED from 693_UNCI.dcm: a disc of radius 2 mm (12.6 mm2) at (260, 250), HU 65..75."""
    derived = _insert(head_slice, _disc((260, 250), 2.0), 65, 75)
    assert model.find_hyperdensities(derived, SPACING).region_count == 0
    lowered = model.Parameters(min_region_area_mm2=5.0)
    assert model.find_hyperdensities(derived, SPACING, lowered).region_count == 1


def test_derived_calcification_density_disc_is_not_reported(head_slice: npt.NDArray[np.int16]) -> None:
    """DERIVED from 693_UNCI.dcm: a disc of radius 5 mm at (260, 250) with HU 150..200 (calcium, not blood)."""
    derived = _insert(head_slice, _disc((260, 250), 5.0), 150, 200)
    assert model.find_hyperdensities(derived, SPACING).region_count == 0


def test_derived_brain_density_disc_is_not_reported(head_slice: npt.NDArray[np.int16]) -> None:
    """DERIVED from 693_UNCI.dcm: a disc of radius 7 mm at (260, 250) with HU 28..40 (parenchyma)."""
    derived = _insert(head_slice, _disc((260, 250), 7.0), 28, 40)
    assert model.find_hyperdensities(derived, SPACING).region_count == 0


def test_slice_without_skull_reports_no_brain() -> None:
    air = np.full((256, 256), -1000, dtype=np.int16)
    result = model.find_hyperdensities(air, SPACING)
    assert result.status == model.STATUS_NO_BRAIN
    assert np.isnan(result.measurements()[4])
    assert result.locations().tolist() == [-1] * len(model.LOCATION_NAMES)


def test_non_positive_spacing_is_refused(head_slice: npt.NDArray[np.int16]) -> None:
    with pytest.raises(ValueError, match="three positive mm values"):
        model.find_hyperdensities(head_slice, (0.5, 0.5, 0.0))


def test_parameters_from_triton_config_override_defaults() -> None:
    config = {"parameters": {"min_region_area_mm2": {"string_value": "50"}}}
    parameters = model.Parameters.from_config(config)
    assert parameters.min_region_area_mm2 == 50.0
    assert parameters.brain_erosion_mm == model.Parameters().brain_erosion_mm
