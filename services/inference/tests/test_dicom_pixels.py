"""Unit tests for radcds_inference.adapters.dicom.pixels (the unit after the Modality LUT) on real DICOM files.

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
"""

from __future__ import annotations

from collections.abc import Iterator

import pydicom
import pytest
from pydicom import config
from pydicom.data import get_testdata_file

from radcds_inference.adapters.dicom.pixels import modality_unit


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


def test_modality_unit_for_head_ct_with_rescale_type_hu_is_hounsfield() -> None:
    ds = _read("693_UNCI.dcm")
    assert (float(ds.RescaleSlope), float(ds.RescaleIntercept)) == (1.0, -1024.0)

    assert modality_unit(ds) == "[hnsf'U]"


def test_modality_unit_for_ct_small_without_rescale_type_is_hounsfield() -> None:
    ds = _read("CT_small.dcm")
    assert "RescaleType" not in ds

    assert modality_unit(ds) == "[hnsf'U]"


def test_modality_unit_for_multiframe_mr_is_pixel_value() -> None:
    assert modality_unit(_read("emri_small.dcm")) == "{pixel_value}"


def test_modality_unit_for_enhanced_ct_with_rescale_type_us_is_pixel_value() -> None:
    ds = _read("eCT_Supplemental.dcm")
    assert "RescaleSlope" not in ds

    # Rescale Type US (unspecified) in the Shared Functional Groups is not declared as HU.
    assert modality_unit(ds) == "{pixel_value}"


def test_modality_unit_for_cr_is_pixel_value() -> None:
    assert modality_unit(_read("RG1_UNCI.dcm")) == "{pixel_value}"
