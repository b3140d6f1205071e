"""Interpreting model outputs as coded measurements (pure; no Triton types).

Each model in ``models/`` has a spec here saying what its output vector means. See the
model cards in ``models/<name>/MODEL_CARD.md``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from radcds.domain import codes
from radcds.domain.codes import Coding
from radcds.domain.findings import ImageLocation, Measurement
from radcds_inference.domain.envelope import ManifestEntry, OutputMeasurement

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


# ---- interpreting a series' outputs --------------------------------------------------------

#: ``STATUS`` values of chest_ctr (models/chest_ctr/config.pbtxt) that mean "not measured", in words.
CHEST_CTR_STATUS = {1: "lung fields not found", 2: "no cardiac zone between the lungs"}
#: ``STATUS`` values of head_ct_hyperdensity that mean "not measured".
HEAD_CT_STATUS = {1: "no intracranial area"}
#: Indices of the head_ct_hyperdensity ``MEASUREMENTS`` vector (model card, "Outputs").
_HU_COUNT, _HU_AREA, _HU_VOLUME, _HU_LARGEST, _HU_MAX, _HU_MEAN, _HU_BRAIN, _HU_REJECTED = range(8)


@dataclass(frozen=True, slots=True)
class SeriesOutputs:
    """A model's outputs for the slices (or instances) of one series, one row per slice in series order.

    ``status``: the ``STATUS`` output (0 = measured); ``measurements``: the ``MEASUREMENTS`` rows;
    ``locations``: the ``LOCATIONS`` rows, on the model's input grid, which is the source grid
    downsampled by ``downsampling_factor``.
    """

    status: tuple[int, ...]
    measurements: tuple[tuple[float, ...], ...]
    locations: tuple[tuple[int, ...], ...] = ()
    downsampling_factor: int = 1

    def __post_init__(self) -> None:
        if not self.status:
            raise ValueError("outputs of at least one slice are needed")
        if len(self.measurements) != len(self.status) or (self.locations and len(self.locations) != len(self.status)):
            raise ValueError("STATUS, MEASUREMENTS and LOCATIONS must have one row per slice")
        if self.downsampling_factor < 1:
            raise ValueError("the downsampling factor is at least 1")

    def source_point(self, row: int, column: int) -> tuple[float, float]:
        """A (row, column) of the model grid as the centre of its block on the source image grid."""
        f = self.downsampling_factor
        return float(row * f + f // 2), float(column * f + f // 2)


@dataclass(frozen=True, slots=True)
class SeriesInterpretation:
    """What a series' outputs mean: coded measurements, findings, the key slice and where; or why not."""

    measurements: tuple[Measurement, ...] = ()
    findings: tuple[Coding, ...] = ()
    critical: bool = False
    key_slice: int = 0
    location: ImageLocation | None = None
    not_analysed_reason: str = ""


def is_critical(findings: Sequence[Coding], entry: ManifestEntry) -> bool:
    """Priority flag: a finding in :data:`codes.CRITICAL_FINDINGS` or marked critical in the manifest."""
    flagged = {f.code for f in entry.findings if f.critical}
    return any(f in codes.CRITICAL_FINDINGS or f in flagged for f in findings)


def interpret_series(entry: ManifestEntry, outputs: SeriesOutputs, *, view_position: str = "") -> SeriesInterpretation:
    """Turn one series' outputs into coded measurements and findings (model cards, "Outputs" and "Findings").

    - ``chest_ctr``: the first measured instance is the key image; cardiomegaly (SNOMED CT 8186001)
      when its CTR > 0.5 on a PA view (:func:`cardiomegaly_present`).
    - ``head_ct_hyperdensity``: counts, areas and volumes summed over slices, the largest region and
      maximum HU over slices, the mean HU weighted by area; the key slice holds the largest region
      (else the largest intracranial area); intracranial hemorrhage candidate (SNOMED CT 1386000,
      critical) when any slice has a region (:func:`hemorrhage_candidate`). Its location's points
      are the largest region's centroid, then its outline's vertices in order (:func:`_head_ct_location`).
    - any other model: the first measured slice's coded measurements, no findings.

    When no slice was measured the result says why (``not analysed: <model>: ...``).
    """
    if entry.name == HEAD_CT_HYPERDENSITY:
        return _interpret_head_ct(entry, outputs)
    measured = [i for i, status in enumerate(outputs.status) if status == 0]
    if not measured:
        reasons = CHEST_CTR_STATUS if entry.name == CHEST_CTR else {}
        status = outputs.status[0]
        why = reasons.get(status, f"model status {status}")
        return SeriesInterpretation(not_analysed_reason=f"not analysed: {entry.name}: {why}")
    key = measured[0]
    measurements = coded_measurements(entry.measurements, outputs.measurements[key])
    if entry.name != CHEST_CTR:
        return SeriesInterpretation(measurements=measurements, key_slice=key)
    ratio = float(outputs.measurements[key][0])
    findings = (codes.CARDIOMEGALY,) if cardiomegaly_present(ratio, view_position=view_position) else ()
    location = None
    if outputs.locations:
        loc = outputs.locations[key]
        left, right = outputs.source_point(loc[0], loc[1]), outputs.source_point(loc[2], loc[3])
        row, *_ = outputs.source_point(loc[4], 0)
        thorax_left, thorax_right = outputs.source_point(loc[4], loc[5]), outputs.source_point(loc[4], loc[6])
        location = ImageLocation(
            f"heart borders at (row, column) ({left[0]:.0f}, {left[1]:.0f}) and ({right[0]:.0f}, {right[1]:.0f}); "
            f"widest thorax on row {row:.0f} between columns {thorax_left[1]:.0f} and {thorax_right[1]:.0f}",
            (left, right, thorax_left, thorax_right),
        )
    return SeriesInterpretation(
        measurements=measurements,
        findings=findings,
        critical=is_critical(findings, entry),
        key_slice=key,
        location=location,
    )


