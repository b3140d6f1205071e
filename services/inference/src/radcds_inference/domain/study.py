"""Where a study's series and instances are, and where to retrieve each (WADO-RS, PS3.18 10.4.1).

:mod:`radcds_inference.adapters.study_codec` reads them from the announced FHIR ImagingStudy or from QIDO-RS.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

UID = re.compile(r"^[0-9]+(\.[0-9]+)*$")


@dataclass(frozen=True, slots=True)
class InstanceLocator:
    """One instance and its WADO-RS URL."""

    sop_instance_uid: str
    sop_class_uid: str
    retrieve_url: str


@dataclass(frozen=True, slots=True)
class SeriesLocator:
    """One series: its modality (0008,0060) and instances in series order."""

    series_instance_uid: str
    modality: str
    instances: tuple[InstanceLocator, ...]

    @property
    def instances_digest(self) -> str:
        """A short digest of the instance set: a series that gains instances is a new analysis."""
        joined = "|".join(sorted(i.sop_instance_uid for i in self.instances))
        return hashlib.sha256(joined.encode()).hexdigest()[:16]


@dataclass(frozen=True, slots=True)
class StudyLocator:
    """A study's series, and every SOP Instance UID it holds (to see which SRs exist already)."""

    study_instance_uid: str
    series: tuple[SeriesLocator, ...]

    @property
    def sop_instance_uids(self) -> frozenset[str]:
        """Every instance of the study."""
        return frozenset(i.sop_instance_uid for s in self.series for i in s.instances)


def instance_url(base_url: str, study: str, series: str, sop: str) -> str:
    """WADO-RS RetrieveInstance URL (PS3.18 10.4.1.1.3)."""
    return f"{base_url.rstrip('/')}/studies/{study}/series/{series}/instances/{sop}"
