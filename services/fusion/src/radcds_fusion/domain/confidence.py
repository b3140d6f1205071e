"""Confidence modifiers: what lowers the confidence of an AI finding, said in words a clinician reads.

- a device in the imaged region (a cardiac pacemaker or other device on a chest radiograph overlaps the cardiac
  silhouette and can change the measured cardiothoracic ratio);
- an input outside the model's validated envelope (the model card's envelope; the finding was not analysed, or
  analysed at the edge of it);
- context that could not be read from the EHR.

Each modifier lowers the level one step (high → moderate → low); the reasons are kept in order.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum

from radcds_fusion.domain.context import ImplantedDevice


class ConfidenceLevel(StrEnum):
    """How far the finding can be trusted as it stands."""

    HIGH = "high"
    MODERATE = "moderate"
    LOW = "low"


_STEPS = (ConfidenceLevel.HIGH, ConfidenceLevel.MODERATE, ConfidenceLevel.LOW)

#: Device codes (SNOMED CT) that sit in the chest and change chest-radiograph measurements.
CHEST_DEVICES = frozenset(
    {
        "14106009",  # Cardiac pacemaker
        "72506001",  # Implantable defibrillator
    }
)


@dataclass(frozen=True, slots=True)
class Confidence:
    """A level and the reasons that lowered it (empty when nothing did)."""

    level: ConfidenceLevel
    reasons: tuple[str, ...] = ()


def assess_confidence(
    *,
    body_region: str,
    measurement: str | None,
    devices: Iterable[ImplantedDevice] = (),
    envelope_reasons: Iterable[str] = (),
    missing_context: Iterable[str] = (),
) -> Confidence:
    """The confidence of one AI finding in ``body_region`` (e.g. "chest") given the patient's devices, the
    envelope check and the missing context."""
    reasons: list[str] = []
    if body_region.lower() == "chest":
        for device in devices:
            if device.code in CHEST_DEVICES:
                what = f" the {measurement}" if measurement else " chest measurements"
                reasons.append(f"{device.display} documented: it can overlap the cardiac silhouette and change{what}.")
    reasons.extend(f"Outside the model's validated envelope: {r}." for r in envelope_reasons)
    missing = list(missing_context)
    if missing:
        reasons.append("Context missing: " + "; ".join(missing) + ".")
    level = _STEPS[min(len(reasons), len(_STEPS) - 1)]
    return Confidence(level, tuple(reasons))
