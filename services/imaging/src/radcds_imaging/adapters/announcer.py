"""Background loop that announces complete studies (quiet period elapsed) as ``ImagingStudyAvailable``."""

from __future__ import annotations

import logging
import threading

from radcds.domain.events import STUDY_AVAILABLE
from radcds.domain.ports import EventPublisher
from radcds_imaging.adapters.db.assembly import StudyAssembler
from radcds_imaging.domain.assembly import AnnouncedStudy

log = logging.getLogger(__name__)


def study_available_payload(study: AnnouncedStudy) -> dict[str, object]:
    """The event payload (schema imaging-study-available.v1)."""
    return {
        "studyInstanceUid": study.study_instance_uid,
        "version": study.version,
        "isUpdate": study.is_update,
        "numberOfInstances": study.instance_count,
        "imagingStudy": study.imaging_study,
    }


class StudyAnnouncer:
    """Every ``interval_s``: announce each due study once; a failed publish leaves it due for the next round."""

    def __init__(self, assembler: StudyAssembler, publisher: EventPublisher, *, interval_s: float) -> None:
        self._assembler = assembler
        self._publisher = publisher
        self._interval_s = interval_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def run_once(self) -> int:
        """Announce what is due now; returns how many studies were announced."""
        announced = 0
        for uid in self._assembler.due(limit=100):

            def publish(study: AnnouncedStudy) -> None:
                self._publisher.publish(
                    STUDY_AVAILABLE,
                    study_available_payload(study),
                    event_id=study.event_id,
                    subject=study.study_instance_uid,
                )

            try:
                if self._assembler.announce(uid, publish=publish) is not None:
                    announced += 1
            except Exception as exc:
                log.warning("study not announced yet", extra={"error_class": type(exc).__name__})
        return announced

    def start(self) -> None:
        """Run :meth:`run_once` periodically in a daemon thread."""

        def loop() -> None:
            while not self._stop.wait(self._interval_s):
                try:
                    self.run_once()
                except Exception:
                    log.exception("study announcer failed")

        self._thread = threading.Thread(target=loop, name="study-announcer", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop the loop."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
