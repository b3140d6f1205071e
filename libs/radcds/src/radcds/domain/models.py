"""Interpreting model outputs as coded measurements (pure; no Triton types).

Each model in ``models/`` has a spec here saying what its output vector means. See the
model cards in ``models/<name>/MODEL_CARD.md``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from radcds.domain import codes
from radcds.domain.envelope import OutputMeasurement
from radcds.domain.findings import Measurement

PIXEL_STATISTICS = "pixel_statistics"

#: Order of the ``STATISTICS`` output of ``pixel_statistics`` (model card, "Outputs").
_PIXEL_STATISTICS_CODES = (
    codes.MEAN_PIXEL_VALUE,
    codes.PIXEL_VALUE_SD,
    codes.PIXEL_VALUE_P05,
    codes.PIXEL_VALUE_P95,
    codes.OTSU_THRESHOLD,
    codes.FOREGROUND_FRACTION,
)


def pixel_statistics_measurements(values: Sequence[float], *, pixel_unit: str) -> tuple[Measurement, ...]:
    """Turn the six ``pixel_statistics`` outputs into measurements.

    ``pixel_unit`` is the UCUM unit of the input pixels: ``[hnsf'U]`` for CT after the
    modality LUT, ``{pixel_value}`` otherwise. The foreground fraction is in percent.
    """
    if len(values) != len(_PIXEL_STATISTICS_CODES):
        raise ValueError(f"pixel_statistics returns {len(_PIXEL_STATISTICS_CODES)} values, got {len(values)}")
    units = [pixel_unit] * 5 + [codes.UNIT_PERCENT]
    return tuple(
        Measurement(code, round(float(v), 3), unit)
        for code, v, unit in zip(_PIXEL_STATISTICS_CODES, values, units, strict=True)
    )


CHEST_CTR = "chest_ctr"
HEAD_CT_HYPERDENSITY = "head_ct_hyperdensity"
#: Danzer's threshold: cardiomegaly when the cardiothoracic ratio exceeds it on a PA view.
CARDIOMEGALY_CTR_THRESHOLD = 0.5


def coded_measurements(
    specs: Sequence[OutputMeasurement], values: Sequence[float], *, digits: int = 3
) -> tuple[Measurement, ...]:
    """Turn a model's ``MEASUREMENTS`` vector into coded measurements (manifest ``outputs.measurements``).

    NaN values (e.g. widths in mm when the pixel spacing is unknown, HU statistics when no region
    was found) are left out: a measurement is never NaN.
    """
    result = []
    for spec in specs:
        if not 0 <= spec.index < len(values):
            raise ValueError(f"output index {spec.index} outside a vector of {len(values)} values")
        value = float(values[spec.index])
        if math.isfinite(value):
            result.append(Measurement(spec.code, round(value, digits), spec.unit))
    return tuple(result)


def cardiomegaly_present(cardiothoracic_ratio: float, *, view_position: str) -> bool:
    """Cardiomegaly (SNOMED CT 8186001) when CTR > 0.5 on a PA view; never on other views."""
    return view_position.strip().upper() == "PA" and cardiothoracic_ratio > CARDIOMEGALY_CTR_THRESHOLD


def hemorrhage_candidate(region_counts: Sequence[float]) -> bool:
    """Intracranial hemorrhage candidate (SNOMED CT 1386000, critical) when any slice has a region."""
    return any(count >= 1 for count in region_counts)
