"""Unit tests for radcds.adapters.dicom.pixels on real DICOM files.

Fixtures (read with pydicom.data.get_testdata_file, nothing is copied into the repository;
provenance as given in pydicom/data/test_files/README.txt of pydicom 3.0.2):
- RG1_UNCI.dcm (pydicom-data 1.0.0): chest CR, MONOCHROME1, 1955 x 1841, uncompressed; from the
  DICOM WG-04 compression test set (ftp://medical.nema.org/MEDICAL/Dicom/DataSets/WG04).
- 693_UNCI.dcm (pydicom-data 1.0.0): head CT, 512 x 512, Rescale -1024 / 1, Rescale Type HU;
  pydicom regression dataset for issue #693.
- CT_small.dcm (pydicom test files): CT, 128 x 128, Rescale -1024 / 1 without Rescale Type;
  WG-04 CT1_UNC downsized.
- emri_small.dcm (pydicom-data 1.0.0): MR, 10 frames of 64 x 64.
- eCT_Supplemental.dcm (pydicom-data 1.0.0): Enhanced CT, 2 frames, rescale in the Shared
  Functional Groups with Rescale Type US; from NEMA's multi-frame CT samples (CT0012).
- SC_rgb.dcm (pydicom-data 1.0.0): RGB secondary capture made by a pydicom script (PR #714).
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np
import numpy.typing as npt
import pydicom
import pytest
from pydicom import config
from pydicom.data import get_testdata_file

from radcds.adapters.dicom.pixels import modality_unit, prepare_image


@pytest.fixture(autouse=True)
def _strict_pydicom() -> Iterator[None]:
    """Read fixtures in pydicom's strict mode, so malformed elements fail the test."""
    previous = config.settings.reading_validation_mode
    config.settings.reading_validation_mode = config.RAISE
    yield
    config.settings.reading_validation_mode = previous


def _read(name: str) -> pydicom.Dataset:
    path = get_testdata_file(name)
    assert path is not None, f"pydicom test file {name} is not installed"
    return pydicom.dcmread(path)


def _block_mean_reference(values: npt.NDArray[np.float64], factor: int) -> npt.NDArray[np.float64]:
    """Independent block mean: explicit loops over the output pixels."""
    rows, columns = values.shape[0] // factor, values.shape[1] // factor
    out = np.empty((rows, columns), dtype=np.float64)
    for row in range(rows):
        for column in range(columns):
            block = values[row * factor : (row + 1) * factor, column * factor : (column + 1) * factor]
            out[row, column] = block.sum() / block.size
    return out


@pytest.mark.parametrize("name", ["RG1_UNCI.dcm", "693_UNCI.dcm", "CT_small.dcm", "emri_small.dcm"])
def test_prepare_image_on_real_files_returns_2d_int16_contiguous_at_most_512(name: str) -> None:
    image = prepare_image(_read(name))

    assert image.ndim == 2
    assert image.dtype == np.int16
    assert image.flags.c_contiguous
    assert max(image.shape) <= 512


def test_prepare_image_on_chest_cr_downsamples_by_4_with_crop() -> None:
    ds = _read("RG1_UNCI.dcm")
    assert (ds.Rows, ds.Columns) == (1955, 1841)

    image = prepare_image(ds)

    # ceil(1955 / 512) = 4: 1955 // 4 = 488 rows, 1841 // 4 = 460 columns.
    assert image.shape == (488, 460)


def test_prepare_image_on_monochrome1_cr_inverts_so_higher_is_brighter() -> None:
    ds = _read("RG1_UNCI.dcm")
    assert ds.PhotometricInterpretation == "MONOCHROME1"
    assert "RescaleSlope" not in ds
    assert "ModalityLUTSequence" not in ds
    stored = ds.pixel_array.astype(np.float64)
    inverted = (stored.min() + stored.max()) - stored
    expected = np.rint(_block_mean_reference(inverted, 4)).astype(np.int16)

    image = prepare_image(ds)

    np.testing.assert_array_equal(image, expected)


