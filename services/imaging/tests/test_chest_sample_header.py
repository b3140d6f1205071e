"""The demo's chest radiograph (pydicom-data RG1_UNCI.dcm) without its bogus Pixel Spacing ``0\\0``.

RG1_UNCI.dcm says Pixel Spacing (0028,0030) = 0\\0; viewers that size the image from it draw an
image of no size. Our copies (``samples.chest_cr`` and the demo's ``with_fresh_uids``) leave the
attribute out (PS3.3 C.8.1.2 / Table 10-10: needed only for a calibrated image), so the spacing is
unknown, as before for the models: their inputs and the chest_ctr ratio stay the same.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pydicom
from pydicom.data import get_testdata_file

from radcds_devstack.demo import chest_radiograph, with_fresh_uids
from radcds_devstack.samples import chest_cr, drop_zero_pixel_spacing
from radcds_devstack.testing import model_code
from radcds_inference.adapters.dicom.preprocess import pixel_spacing_mm, prepare_series
from radcds_inference.adapters.triton.manifest import load_manifest

ROOT = Path(__file__).resolve().parents[3]
SOURCE = Path(get_testdata_file("RG1_UNCI.dcm"))


def test_source_chest_radiograph_carries_pixel_spacing_zero_zero():
    assert [float(v) for v in pydicom.dcmread(SOURCE, stop_before_pixels=True).PixelSpacing] == [0.0, 0.0]


def test_chest_cr_sample_has_no_zero_pixel_spacing_and_the_same_pixels():
    ds = chest_cr()
    assert "PixelSpacing" not in ds
    assert ds.PixelData == pydicom.dcmread(SOURCE).PixelData


def test_demo_chest_radiograph_sent_by_stow_has_no_zero_pixel_spacing():
    ds = pydicom.dcmread(io.BytesIO(with_fresh_uids(chest_radiograph())))
    assert "PixelSpacing" not in ds
    assert ds.PixelData == pydicom.dcmread(SOURCE).PixelData


def test_a_real_pixel_spacing_is_kept():
    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    assert [float(v) for v in drop_zero_pixel_spacing(ds).PixelSpacing] == [0.661468, 0.661468]


def test_chest_ctr_inputs_and_ratio_are_unchanged_by_the_correction():
    spec = load_manifest(ROOT / "models").entry("chest_ctr").preprocessing
    original, corrected = pydicom.dcmread(SOURCE), chest_cr()
    assert pixel_spacing_mm(original) is None and pixel_spacing_mm(corrected) is None
    before, after = prepare_series([original], spec), prepare_series([corrected], spec)
    assert np.array_equal(before.pixels, after.pixels)
    assert np.array_equal(before.spacing_vector(), after.spacing_vector())
    chest = model_code(ROOT / "models", "chest_ctr")
    assert chest.measure_ctr(after.pixels[0]).ratio == chest.measure_ctr(before.pixels[0]).ratio
