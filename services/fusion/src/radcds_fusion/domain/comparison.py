"""Findings compared with the patient's prior studies: new, resolved, stable, increased or decreased.

Matching: a current finding is paired with a prior of the same finding code and body site, the nearest in
location when both carry a position (patient coordinates in mm), else the first of that code and site.

Tolerances for "stable" (the change below which two measurements are the same finding, unchanged):
- pulmonary nodules: 1.5 mm of mean diameter, the Lung-RADS v2022 growth threshold (an increase of more than
  1.5 mm is growth; Christensen et al., CHEST 2024;165:738), also used for decrease;
- any other measured finding: the absolute or relative tolerance its caller passes for that finding code (see
  ``knowledge/findings.json``).

Volume doubling time VDT = Δt·ln2 / ln(V2/V1) (Schwartz 1961; as used by the Fleischner Society 2017), with
volumes measured or, without a volume, the sphere of the mean diameter.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from enum import StrEnum

from radcds_fusion.domain.guidelines import NoduleStatus
from radcds_fusion.domain.nodules import Nodule

#: Lung-RADS v2022 growth threshold on the mean diameter (mm): the "stable" tolerance for nodules.
NODULE_TOLERANCE_MM = 1.5
#: Lung-RADS v2022: growth counts within a 12-month interval.
GROWTH_WINDOW_DAYS = 366


class Change(StrEnum):
    """A finding against its prior."""

    NEW = "new"
    RESOLVED = "resolved"
    STABLE = "stable"
    INCREASED = "increased"
    DECREASED = "decreased"


@dataclass(frozen=True, slots=True)
class MeasuredFinding:
    """A finding from one study: its code, body site, optional position and value, and the study date."""

    code: str
    body_site: str | None
    study_date: date
    value: float | None = None
    unit: str | None = None
    position_mm: tuple[float, float, float] | None = None
    nodule: Nodule | None = None
    reference: str | None = None  # e.g. the FHIR Observation or SR content item it came from


@dataclass(frozen=True, slots=True)
class Comparison:
    """One current finding (or a resolved prior) against its prior."""

    change: Change
    current: MeasuredFinding | None
    prior: MeasuredFinding | None
    delta: float | None = None
    interval_days: int | None = None
    volume_doubling_time_days: float | None = None
    tolerance: float | None = None

    @property
    def nodule_status(self) -> NoduleStatus:
        """The Lung-RADS status of a current nodule: growth needs > 1.5 mm within 12 months."""
        if self.change is Change.NEW:
            return NoduleStatus.NEW
        if self.prior is None:
            return NoduleStatus.BASELINE
        if self.change is Change.INCREASED:
            within = self.interval_days is not None and self.interval_days <= GROWTH_WINDOW_DAYS
            return NoduleStatus.GROWING if within else NoduleStatus.STABLE
        if self.change is Change.DECREASED:
            return NoduleStatus.DECREASING
        return NoduleStatus.STABLE


def volume_doubling_time_days(v1: float, v2: float, interval_days: int) -> float | None:
    """VDT = Δt·ln2 / ln(V2/V1); ``None`` when the volume did not change or the interval is zero
    (a shrinking nodule has a negative VDT, which is returned as such)."""
    if v1 <= 0 or v2 <= 0:
        raise ValueError("volumes must be positive")
    if interval_days <= 0 or math.isclose(v1, v2, rel_tol=1e-12):
        return None
    return interval_days * math.log(2) / math.log(v2 / v1)


def classify(delta: float, tolerance: float) -> Change:
    """Stable within ±tolerance (inclusive), else increased or decreased."""
    if delta > tolerance:
        return Change.INCREASED
    if delta < -tolerance:
        return Change.DECREASED
    return Change.STABLE


def compare(
    current: MeasuredFinding,
    prior: MeasuredFinding,
    *,
    tolerance: float | None = None,
    relative_tolerance: float | None = None,
) -> Comparison:
    """Compare two matched findings; nodules by mean diameter (tolerance 1.5 mm) with their VDT; other values
    by an absolute ``tolerance`` or a ``relative_tolerance`` (a fraction of the prior value)."""
    interval = (current.study_date - prior.study_date).days
    if current.nodule is not None and prior.nodule is not None:
        d2, d1 = current.nodule.mean_diameter_mm, prior.nodule.mean_diameter_mm
        tol = NODULE_TOLERANCE_MM if tolerance is None else tolerance
        vdt = volume_doubling_time_days(
            prior.nodule.volume_or_sphere_mm3, current.nodule.volume_or_sphere_mm3, interval
        )
        if d1 is not None and d2 is not None:
            delta = d2 - d1
            change = classify(delta, tol)
        else:
            v1, v2 = prior.nodule.volume_or_sphere_mm3, current.nodule.volume_or_sphere_mm3
            delta = v2 - v1
            # Without diameters, a volume change of 25 % is the usual growth threshold for segmented volumes.
            change = classify((v2 - v1) / v1, 0.25)
            tol = 0.25
        return Comparison(change, current, prior, delta, interval, vdt, tol)
    if current.value is None or prior.value is None:
        return Comparison(Change.STABLE, current, prior, None, interval, None, tolerance)
    delta = current.value - prior.value
    if relative_tolerance is not None and prior.value > 0:
        return Comparison(
            classify(delta / prior.value, relative_tolerance), current, prior, delta, interval, None, relative_tolerance
        )
    if tolerance is None:
        raise ValueError(f"no tolerance given for {current.code}")
    return Comparison(classify(delta, tolerance), current, prior, delta, interval, None, tolerance)


def match_and_compare(
    current: Sequence[MeasuredFinding],
    priors: Sequence[MeasuredFinding],
    *,
    tolerances: dict[str, float] | None = None,
    relative_tolerances: dict[str, float] | None = None,
) -> list[Comparison]:
    """Pair each current finding with its prior (same code and body site, nearest in location; the most recent
    prior study first) and compare; unmatched current findings are new, unmatched priors of the latest prior
    study are resolved."""
    tolerances = tolerances or {}
    relative = relative_tolerances or {}
    latest: dict[tuple[str, str | None], date] = {}
    for p in priors:
        key = (p.code, p.body_site)
        latest[key] = max(latest.get(key, p.study_date), p.study_date)
    pool = [p for p in priors if p.study_date == latest[(p.code, p.body_site)]]
    used: set[int] = set()
    out: list[Comparison] = []
    for finding in current:
        candidates = [
            i
            for i, p in enumerate(pool)
            if i not in used and p.code == finding.code and p.body_site == finding.body_site
        ]
        if not candidates:
            out.append(Comparison(Change.NEW, finding, None))
            continue
        best = min(candidates, key=lambda i: _distance(finding, pool[i]))
        used.add(best)
        out.append(
            compare(
                finding,
                pool[best],
                tolerance=tolerances.get(finding.code),
                relative_tolerance=relative.get(finding.code),
            )
        )
    out.extend(Comparison(Change.RESOLVED, None, p) for i, p in enumerate(pool) if i not in used)
    return out


def _distance(a: MeasuredFinding, b: MeasuredFinding) -> float:
    if a.position_mm is None or b.position_mm is None:
        return 0.0
    return math.dist(a.position_mm, b.position_mm)