def test_prepare_image_on_monochrome1_cr_makes_lung_darker_than_mediastinum() -> None:
    image = prepare_image(_read("RG1_UNCI.dcm")).astype(np.float64)
    rows, columns = image.shape
    # PA chest: the mediastinum (centre) attenuates more than the lungs either side of it.
    mediastinum = np.median(image[rows // 3 : rows // 2, columns // 2 - 15 : columns // 2 + 15])
    right_lung = np.median(image[rows // 3 : rows // 2, columns // 4 - 15 : columns // 4 + 15])
    left_lung = np.median(image[rows // 3 : rows // 2, 3 * columns // 4 - 15 : 3 * columns // 4 + 15])

    assert mediastinum > right_lung
    assert mediastinum > left_lung


def test_prepare_image_on_head_ct_returns_hounsfield_units_from_rescale() -> None:
    ds = _read("693_UNCI.dcm")
    slope, intercept = float(ds.RescaleSlope), float(ds.RescaleIntercept)
    assert (slope, intercept) == (1.0, -1024.0)
    stored = ds.pixel_array.astype(np.float64)

    image = prepare_image(ds)

    np.testing.assert_array_equal(image, np.rint(stored * slope + intercept).astype(np.int16))
    assert modality_unit(ds) == "[hnsf'U]"


def test_prepare_image_on_head_ct_air_in_front_of_head_is_near_minus_1000_hu() -> None:
    image = prepare_image(_read("693_UNCI.dcm"))

    air = image[60:76, 128:224]

    assert abs(float(np.median(air)) - (-1000.0)) < 50.0


def test_prepare_image_on_ct_small_without_rescale_type_returns_hounsfield_units() -> None:
    ds = _read("CT_small.dcm")
    assert "RescaleType" not in ds
    stored = ds.pixel_array.astype(np.float64)

    image = prepare_image(ds)

    expected = stored * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
    np.testing.assert_array_equal(image, expected.astype(np.int16))
    assert modality_unit(ds) == "[hnsf'U]"


def test_prepare_image_on_multiframe_mr_returns_first_frame_only() -> None:
    ds = _read("emri_small.dcm")
    assert int(ds.NumberOfFrames) == 10
    frames = ds.pixel_array
    assert not np.array_equal(frames[0], frames[1])

    image = prepare_image(ds)

    np.testing.assert_array_equal(image, frames[0].astype(np.int16))
    assert modality_unit(ds) == "{pixel_value}"


def test_prepare_image_on_enhanced_ct_applies_shared_functional_group_rescale() -> None:
    ds = _read("eCT_Supplemental.dcm")
    assert "RescaleSlope" not in ds
    transformation = ds.SharedFunctionalGroupsSequence[0].PixelValueTransformationSequence[0]
    slope = float(transformation.RescaleSlope)
    intercept = float(transformation.RescaleIntercept)
    first_frame = ds.pixel_array[0].astype(np.float64)

    image = prepare_image(ds)

    np.testing.assert_array_equal(image, np.rint(first_frame * slope + intercept).astype(np.int16))
    # Rescale Type US (unspecified) is not declared as HU.
    assert modality_unit(ds) == "{pixel_value}"


def test_prepare_image_with_smaller_max_size_uses_ceiling_factor() -> None:
    ds = _read("CT_small.dcm")

    image = prepare_image(ds, max_size=50)

    factor = math.ceil(128 / 50)
    assert image.shape == (128 // factor, 128 // factor)


def test_prepare_image_clips_to_int16_range() -> None:
    ds = _read("CT_small.dcm")
    ds.RescaleSlope = 100

    image = prepare_image(ds)

    assert image.max() == np.iinfo(np.int16).max


def test_prepare_image_without_pixel_data_raises_value_error() -> None:
    ds = _read("CT_small.dcm")
    del ds.PixelData

    with pytest.raises(ValueError, match="no Pixel Data"):
        prepare_image(ds)


def test_prepare_image_on_rgb_raises_value_error() -> None:
    ds = _read("SC_rgb.dcm")

    with pytest.raises(ValueError, match="Samples per Pixel"):
        prepare_image(ds)


def test_modality_unit_for_cr_is_pixel_value() -> None:
    assert modality_unit(_read("RG1_UNCI.dcm")) == "{pixel_value}"