def _interpret_head_ct(entry: ManifestEntry, outputs: SeriesOutputs) -> SeriesInterpretation:
    measured = [i for i, status in enumerate(outputs.status) if status == 0]
    if not measured:
        return SeriesInterpretation(
            not_analysed_reason=(
                f"not analysed: {entry.name}: {HEAD_CT_STATUS[1]} on any of {len(outputs.status)} slices"
            )
        )
    rows = [outputs.measurements[i] for i in measured]
    with_regions = [r for r in rows if r[_HU_COUNT] >= 1]
    area = sum(r[_HU_AREA] for r in rows)
    summary = [math.nan] * max(len(r) for r in rows)
    summary[_HU_COUNT] = sum(r[_HU_COUNT] for r in rows)
    summary[_HU_AREA] = area
    summary[_HU_VOLUME] = sum(r[_HU_VOLUME] for r in rows)
    summary[_HU_LARGEST] = max(r[_HU_LARGEST] for r in rows)
    summary[_HU_BRAIN] = sum(r[_HU_BRAIN] for r in rows)
    if len(summary) > _HU_REJECTED:
        summary[_HU_REJECTED] = sum(r[_HU_REJECTED] for r in rows)
    if with_regions:
        summary[_HU_MAX] = max(r[_HU_MAX] for r in with_regions)
        summary[_HU_MEAN] = sum(r[_HU_MEAN] * r[_HU_AREA] for r in with_regions) / area if area > 0 else math.nan
        key = max(measured, key=lambda i: outputs.measurements[i][_HU_LARGEST])
    else:
        key = max(measured, key=lambda i: outputs.measurements[i][_HU_BRAIN])
    findings = (codes.INTRACRANIAL_HEMORRHAGE,) if hemorrhage_candidate([r[_HU_COUNT] for r in rows]) else ()
    location = None
    if findings and outputs.locations and outputs.locations[key][0] >= 0:
        location = _head_ct_location(outputs, key)
    return SeriesInterpretation(
        measurements=coded_measurements(entry.measurements, summary),
        findings=findings,
        critical=is_critical(findings, entry),
        key_slice=key,
        location=location,
    )


#: Offsets in a head_ct_hyperdensity ``LOCATIONS`` row (model card, "Interface"): centroid, bounding box, outline.
_HU_CENTROID, _HU_BOX, _HU_OUTLINE = 0, 2, 6


def _head_ct_location(outputs: SeriesOutputs, key: int) -> ImageLocation:
    """The largest region on slice ``key``: points are its centroid, then its outline's vertices in order.

    The outline is the model's convex hull (clockwise as displayed, from the top-most vertex); a row without
    one (an older model version) gives the bounding box's four corners in the same order, and a row of only
    the centroid (version 1 before outlines) gives just the centroid.
    """
    loc = outputs.locations[key]
    centre = outputs.source_point(loc[_HU_CENTROID], loc[_HU_CENTROID + 1])
    where = (
        f"largest region centred at (row, column) ({centre[0]:.0f}, {centre[1]:.0f}) on slice {key + 1} "
        f"of {len(outputs.status)}"
    )
    if len(loc) < _HU_OUTLINE or loc[_HU_BOX] < 0:
        return ImageLocation(where, (centre,))
    top, left = outputs.source_point(loc[_HU_BOX], loc[_HU_BOX + 1])
    bottom, right = outputs.source_point(loc[_HU_BOX + 2], loc[_HU_BOX + 3])
    vertices = [
        outputs.source_point(row, column)
        for row, column in zip(loc[_HU_OUTLINE::2], loc[_HU_OUTLINE + 1 :: 2], strict=False)
        if row >= 0 and column >= 0
    ]
    if vertices:
        shape = f"the {len(vertices)} vertices of its outline (convex hull)"
    else:
        vertices = [(top, left), (top, right), (bottom, right), (bottom, left)]
        shape = "the 4 corners of its bounding box"
    return ImageLocation(
        f"{where}, within rows {top:.0f}-{bottom:.0f} and columns {left:.0f}-{right:.0f}; points: the centre, "
        f"then {shape}, clockwise as displayed",
        (centre, *vertices),
    )
