"""Use case: the reading desk. A radiologist lists the studies (most urgent first), opens one, takes it ("assign to
me", a reading lock), and signs its report as drafted (accept) or edited (conclusion and added nodules) through
reporting's FHIR API (FHIR R4 DiagnosticReport, 8.1: ``final``, signed by the ``resultsInterpreter``).

Every action is the signed-in user's own (:class:`~radcds_worklist.domain.access.User`): the Practitioner signing
is the user's, never one from a form. The study's report status follows from reporting's
``diagnostic-report.stored`` event later; the desk also writes it at once (optimistically) so the page moves on.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine

from radcds_worklist.adapters.db.live import append_live
from radcds_worklist.adapters.db.locks import LockStore
from radcds_worklist.adapters.db.studies import DEFAULT_LIMIT, WorklistRepository, entry_data
from radcds_worklist.domain.access import Forbidden, User
from radcds_worklist.domain.locks import LockHeld, ReadingLock
from radcds_worklist.domain.ports import AddedNodule, DraftReport, Reporting
from radcds_worklist.domain.worklist import WorklistEntry, WorklistFilter


class StudyNotFound(LookupError):
    """The worklist has no such study (HTTP 404)."""


class NoReportYet(LookupError):
    """The study has no DiagnosticReport to sign yet (HTTP 409)."""


@dataclass(frozen=True, slots=True)
class StudyView:
    """Everything the study page shows: the list's entry, each model's analysis rows (``data`` is the findings
    event's payload: measurements, coded findings, location points, key image), fusion's assessment."""

    entry: WorklistEntry
    findings: tuple[dict[str, Any], ...]
    assessment: dict[str, Any] | None


class ReadingDesk:
    """The radiologist's actions over the worklist's database, its locks and reporting."""

    def __init__(
        self,
        *,
        engine: Engine,
        locks: LockStore,
        reporting: Reporting,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._engine = engine
        self._locks = locks
        self._reporting = reporting
        self._clock = clock

    def worklist(
        self, filters: WorklistFilter, user: User, *, limit: int = DEFAULT_LIMIT, offset: int = 0
    ) -> list[WorklistEntry]:
        """The studies passing ``filters``, most urgent first (``mine`` means this user's locks)."""
        _require_read(user)
        with self._engine.connect() as conn:
            return WorklistRepository(conn).entries(filters, now=self._clock(), limit=limit, offset=offset)

    def study(self, study_uid: str, user: User) -> StudyView:
        """One study with its findings and assessment; raises :class:`StudyNotFound`."""
        _require_read(user)
        with self._engine.connect() as conn:
            repo = WorklistRepository(conn)
            entry = repo.entry(study_uid, now=self._clock())
            if entry is None:
                raise StudyNotFound(study_uid)
            row = repo.study(study_uid) or {}
            return StudyView(entry, tuple(repo.findings(study_uid)), row.get("assessment"))

    def draft(self, report_id: str, user: User, token: str | None) -> DraftReport:
        """The study's report as reporting holds it now (the page shows its conclusion and signs that version)."""
        _require_read(user)
        return self._reporting.read(report_id, token=token)

    def assign(self, study_uid: str, user: User) -> ReadingLock:
        """ "Assign to me": take or renew the study's lock; raises :class:`LockHeld` (who, until when)."""
        user.require_sign()
        self._entry(study_uid)
        return self._locks.acquire(study_uid, user_id=user.id, user_name=user.name, now=self._clock())

    def release(self, study_uid: str, user: User) -> bool:
        """Give the study back; True if the user's lock was released (raises :class:`LockHeld` for another's)."""
        _require_read(user)
        return self._locks.release(study_uid, user_id=user.id, now=self._clock())

    def accept(self, study_uid: str, user: User, token: str | None) -> WorklistEntry:
        """Sign the draft report as it is (``final``, the user as results interpreter), forwarding the user's
        access ``token`` to reporting. The user must hold the lock or be able to take it.

        Raises:
            Forbidden: the user may not sign. LockHeld: another radiologist reads the study.
            StudyNotFound, NoReportYet; and reporting's errors (:mod:`radcds_worklist.domain.ports`).
        """
        report = self._prepare(study_uid, user, token)
        signed = self._reporting.sign(report, practitioner=user.practitioner, token=token)
        return self._signed(study_uid, user, signed)

    def sign_edited(
        self,
        study_uid: str,
        user: User,
        token: str | None,
        *,
        conclusion: str,
        nodules: tuple[AddedNodule, ...] = (),
    ) -> WorklistEntry:
        """Sign the report with the radiologist's own conclusion and the nodules they added (structured findings
        fusion then assesses); the same checks and errors as :meth:`accept`."""
        if not conclusion.strip():
            raise ValueError("an edited report needs its conclusion")
        report = self._prepare(study_uid, user, token)
        signed = self._reporting.sign_edited(
            report, practitioner=user.practitioner, conclusion=conclusion, nodules=nodules, token=token
        )
        return self._signed(study_uid, user, signed)

    # ---- helpers ---------------------------------------------------------------------------------------------

    def _entry(self, study_uid: str) -> WorklistEntry:
        with self._engine.connect() as conn:
            entry = WorklistRepository(conn).entry(study_uid, now=self._clock())
        if entry is None:
            raise StudyNotFound(study_uid)
        return entry

    def _prepare(self, study_uid: str, user: User, token: str | None) -> DraftReport:
        user.require_sign()
        entry = self._entry(study_uid)
        if not entry.report_id:
            raise NoReportYet(f"study {study_uid} has no report to sign yet")
        self._locks.acquire(study_uid, user_id=user.id, user_name=user.name, now=self._clock())
        return self._reporting.read(entry.report_id, token=token)

    def _signed(self, study_uid: str, user: User, signed: DraftReport) -> WorklistEntry:
        now = self._clock()
        with self._engine.begin() as conn:
            repo = WorklistRepository(conn)
            row = repo.study(study_uid) or {}
            held = str(row.get("report_version") or "")
            if not (held.isdigit() and signed.version.isdigit() and int(signed.version) < int(held)):
                values = {
                    "report_id": signed.id,
                    "report_status": signed.status,
                    "report_version": signed.version,
                    "results_interpreter": user.practitioner,
                }
                if repo.change_study(study_uid, values, now=now):
                    entry = repo.entry(study_uid, now=now)
                    assert entry is not None
                    append_live(
                        conn,
                        "report",
                        study_uid,
                        {"entry": entry_data(entry, now=now), "reportId": signed.id, "status": signed.status},
                    )
        # signed: the study is done (if the lock expired while signing and another radiologist took it, it is theirs)
        with contextlib.suppress(LockHeld):
            self._locks.release(study_uid, user_id=user.id, now=now)
        return self._entry(study_uid)


def _require_read(user: User) -> None:
    if not user.can_read:
        raise Forbidden("reading the worklist needs a role")


__all__ = ["LockHeld", "NoReportYet", "ReadingDesk", "StudyNotFound", "StudyView"]
