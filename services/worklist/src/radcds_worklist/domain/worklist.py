"""The worklist: the studies a radiologist reads, most urgent first (issue #13).

Order (:func:`priority_key`): studies with a **critical finding** first, the oldest critical finding first (ACR
Practice Parameter for Communication of Diagnostic Imaging Findings: critical results need timely communication);
then by the order's priority (FHIR R4 ServiceRequest.priority, value set ``request-priority``: ``stat`` before
``asap`` before ``urgent`` before ``routine``); then by **time waiting**, the oldest first.

Report status groups follow FHIR R4 DiagnosticReport.status (8.1.5, value set ``diagnostic-report-status``):
``registered``, ``partial`` and ``preliminary`` (and no report yet) are *to read*; ``final``, ``amended``,
``corrected`` and ``appended`` are *signed*. The page shows the studies to read by default.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum

from radcds_worklist.domain.locks import ReadingLock

#: FHIR R4 request-priority codes, most urgent first (the rank is the index).
PRIORITIES = ("stat", "asap", "urgent", "routine")
PRIORITY_RANK = {p: i for i, p in enumerate(PRIORITIES)}
#: DiagnosticReport.status values of a report still to read ("" is a study reporting has no report for yet).
TO_READ_STATUSES = frozenset({"", "registered", "partial", "preliminary"})
#: DiagnosticReport.status values of a signed report.
SIGNED_STATUSES = frozenset({"final", "amended", "corrected", "appended"})
#: DICOM modalities of derived objects (PS3.3 C.7.3.1.1.1), never a study's acquisition modality.
DERIVED_MODALITIES = frozenset({"SR", "KO", "PR", "SEG", "REG", "DOC"})
#: The rank of a study without a critical finding: after every critical one.
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_FINDING_NAMESPACE = uuid.UUID("0c3f5a7e-91d2-4b6e-8f4a-2d7c9e1b3a55")


class CriticalState(StrEnum):
    """Where the communication of a critical result stands (reporting's FHIR Communication life cycle)."""

    NONE = ""
    #: A Communication was sent to the ordering clinician.
    NOTIFIED = "notified"
    #: It was not acknowledged in time and went to another responsible clinician.
    ESCALATED = "escalated"
    #: The recipient acknowledged it: the loop is closed.
    ACKNOWLEDGED = "acknowledged"


_STATE_RANK = {
    CriticalState.NONE: 0,
    CriticalState.NOTIFIED: 1,
    CriticalState.ESCALATED: 2,
    CriticalState.ACKNOWLEDGED: 3,
}


def next_critical_state(current: str, reached: CriticalState) -> CriticalState:
    """The state after an event says ``reached``: states only move forward (notified, escalated, acknowledged), so
    a redelivered or late event never undoes a later one."""
    now = CriticalState(current or "")
    return reached if _STATE_RANK[reached] > _STATE_RANK[now] else now


class StatusGroup(StrEnum):
    """The report-status filter of the page."""

    TO_READ = "to-read"
    SIGNED = "signed"
    ALL = "all"

    @property
    def statuses(self) -> frozenset[str] | None:
        """The DiagnosticReport.status values of the group (None: every status)."""
        if self is StatusGroup.TO_READ:
            return TO_READ_STATUSES
        if self is StatusGroup.SIGNED:
            return SIGNED_STATUSES
        return None


def status_group(report_status: str) -> StatusGroup | None:
    """The group of a DiagnosticReport.status (None for cancelled or entered-in-error: only under "all")."""
    if report_status in TO_READ_STATUSES:
        return StatusGroup.TO_READ
    if report_status in SIGNED_STATUSES:
        return StatusGroup.SIGNED
    return None


def primary_modality(modalities: list[str] | tuple[str, ...]) -> str:
    """The study's acquisition modality among those of its series (derived objects such as SR left out)."""
    acquired = [m for m in modalities if m and m not in DERIVED_MODALITIES]
    return (acquired or [m for m in modalities if m] or [""])[0]


def finding_id(study_uid: str, series_uid: str, model_name: str) -> str:
    """The worklist's id of one model's analysis of one series: the same analysis, redelivered or re-run, is the
    same row."""
    return str(uuid.uuid5(_FINDING_NAMESPACE, f"{study_uid}|{series_uid}|{model_name}"))


def person_name_display(pn: str) -> str:
    """A DICOM PN alphabetic group ``Family^Given^Middle^Prefix^Suffix`` (PS3.5 6.2.1) as "Family, Given Middle"."""
    parts = [p.strip() for p in pn.split("=")[0].split("^")]
    family = parts[0] if parts else ""
    given = " ".join(p for p in parts[1:3] if p)
    return f"{family}, {given}" if family and given else family or given


@dataclass(frozen=True, slots=True)
class FindingsSummary:
    """What the AI said about a study, for its row: the models (``name version``), the coded findings' names, and
    whether any finding is critical; ``declined`` counts analyses a model declined (outside its envelope)."""

    models: tuple[str, ...] = ()
    codes: tuple[str, ...] = ()
    critical: bool = False
    declined: int = 0


@dataclass(frozen=True, slots=True)
class WorklistEntry:
    """One study on the list (DICOM Study Instance UID), as the events built it."""

    study_uid: str
    received_at: datetime
    accession_number: str = ""
    #: Patient's Name shown as "Family, Given"; ``patient_id`` is the DICOM Patient ID (the MRN).
    patient_name: str = ""
    patient_id: str = ""
    modality: str = ""
    body_part: str = ""
    study_description: str = ""
    study_date: str = ""
    #: FHIR ServiceRequest.priority of the order (``routine`` without an order).
    order_priority: str = "routine"
    report_id: str | None = None
    #: FHIR DiagnosticReport.status ("" before reporting wrote one).
    report_status: str = ""
    report_version: str = ""
    results_interpreter: str = ""
    critical: bool = False
    critical_since: datetime | None = None
    critical_state: CriticalState = CriticalState.NONE
    findings: FindingsSummary = field(default_factory=FindingsSummary)
    #: The live reading lock, if someone holds one.
    lock: ReadingLock | None = None

    def waiting(self, now: datetime) -> float:
        """Seconds since the worklist first heard of the study."""
        return max(0.0, (now - self.received_at).total_seconds())

    @property
    def signed(self) -> bool:
        """True once the report is signed (final, amended, corrected, appended)."""
        return self.report_status in SIGNED_STATUSES


def priority_key(entry: WorklistEntry) -> tuple[int, datetime, int, datetime, str]:
    """The sort key of the list: critical first (oldest critical first), then stat, asap, urgent, routine, then
    the longest waiting; the Study Instance UID breaks ties so the order is total."""
    critical = (0, entry.critical_since or entry.received_at) if entry.critical else (1, _EPOCH)
    rank = PRIORITY_RANK.get(entry.order_priority, PRIORITY_RANK["routine"])
    return (critical[0], critical[1], rank, entry.received_at, entry.study_uid)


#: The priority filter's values: an order priority, or ``critical`` for the studies with a critical finding.
PRIORITY_FILTERS = frozenset({*PRIORITIES, "critical"})


@dataclass(frozen=True, slots=True)
class WorklistFilter:
    """The page's filters; the default shows every study not yet signed."""

    modality: str | None = None
    status: StatusGroup = StatusGroup.TO_READ
    #: An order priority (stat, asap, urgent, routine) or ``critical``.
    priority: str | None = None
    #: A user id: only the studies this user holds the live lock on.
    mine: str | None = None

    def __post_init__(self) -> None:
        if self.priority is not None and self.priority not in PRIORITY_FILTERS:
            raise ValueError(f"priority must be one of {', '.join(sorted(PRIORITY_FILTERS))}")

    def matches(self, entry: WorklistEntry, *, now: datetime) -> bool:
        """Whether ``entry`` passes every filter at ``now`` (a lock counts while live)."""
        if self.modality and self.modality.upper() != entry.modality.upper():
            return False
        statuses = self.status.statuses
        if statuses is not None and entry.report_status not in statuses:
            return False
        if self.priority == "critical" and not entry.critical:
            return False
        if self.priority not in (None, "critical") and entry.order_priority != self.priority:
            return False
        return not (self.mine and (entry.lock is None or not entry.lock.held_by(self.mine, now)))
