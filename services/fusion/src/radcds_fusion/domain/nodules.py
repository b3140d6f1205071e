"""Pulmonary nodules as the follow-up guidelines measure them.

- Fleischner Society 2017 (MacMahon H et al., *Radiology* 2017;284:228-243, doi:10.1148/radiol.2017161659):
  nodule size is the average of the long and short axes, rounded to the nearest millimetre; volume bands
  (100 and 250 mm³) are given separately.
- Lung-RADS v2022 (ACR; summarised in Christensen J et al., *CHEST* 2024;165:738-753): long and short axes to
  one decimal place; the mean diameter is reported to one decimal place.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal
from enum import StrEnum


class Composition(StrEnum):
    """Nodule attenuation as both guidelines classify it."""

    SOLID = "solid"
    PART_SOLID = "part-solid"
    GROUND_GLASS = "ground-glass"


class Feature(StrEnum):
    """Qualitative features that change a guideline's answer (Lung-RADS v2022 categories 1, 2, 4A, 4X)."""

    #: Complete, central, popcorn or concentric-ring calcification, or fat: benign (Lung-RADS 1).
    BENIGN_CALCIFICATION_OR_FAT = "benign-calcification-or-fat"
    #: Perifissural or juxtapleural, smooth, oval/lentiform/triangular solid nodule (Lung-RADS 2 when < 10 mm).
    JUXTAPLEURAL = "juxtapleural"
    #: Endobronchial (airway) nodule, segmental or more proximal (Lung-RADS 4A).
    ENDOBRONCHIAL = "endobronchial"
    #: Additional features or findings that increase suspicion (spiculation, adenopathy...): Lung-RADS 4X.
    SUSPICIOUS = "suspicious"


#: SNOMED CT lung structures by which a nodule's location is named, whoever reported it (a TID 1500 SR's Finding
#: Site, an EHR Observation's bodySite, a radiologist's entry): one name per code, so that a nodule and its prior
#: match on location even when the senders' display texts differ (SNOMED CT preferred terms, shortened).
LUNG_SITES: dict[str, str] = {
    "39607008": "Lung",
    "3341006": "Right lung",
    "44029006": "Left lung",
    "45653009": "Upper lobe of right lung",
    "72481006": "Middle lobe of right lung",
    "266005": "Lower lobe of right lung",
    "44714003": "Upper lobe of left lung",
    "90572001": "Lower lobe of left lung",
}


def site_name(code: str | None, text: str | None = None) -> str | None:
    """The location name of a SNOMED CT lung structure ``code``; else the sender's ``text``."""
    return LUNG_SITES.get(code or "", text or None)


def round_half_up(value: float, places: int = 0) -> float:
    """Round as clinicians do (half up), not banker's rounding; binary noise below 1e-9 is dropped first, so
    that (6.1 + 5.8) / 2 reads as 5.95 and rounds to 6.0."""
    quantum = Decimal(1).scaleb(-places)
    return float(Decimal(repr(round(value, 9))).quantize(quantum, rounding=ROUND_HALF_UP))


@dataclass(frozen=True, slots=True)
class Nodule:
    """One measured pulmonary nodule.

    ``long_axis_mm``/``short_axis_mm`` are the axes measured on one image; ``volume_mm3`` a segmented volume;
    ``solid_component_mm`` the mean diameter of the solid part of a part-solid nodule. Raises ``ValueError`` for
    impossible measurements, so that a wrong input never reaches a guideline.
    """

    composition: Composition
    long_axis_mm: float | None = None
    short_axis_mm: float | None = None
    volume_mm3: float | None = None
    solid_component_mm: float | None = None
    location: str | None = None
    features: frozenset[Feature] = field(default_factory=frozenset)

    def __post_init__(self) -> None:
        for name in ("long_axis_mm", "short_axis_mm", "volume_mm3", "solid_component_mm"):
            value = getattr(self, name)
            if value is not None and (not math.isfinite(value) or value <= 0):
                raise ValueError(f"{name} must be a positive number, not {value!r}")
        if self.long_axis_mm is None and self.short_axis_mm is not None:
            raise ValueError("a short axis needs a long axis")
        if self.long_axis_mm is not None and self.short_axis_mm is not None and self.short_axis_mm > self.long_axis_mm:
            raise ValueError("the short axis cannot exceed the long axis")
        if self.long_axis_mm is None and self.volume_mm3 is None:
            raise ValueError("a nodule needs a diameter or a volume")
        if self.solid_component_mm is not None and self.composition is not Composition.PART_SOLID:
            raise ValueError("only a part-solid nodule has a solid component")

    @property
    def mean_diameter_mm(self) -> float | None:
        """The average of long and short axes (the long axis alone when no short axis was measured)."""
        if self.long_axis_mm is None:
            return None
        if self.short_axis_mm is None:
            return self.long_axis_mm
        return (self.long_axis_mm + self.short_axis_mm) / 2

    @property
    def volume_or_sphere_mm3(self) -> float:
        """The measured volume, else the volume of a sphere of the mean diameter (π/6·d³), for doubling times."""
        if self.volume_mm3 is not None:
            return self.volume_mm3
        d = self.mean_diameter_mm
        assert d is not None  # __post_init__: a diameter or a volume
        return math.pi / 6 * d**3
