"""Unit tests for radcds_inference.adapters.dicom.preprocess on real DICOM files.

RG1_UNCI.dcm (pydicom-data 1.0.0): PA chest CR, MONOCHROME1, no rescale, Pixel Spacing 0.000.
693_UNCI.dcm (pydicom-data 1.0.0): head CT slice, rescale slope 1 / intercept -1024, 0.478516 mm.
emri_small.dcm (pydicom-data 1.0.0): MR, 10 frames of 64 x 64.
eCT_Supplemental.dcm (pydicom-data 1.0.0): Enhanced CT, 2 frames, rescale in the Shared Functional
Groups (NEMA's multi-frame CT samples, CT0012).
SC_rgb.dcm (pydicom-data 1.0.0): RGB secondary capture made by a pydicom script (PR #714).
CT_small.dcm (pydicom test files): CT, 128 x 128 (WG-04 CT1_UNC downsized).
Copies of 693_UNCI.dcm with changed rescale, spacing or position are built in the tests and
say so. References are computed here from the stored pixels with plain numpy.
"""

from __future__ import annotations

import copy

import numpy as np
import pydicom
import pytest
from pydicom import Dataset
from pydicom.data import get_testdata_file

from radcds_inference.adapters.dicom.preprocess import (
    VOI_OUTPUT_MAX,
    pixel_spacing_mm,
    prepare_frame,
    prepare_series,
    series_attributes,
)
from radcds_inference.domain.envelope import PreprocessingSpec

NATIVE = PreprocessingSpec(max_size=0, invert_monochrome1=True)


def _read(name: str) -> Dataset:
    path = get_testdata_file(name)
    assert path is not None, f"pydicom test file {name} is not installed"
    return pydicom.dcmread(path)


def test_monochrome1_cr_is_inverted_and_block_averaged() -> None:
    ds = _read("RG1_UNCI.dcm")
    stored = ds.pixel_array.astype(np.float64)
    inverted = stored.min() + stored.max() - stored
    reference = np.rint(inverted[:1952, :1840].reshape(488, 4, 460, 4).mean(axis=(1, 3)))
    series = prepare_series([ds], PreprocessingSpec(max_size=512))
    assert series.pixels.dtype == np.int16
    assert series.pixels.shape == (1, 488, 460)
    assert series.downsampling_factor == 4
    np.testing.assert_array_equal(series.pixels[0], reference)


def test_monochrome1_without_inversion_keeps_stored_values() -> None:
    ds = _read("RG1_UNCI.dcm")
    series = prepare_series([ds], PreprocessingSpec(max_size=0, invert_monochrome1=False))
    np.testing.assert_array_equal(series.pixels[0], ds.pixel_array)


def test_ct_rescale_gives_hounsfield_units_on_native_grid() -> None:
    ds = _read("693_UNCI.dcm")
    series = prepare_series([ds], NATIVE)
    np.testing.assert_array_equal(series.pixels[0], ds.pixel_array.astype(np.int32) - 1024)
    assert series.unit == "[hnsf'U]"
    assert series.pixel_spacing_mm == (0.478516, 0.478516)
    assert series.slice_thickness_mm == 5.0


def test_ct_rescale_slope_two_doubles_and_clips_to_int16() -> None:
    """A copy of 693_UNCI.dcm with Rescale Slope 2 and Intercept -2048."""
    ds = _read("693_UNCI.dcm")
    ds.RescaleSlope, ds.RescaleIntercept = 2, -2048
    series = prepare_series([ds], NATIVE)
    expected = np.clip(ds.pixel_array.astype(np.int64) * 2 - 2048, -32768, 32767)
    np.testing.assert_array_equal(series.pixels[0], expected)


def test_downsampling_scales_pixel_spacing() -> None:
    series = prepare_series([_read("693_UNCI.dcm")], PreprocessingSpec(max_size=256))
    assert series.pixels.shape == (1, 256, 256)
    assert series.pixel_spacing_mm == (0.478516 * 2, 0.478516 * 2)
    np.testing.assert_array_equal(series.spacing_vector(), np.array([0.957032, 0.957032], dtype=np.float32))


