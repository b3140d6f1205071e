"""Domain value objects refuse impossible states."""

from __future__ import annotations

import math

import pytest

from radcds.domain import codes
from radcds.domain.findings import ImageAnalysis, InstanceReference, Measurement, ModelIdentity, StudyContext
from radcds.domain.models import pixel_statistics_measurements

REF = InstanceReference("1.2", "1.2.3", "1.2.3.4", "1.2.840.10008.5.1.4.1.1.2")


def test_analysis_without_measurements_or_reason_is_rejected():
    with pytest.raises(ValueError, match="measurements or a not-analysed reason"):
        ImageAnalysis(REF, StudyContext("P"), ModelIdentity("m", "1"))


def test_analysis_with_both_measurements_and_reason_is_rejected():
    with pytest.raises(ValueError, match="cannot carry measurements"):
        ImageAnalysis(
            REF,
            StudyContext("P"),
            ModelIdentity("m", "1"),
            measurements=(Measurement(codes.MEAN_PIXEL_VALUE, 1.0, "1"),),
            not_analysed_reason="x",
        )


def test_nan_measurement_is_rejected():
    with pytest.raises(ValueError, match="NaN"):
        Measurement(codes.MEAN_PIXEL_VALUE, math.nan, "1")


def test_pixel_statistics_measurements_use_pixel_unit_and_percent_for_fraction():
    ms = pixel_statistics_measurements([1, 2, 3, 4, 5, 60.5], pixel_unit=codes.UNIT_HOUNSFIELD)
    assert [m.unit for m in ms] == [codes.UNIT_HOUNSFIELD] * 5 + ["%"]
    assert ms[-1].code == codes.FOREGROUND_FRACTION and ms[-1].value == 60.5


def test_pixel_statistics_measurements_with_wrong_length_raise():
    with pytest.raises(ValueError, match="6 values"):
        pixel_statistics_measurements([1.0, 2.0], pixel_unit="1")
