"""Unit tests for models/chest_ctr/1/model.py (cardiothoracic ratio), without Triton.

Real image: RG1_UNCI.dcm from pydicom-data 1.0.0 (DICOM WG-04 compression test set), a PA chest
CR, MONOCHROME1, 1955 x 1841, prepared by radcds_inference.adapters.dicom.preprocess as the manifest says
(inverted, block mean to 488 x 460). Its Pixel Spacing is 0.000 (unknown), so the mm outputs
are checked with an explicitly supplied spacing. Reference measurements are computed here
from the model's own lung masks by plain loops, independently of the model's vectorised code.
"""

from __future__ import annotations

import math
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

MODEL_PATH = Path(__file__).resolve().parents[2] / "models" / "chest_ctr" / "1" / "model.py"


def _load_model_module() -> types.ModuleType:
    return model_code(MODEL_PATH.parents[2], "chest_ctr")


model = _load_model_module()


@pytest.fixture(scope="module")
def chest_image() -> npt.NDArray[np.int16]:
    path = get_testdata_file("RG1_UNCI.dcm")
    assert path is not None, "pydicom-data is not installed"
    series = prepare_series([pydicom.dcmread(path)], PreprocessingSpec(max_size=512, invert_monochrome1=True))
    assert series.pixel_spacing_mm is None  # RG1 says 0.000: unknown
    return series.pixels[0]


@pytest.fixture(scope="module")
def chest_result(chest_image: npt.NDArray[np.int16]) -> object:
    return model.measure_ctr(chest_image)


def _columns(mask: npt.NDArray[np.bool_], row: int) -> list[int]:
    return [c for c in range(mask.shape[1]) if mask[row, c]]


def test_real_pa_chest_cr_is_measured_with_plausible_ratio(chest_result: object) -> None:
    r = chest_result
    assert r.status == model.STATUS_MEASURED
    # Anatomically plausible adult CTR; the value for this image is 0.467 (model card).
    assert 0.40 < r.ratio < 0.60
    assert r.ratio == pytest.approx(172 / 368, abs=0.02)


def test_real_pa_chest_cr_thoracic_width_matches_reference_from_masks(
    chest_result: object, chest_image: npt.NDArray[np.int16]
) -> None:
    r = chest_result
    image_left, image_right = r.right_lung, r.left_lung
    best = 0
    for row in range(image_left.shape[0]):
        left_cols, right_cols = _columns(image_left, row), _columns(image_right, row)
        if left_cols and right_cols:
            best = max(best, right_cols[-1] - left_cols[0] + 1)
    assert r.thoracic_width_px == best * r.factor
    # The thorax spans most of a chest radiograph's width.
    assert 0.7 * chest_image.shape[1] < r.thoracic_width_px < chest_image.shape[1]


def test_real_pa_chest_cr_cardiac_width_matches_reference_from_masks(chest_result: object) -> None:
    r = chest_result
    image_left, image_right = r.right_lung, r.left_lung
    rows_l = [row for row in range(image_left.shape[0]) if image_left[row].any()]
    rows_r = [row for row in range(image_right.shape[0]) if image_right[row].any()]
    top, bottom = max(rows_l[0], rows_r[0]), min(rows_l[-1], rows_r[-1])
    start = top + math.ceil(model.CARDIAC_ZONE_START * (bottom - top))
    widest_l = max(len(_columns(image_left, row)) for row in rows_l)
    widest_r = max(len(_columns(image_right, row)) for row in rows_r)
    medial_l, medial_r = [], []
    for row in range(start, bottom + 1):
        cols_l, cols_r = _columns(image_left, row), _columns(image_right, row)
        if len(cols_l) >= 0.5 * widest_l and len(cols_r) >= 0.5 * widest_r:
            medial_l.append(cols_l[-1])
            medial_r.append(cols_r[0])
    reference = ((max(medial_r) - 1) - (min(medial_l) + 1) + 1) * r.factor
    assert r.cardiac_width_px == reference


def test_real_pa_chest_cr_borders_lie_inside_the_thorax_in_the_lower_chest(
    chest_result: object, chest_image: npt.NDArray[np.int16]
) -> None:
    r = chest_result
    left_row, left_col, right_row, right_col, thoracic_row, thorax_left, thorax_right = r.locations().tolist()
    assert thorax_left < left_col < chest_image.shape[1] / 2 < right_col < thorax_right
    assert right_col - left_col + 1 == pytest.approx(r.cardiac_width_px, abs=r.factor)
    # The heart borders are measured in the lower half of the image, below the hila.
    assert min(left_row, right_row) > chest_image.shape[0] / 2
    assert chest_image.shape[0] / 2 < thoracic_row < chest_image.shape[0]
    assert thorax_right - thorax_left + 1 == pytest.approx(r.thoracic_width_px, abs=r.factor)


def test_spacing_given_widths_in_mm_are_pixels_times_column_spacing(chest_result: object) -> None:
    values = chest_result.measurements((0.8, 0.8))
    assert values.dtype == np.float32
    assert values[1] == pytest.approx(chest_result.cardiac_width_px * 0.8)
    assert values[2] == pytest.approx(chest_result.thoracic_width_px * 0.8)
    assert values[0] == pytest.approx(values[1] / values[2])


def test_spacing_unknown_mm_outputs_are_nan_and_ratio_is_kept(chest_result: object) -> None:
    values = chest_result.measurements((0.0, 0.0))
    assert math.isnan(values[1])
    assert math.isnan(values[2])
    assert values[0] == pytest.approx(chest_result.ratio)


def _phantom() -> npt.NDArray[np.int16]:
    """Synthetic PA chest: bright body, two dark lungs; heart gap 120 px low, 60 px high; thorax 360 px."""
    image = np.full((400, 400), 3000, dtype=np.int16)
    image[:, :10] = image[:, -10:] = 500  # air beside the patient
    image[60:330, 20:170] = 800  # image-left lung: columns 20..169
    image[60:330, 230:380] = 800  # image-right lung: columns 230..379
    image[200:330, 110:170] = 3000  # heart bulges into the image-left lung: border at 109
    image[200:330, 230:290] = 3000  # and into the image-right lung: border at 290
    return image


def test_phantom_with_known_geometry_gives_its_ratio() -> None:
    result = model.measure_ctr(_phantom())
    assert result.status == model.STATUS_MEASURED
    # Heart 110..289 = 180 px, thorax 20..379 = 360 px: CTR 0.5; one work-grid pixel (2 px) tolerance.
    assert result.cardiac_width_px == pytest.approx(180, abs=4)
    assert result.thoracic_width_px == pytest.approx(360, abs=4)
    assert result.ratio == pytest.approx(0.5, abs=0.02)


def test_uniform_image_lungs_not_found_and_outputs_nan() -> None:
    result = model.measure_ctr(np.full((300, 300), 1000, dtype=np.int16))
    assert result.status == model.STATUS_LUNGS_NOT_FOUND
    assert np.isnan(result.measurements((0.5, 0.5))).all()
    assert result.locations().tolist() == [-1] * 7


def test_tiny_image_is_refused() -> None:
    with pytest.raises(ValueError, match="at least 32 x 32"):
        model.measure_ctr(np.zeros((16, 16), dtype=np.int16))
