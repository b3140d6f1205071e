"""Interpreting model outputs as coded measurements (pure; no Triton types).

Each model in ``models/`` has a spec here saying what its output vector means. See the
model cards in ``models/<name>/MODEL_CARD.md``.
"""

from __future__ import annotations

from collections.abc import Sequence

from radcds.domain import codes
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
