"""The sample studies the demo and tests use are valid objects (PS3.3 CT Image IOD, A.3), with the
header completed and the pixels of the real 693_UNCI.dcm (pydicom-data) untouched."""

from __future__ import annotations

import numpy as np
import pydicom.data

from radcds_devstack.samples import HEAD_CT_DEIDENTIFICATION_METHOD, head_ct, head_ct_with_hyperdense_disc


def test_head_ct_sample_has_a_frame_of_reference_uid_distinct_per_call():
    """PS3.3 C.7.4.1 Frame of Reference Module: Frame of Reference UID is Type 1."""
    first, second = head_ct(), head_ct()
    assert first.FrameOfReferenceUID and first.FrameOfReferenceUID != second.FrameOfReferenceUID


def test_head_ct_sample_names_an_unpaired_body_part_so_laterality_is_rightly_absent():
    """PS3.3 C.7.3.1: Laterality (Type 2C) is required only for a paired structure."""
    ds = head_ct()
    assert ds.BodyPartExamined == "HEAD"
    assert "Laterality" not in ds


def test_head_ct_sample_with_identity_removed_states_a_deidentification_method():
    """PS3.3 C.7.1.1: Patient Identity Removed YES makes De-identification Method Type 1C."""
    ds = head_ct()
    assert ds.PatientIdentityRemoved == "YES"
    assert ds.DeidentificationMethod == HEAD_CT_DEIDENTIFICATION_METHOD
    assert len(HEAD_CT_DEIDENTIFICATION_METHOD) <= 64  # LO


def test_head_ct_sample_pixels_are_those_of_the_real_file():
    original = pydicom.dcmread(pydicom.data.get_testdata_file("693_UNCI.dcm"))
    assert np.array_equal(head_ct().pixel_array, original.pixel_array)


def test_derived_positive_head_ct_keeps_the_reference_disc_and_the_completed_header():
    ds, region = head_ct_with_hyperdense_disc()
    assert (region.pixels, round(region.area_mm2, 1)) == (673, 154.1)
    assert ds.FrameOfReferenceUID and ds.BodyPartExamined == "HEAD" and ds.DeidentificationMethod
