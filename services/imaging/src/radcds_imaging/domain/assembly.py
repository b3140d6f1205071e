"""A study announced as complete (its quiet period passed): the announcement and its deterministic event id.

See :mod:`radcds_imaging.adapters.db.assembly` for how studies are assembled and found due.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

#: Namespace of announcement event ids: one id per study and version.
ANNOUNCEMENT_NAMESPACE = uuid.UUID("0b6f7f4e-5d2a-4c7e-8f11-2a9c4e6d3b57")


@dataclass(frozen=True, slots=True)
class AnnouncedStudy:
    """A study announced as complete: its ImagingStudy, and whether it updates an earlier announcement."""

    study_instance_uid: str
    imaging_study: dict[str, Any]
    is_update: bool
    version: int
    instance_count: int
    announced_at: datetime

    @property
    def event_id(self) -> str:
        """A deterministic event id: a re-published announcement keeps its id."""
        return announcement_event_id(self.study_instance_uid, self.version)


def announcement_event_id(study_instance_uid: str, version: int) -> str:
    """The event id of a study's announcement ``version`` (fixed, so a retry keeps it)."""
    return str(uuid.uuid5(ANNOUNCEMENT_NAMESPACE, f"{study_instance_uid}:{version}"))
