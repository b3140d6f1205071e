"""Pulmonary nodules read from a TID 1500 Measurement Report (DICOM PS3.16 TID 1500, IHE AI Results).

Another AI product or a workstation stores a measurement SR into imaging; fusion reads from it each nodule's
size, composition, location and finding code:

- measurement groups: TID 1410 (planar ROI), TID 1411 (volumetric ROI) and TID 1501 (measurements without ROI);
- Finding (121071): a lung nodule code (``NODULE_FINDINGS``); groups of other findings are left alone;
- measurements (TID 300): Long Axis (SCT 103339001), Short Axis (SCT 103340004), Diameter (SCT 81827009),
  Volume (SCT 118565006), and the solid part of a part-solid nodule as ``99RADCDS solid-part-mean-diameter``
  (no standard code exists; documented in docs/fusion.md); units mm, cm, mm3, cm3 or ml (UCUM);
- composition: a qualitative evaluation whose value is Solid (SCT 35702001), Ground glass opacity
  (SCT 1217294009 or 50196008) or part-solid (``99RADCDS part-solid``, or a code meaning that says part-solid,
  subsolid or semisolid);
- Finding Site (363698007): the location, e.g. Upper lobe of right lung (SCT 45653009);
- a volumetric ROI's 3D graphic data (patient coordinates, mm): its centroid, to match the nodule to its prior.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import highdicom as hd
import numpy as np
from pydicom import Dataset

from radcds_fusion.domain.nodules import Composition, Nodule, site_name

#: Finding codes (scheme, value) read as a pulmonary nodule.
NODULE_FINDINGS = frozenset(
    {
        ("SCT", "427359005"),  # Solitary nodule of lung
        ("SCT", "786838002"),  # Pulmonary nodule
        ("SCT", "27925004"),  # Nodule
    }
)
RADCDS_SCHEME = "99RADCDS"
_LONG_AXIS = ("SCT", "103339001")
_SHORT_AXIS = ("SCT", "103340004")
_DIAMETER = ("SCT", "81827009")
_VOLUME = ("SCT", "118565006")
_SOLID_PART = (RADCDS_SCHEME, "solid-part-mean-diameter")
_COMPOSITIONS = {
    ("SCT", "35702001"): Composition.SOLID,
    ("SCT", "1217294009"): Composition.GROUND_GLASS,
    ("SCT", "50196008"): Composition.GROUND_GLASS,
    (RADCDS_SCHEME, "part-solid"): Composition.PART_SOLID,
}
#: The measurements read; any other measurement of a nodule's group (a mean attenuation in HU, ...) is ignored,
#: whatever its unit or value.
_READ = frozenset({_LONG_AXIS, _SHORT_AXIS, _DIAMETER, _VOLUME, _SOLID_PART})
_LENGTH_TO_MM = {"mm": 1.0, "cm": 10.0}
_VOLUME_TO_MM3 = {"mm3": 1.0, "cm3": 1000.0, "ml": 1000.0, "mL": 1000.0}


class MeasurementReportError(ValueError):
    """An SR that is not a readable TID 1500 measurement report, or a nodule whose measurements are impossible."""


class NotAMeasurementReport(MeasurementReportError):
    """A data set that is no TID 1500 measurement report at all (an image, a free-text SR): nothing to read."""


@dataclass(frozen=True, slots=True)
class ReportedNodule:
    """One nodule of a measurement report, with what identifies it in the SR."""

    nodule: Nodule
    finding: tuple[str, str, str]  # scheme, code, meaning
    tracking_uid: str | None
    tracking_identifier: str | None
    finding_site: tuple[str, str, str] | None
    position_mm: tuple[float, float, float] | None


def read_nodules(dataset: Dataset) -> list[ReportedNodule]:
    """Every pulmonary nodule in the TID 1500 measurement report ``dataset``.

    Raises:
        MeasurementReportError: the data set is not an SR with a TID 1500 Measurement Report, or a nodule's
            measurements are impossible (a negative or non-finite size, a short axis above the long axis, two
            different values of one measurement) or its content items are unreadable. Only this error type is
            raised; a nodule is never dropped silently. Measurements not read (other than the sizes above) are
            ignored; graphic data that gives no finite 3D position leaves ``position_mm`` None.
    """
    try:
        # pydicom decodes elements when first read: decode them all here, so that a damaged element is this
        # error and not whatever pydicom raises deep inside highdicom (OSError, struct.error, NotImplementedError)
        dataset.walk(lambda _ds, _elem: None)
    except Exception as exc:  # pydicom raises many unrelated types for one damaged file
        raise MeasurementReportError(f"unreadable data set: {type(exc).__name__}") from exc
    if getattr(dataset, "Modality", None) != "SR" or "ContentSequence" not in dataset:
        raise NotAMeasurementReport("not a structured report with content")
    try:
        report = hd.sr.MeasurementReport.from_sequence([dataset])
    except (ValueError, AttributeError, KeyError, TypeError, IndexError) as exc:
        raise NotAMeasurementReport(f"not a TID 1500 measurement report: {exc}") from exc
    try:
        groups = [
            *report.get_planar_roi_measurement_groups(),
            *report.get_volumetric_roi_measurement_groups(),
            *report.get_image_measurement_groups(),
        ]
    except (ValueError, AttributeError, KeyError, TypeError, IndexError) as exc:
        raise MeasurementReportError(f"unreadable measurement group: {exc}") from exc
    out: list[ReportedNodule] = []
    for group in groups:
        try:
            finding = group.finding_type
        except (ValueError, AttributeError, KeyError, TypeError, IndexError) as exc:
            raise MeasurementReportError(f"unreadable finding of a measurement group: {exc}") from exc
        if finding is None or (finding.scheme_designator, finding.value) not in NODULE_FINDINGS:
            continue
        try:
            out.append(_nodule(group, finding))
        except MeasurementReportError:
            raise
        except (ValueError, AttributeError, KeyError, TypeError, IndexError) as exc:
            # broken content items inside a nodule's group (a NUM without its value or unit, an empty
            # sequence): the nodule cannot be read, and saying so beats dropping it silently
            raise MeasurementReportError(f"nodule {_name(group)}: unreadable content ({type(exc).__name__})") from exc
    return out


def _name(group: Any) -> str:
    try:
        return str(group.tracking_identifier)
    except (ValueError, AttributeError, KeyError, TypeError, IndexError):
        return "(no tracking identifier)"


def _nodule(group: Any, finding: hd.sr.CodedConcept) -> ReportedNodule:
    """One nodule of a TID 1410/1411/1501 group (highdicom's group classes share no public base type)."""
    sizes: dict[tuple[str, str], float] = {}
    for m in group.get_measurements():
        key = (m.name.scheme_designator, m.name.value)
        if key not in _READ:
            continue
        unit = m.unit.value
        factor = _VOLUME_TO_MM3.get(unit) if key == _VOLUME else _LENGTH_TO_MM.get(unit)
        if factor is None:
            raise MeasurementReportError(f"unit {unit!r} of {m.name.meaning} is not a length or volume unit we read")
        value = float(m.value) * factor
        if not math.isfinite(value):
            raise MeasurementReportError(f"nodule {_name(group)}: {m.name.meaning} is not a finite number")
        if key in sizes and sizes[key] != value:
            raise MeasurementReportError(f"nodule {_name(group)}: two different values of {m.name.meaning}")
        sizes[key] = value
    composition = Composition.SOLID
    for evaluation in group.get_qualitative_evaluations():
        value = evaluation.value
        if not isinstance(value, hd.sr.CodedConcept):
            continue
        found = _COMPOSITIONS.get((value.scheme_designator, value.value))
        meaning = value.meaning.lower().replace("-", " ")
        if found is None and any(word in meaning for word in ("part solid", "subsolid", "semisolid")):
            found = Composition.PART_SOLID
        if found is not None:
            composition = found
    long_axis = sizes[_LONG_AXIS] if _LONG_AXIS in sizes else sizes.get(_DIAMETER)
    site = group.finding_sites[0].value if group.finding_sites else None
    try:
        nodule = Nodule(
            composition,
            long_axis_mm=long_axis,
            short_axis_mm=sizes.get(_SHORT_AXIS),
            volume_mm3=sizes.get(_VOLUME),
            solid_component_mm=sizes.get(_SOLID_PART) if composition is Composition.PART_SOLID else None,
            location=site_name(site.value, site.meaning) if site is not None else None,
        )
    except ValueError as exc:
        raise MeasurementReportError(f"nodule {group.tracking_identifier}: {exc}") from exc
    return ReportedNodule(
        nodule=nodule,
        finding=(finding.scheme_designator, finding.value, finding.meaning),
        tracking_uid=group.tracking_uid,
        tracking_identifier=group.tracking_identifier,
        finding_site=(site.scheme_designator, site.value, site.meaning) if site is not None else None,
        position_mm=_centroid(group),
    )


def _centroid(group: Any) -> tuple[float, float, float] | None:
    """The mean of the group's 3D spatial coordinates (a SCOORD3D Image Region or Volume Surface, PS3.3
    C.18.9), read from the content items directly (highdicom 0.28's VolumeSurface.from_sequence fails on
    items it built itself)."""
    for item in group[0].ContentSequence:
        if item.ValueType == "SCOORD3D" and "GraphicData" in item:
            points = np.asarray(item.GraphicData, dtype=float)
            if points.size == 0 or points.size % 3 or not np.isfinite(points).all():
                return None  # no usable position: the nodule is still read, matched to priors without it
            c = points.reshape(-1, 3).mean(axis=0)
            return (float(c[0]), float(c[1]), float(c[2]))
    return None
