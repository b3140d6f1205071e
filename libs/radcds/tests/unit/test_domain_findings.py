"""Domain value objects refuse impossible states."""

from __future__ import annotations

import math

import pytest

from radcds.domain import codes
from radcds.domain.findings import ImageAnalysis, InstanceReference, Measurement, ModelIdentity, StudyContext

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