def test_voi_window_maps_to_twelve_bits_monotonically() -> None:
    ds = _read("693_UNCI.dcm")  # Window Center 40, Width 100
    series = prepare_series([ds], PreprocessingSpec(max_size=0, voi_lut=True, invert_monochrome1=False))
    hu = ds.pixel_array.astype(np.int32) - 1024
    out = series.pixels[0]
    assert out.min() == 0
    assert out.max() == VOI_OUTPUT_MAX
    assert (out[hu <= -10] == 0).all()  # below the window
    assert (out[hu >= 90] == VOI_OUTPUT_MAX).all()  # above the window
    inside = (hu > -10) & (hu < 90)
    order = np.argsort(hu[inside], kind="stable")
    assert (np.diff(out[inside][order].astype(np.int32)) >= 0).all()


def test_zero_pixel_spacing_is_unknown_and_imager_spacing_is_the_fallback() -> None:
    ds = _read("RG1_UNCI.dcm")
    assert pixel_spacing_mm(ds) is None
    ds.ImagerPixelSpacing = [0.2, 0.2]
    assert pixel_spacing_mm(ds) == (0.2, 0.2)


def test_series_slices_are_ordered_along_the_normal() -> None:
    """Three copies of 693_UNCI.dcm at z = 57, 47, 52 mm with distinct pixel offsets, given unordered."""
    base = _read("693_UNCI.dcm")
    copies = []
    for z, offset in ((57.0, 2), (47.0, 0), (52.0, 1)):
        ds = copy.deepcopy(base)
        ds.ImagePositionPatient = [-122.5, -112.4, z]
        ds.SOPInstanceUID = f"1.2.3.{offset}"
        ds.PixelData = (ds.pixel_array + offset).astype(np.int16).tobytes()
        copies.append(ds)
    series = prepare_series(copies, NATIVE)
    assert series.sop_instance_uids == ("1.2.3.0", "1.2.3.1", "1.2.3.2")
    assert series.pixels.shape == (3, 512, 512)
    np.testing.assert_array_equal(series.pixels[2] - series.pixels[0], np.full((512, 512), 2, dtype=np.int16))


def test_series_of_different_shapes_is_refused() -> None:
    with pytest.raises(ValueError, match="differ in shape"):
        prepare_series([_read("693_UNCI.dcm"), _read("CT_small.dcm")], NATIVE)


def test_empty_series_is_refused() -> None:
    with pytest.raises(ValueError, match="at least one instance"):
        prepare_series([], NATIVE)


def test_series_attributes_of_real_files() -> None:
    cr = series_attributes(_read("RG1_UNCI.dcm"))
    assert (cr.modality, cr.body_part, cr.view_position, cr.patient_age_years) == ("CR", "CHEST", "PA", 64.0)
    assert cr.slice_thickness_mm is None
    ct = series_attributes(_read("693_UNCI.dcm"))
    assert (ct.modality, ct.body_part, ct.slice_thickness_mm, ct.patient_age_years) == ("CT", "", 5.0, None)


def test_multiframe_mr_prepares_the_first_frame_only() -> None:
    ds = _read("emri_small.dcm")
    assert int(ds.NumberOfFrames) == 10
    frames = ds.pixel_array
    assert not np.array_equal(frames[0], frames[1])

    frame, factor = prepare_frame(ds, NATIVE)

    np.testing.assert_array_equal(frame, frames[0].astype(np.int16))
    assert factor == 1


def test_enhanced_ct_applies_the_shared_functional_group_rescale() -> None:
    ds = _read("eCT_Supplemental.dcm")
    assert "RescaleSlope" not in ds
    transformation = ds.SharedFunctionalGroupsSequence[0].PixelValueTransformationSequence[0]
    slope = float(transformation.RescaleSlope)
    intercept = float(transformation.RescaleIntercept)
    first_frame = ds.pixel_array[0].astype(np.float64)

    frame, _ = prepare_frame(ds, NATIVE)

    np.testing.assert_array_equal(frame, np.rint(first_frame * slope + intercept).astype(np.int16))


def test_frame_without_pixel_data_raises_value_error() -> None:
    ds = _read("CT_small.dcm")
    del ds.PixelData

    with pytest.raises(ValueError, match="no Pixel Data"):
        prepare_frame(ds, NATIVE)


def test_rgb_frame_raises_value_error() -> None:
    with pytest.raises(ValueError, match="Samples per Pixel"):
        prepare_frame(_read("SC_rgb.dcm"), NATIVE)
