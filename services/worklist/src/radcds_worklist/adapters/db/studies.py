"""The worklist's read model in its database (SQLAlchemy Core): the studies, their findings and orders, and the
list query in the domain's order (:func:`radcds_worklist.domain.worklist.priority_key`), done in SQL so that a
page of 5,000 studies lists fast.

Every function works in the caller's transaction, so that a change and its live event (:func:`append_live`) and
the processed-event record commit together. Writing the same values again changes nothing (idempotent upserts).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, and_, case, func, insert, select, true, update
from sqlalchemy.sql.elements import ColumnElement

from radcds_worklist.db.tables import reading_locks, worklist_findings, worklist_orders, worklist_studies
from radcds_worklist.domain.locks import ReadingLock
from radcds_worklist.domain.worklist import (
    PRIORITIES,
    PRIORITY_RANK,
    CriticalState,
    FindingsSummary,
    WorklistEntry,
    WorklistFilter,
)

S = worklist_studies.c
#: The columns an event may fill in or change (``received_at`` and ``updated_at`` are the store's own).
STUDY_COLUMNS = frozenset(c.name for c in worklist_studies.columns) - {"study_uid", "received_at", "updated_at"}
#: Defaults of the columns a new row starts with (the table's own defaults, stated for every dialect).
_EMPTY: dict[str, Any] = {
    "accession_number": "",
    "patient_id": "",
    "patient_name": "",
    "modality": "",
    "body_part": "",
    "study_description": "",
    "study_date": "",
    "order_priority": "routine",
    "report_status": "",
    "report_version": "",
    "results_interpreter": "",
    "critical": False,
    "critical_state": "",
}
DEFAULT_LIMIT = 100


def utc(value: datetime | None) -> datetime | None:
    """A stored time as a timezone-aware UTC time (SQLite gives back naive UTC times)."""
    if value is None:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _utc(value: datetime) -> datetime:
    aware = utc(value)
    assert aware is not None
    return aware


def priority_order() -> tuple[ColumnElement[Any], ...]:
    """ORDER BY of the list, the SQL twin of ``priority_key``: critical first (oldest critical first), then the
    order priority's rank, then the time waiting, then the Study Instance UID."""
    critical_rank = case((S.critical == true(), 0), else_=1)
    critical_time = case((S.critical == true(), func.coalesce(S.critical_since, S.received_at)))
    rank = case({p: PRIORITY_RANK[p] for p in PRIORITIES}, value=S.order_priority, else_=PRIORITY_RANK["routine"])
    return (critical_rank, critical_time, rank, S.received_at.asc(), S.study_uid.asc())


class WorklistRepository:
    """The read model over one connection (the caller's transaction)."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn

    # ---- studies ---------------------------------------------------------------------------------------------

    def study(self, study_uid: str) -> dict[str, Any] | None:
        """The study's row, or None."""
        row = self._conn.execute(select(worklist_studies).where(S.study_uid == study_uid)).mappings().first()
        return dict(row) if row is not None else None

    def ensure_study(self, study_uid: str, *, now: datetime) -> bool:
        """Create the study's row if the worklist never heard of it (whatever event came first); True if created."""
        if self.study(study_uid) is not None:
            return False
        self._conn.execute(
            insert(worklist_studies).values(study_uid=study_uid, received_at=now, updated_at=now, **_EMPTY)
        )
        return True

    def change_study(
        self, study_uid: str, values: Mapping[str, Any], *, now: datetime, only_empty: bool = False
    ) -> bool:
        """Set ``values`` on the study (``only_empty``: only where the row has nothing yet); True if anything
        changed. Unknown columns are refused."""
        unknown = set(values) - STUDY_COLUMNS
        if unknown:
            raise ValueError(f"not worklist_studies columns: {sorted(unknown)}")
        row = self.study(study_uid)
        if row is None:
            raise LookupError(study_uid)
        changed = {
            k: v
            for k, v in values.items()
            if _differs(row[k], v) and (not only_empty or row[k] in (None, "", _EMPTY.get(k)))
        }
        if not changed:
            return False
        self._conn.execute(update(worklist_studies).where(S.study_uid == study_uid).values(updated_at=now, **changed))
        return True

    def studies_for_order(self, *, accession_number: str, study_uid: str) -> list[str]:
        """Studies an order is for: by Study Instance UID, else by accession number."""
        clauses = []
        if study_uid:
            clauses.append(S.study_uid == study_uid)
        if accession_number:
            clauses.append(S.accession_number == accession_number)
        if not clauses:
            return []
        rows = self._conn.execute(
            select(S.study_uid).where(clauses[0] if len(clauses) == 1 else clauses[0] | clauses[1])
        )
        return sorted(rows.scalars())

    # ---- orders ----------------------------------------------------------------------------------------------

    def save_order(
        self,
        *,
        service_request_id: str,
        accession_number: str,
        study_uid: str,
        priority: str,
        status: str,
        now: datetime,
    ) -> None:
        """Record (or update) an imaging order."""
        values = {
            "accession_number": accession_number,
            "study_uid": study_uid,
            "priority": priority,
            "status": status,
            "updated_at": now,
        }
        found = self._conn.execute(
            select(worklist_orders.c.service_request_id).where(
                worklist_orders.c.service_request_id == service_request_id
            )
        ).first()
        if found is None:
            self._conn.execute(insert(worklist_orders).values(service_request_id=service_request_id, **values))
        else:
            self._conn.execute(
                update(worklist_orders)
                .where(worklist_orders.c.service_request_id == service_request_id)
                .values(**values)
            )

    def order_for(self, *, study_uid: str, accession_number: str) -> dict[str, Any] | None:
        """The active order of a study (by its UID, else its accession number), the newest first."""
        o = worklist_orders.c
        match = o.study_uid == study_uid
        if accession_number:
            match = match | (o.accession_number == accession_number)
        row = (
            self._conn.execute(
                select(worklist_orders).where(match, o.status == "active").order_by(o.updated_at.desc()).limit(1)
            )
            .mappings()
            .first()
        )
        return dict(row) if row is not None else None

    # ---- findings and assessment -----------------------------------------------------------------------------

    def upsert_finding(self, values: Mapping[str, Any]) -> bool:
        """Write one analysis row (by its deterministic ``finding_id``); True if it is new or changed. The same
        analysis sent again (another event, another time) changes nothing: ``produced_at`` follows a change only."""
        fid = values["finding_id"]
        f = worklist_findings.c
        row = self._conn.execute(select(worklist_findings).where(f.finding_id == fid)).mappings().first()
        if row is None:
            self._conn.execute(insert(worklist_findings).values(**values))
            return True
        changed = {k: v for k, v in values.items() if k != "finding_id" and _differs(row[k], v)}
        if set(changed) <= {"produced_at"}:
            return False
        self._conn.execute(update(worklist_findings).where(f.finding_id == fid).values(**changed))
        return True

    def findings(self, study_uid: str) -> list[dict[str, Any]]:
        """The study's analysis rows, in the order they were produced."""
        f = worklist_findings.c
        rows = self._conn.execute(
            select(worklist_findings)
            .where(f.study_uid == study_uid)
            .order_by(f.produced_at, f.model_name, f.series_uid)
        ).mappings()
        return [dict(r) | {"produced_at": utc(r["produced_at"])} for r in rows]

    # ---- the list --------------------------------------------------------------------------------------------

    def entry(self, study_uid: str, *, now: datetime) -> WorklistEntry | None:
        """One study as the list shows it (with its live lock), or None."""
        found = self._entries(select_where=[S.study_uid == study_uid], now=now, limit=1, offset=0)
        return found[0] if found else None

    def entries(
        self, filters: WorklistFilter, *, now: datetime, limit: int = DEFAULT_LIMIT, offset: int = 0
    ) -> list[WorklistEntry]:
        """The studies passing ``filters``, most urgent first (``priority_key``), ``limit`` from ``offset``."""
        where: list[ColumnElement[bool]] = []
        if filters.modality:
            where.append(func.upper(S.modality) == filters.modality.upper())
        statuses = filters.status.statuses
        if statuses is not None:
            where.append(S.report_status.in_(sorted(statuses)))
        if filters.priority == "critical":
            where.append(S.critical == true())
        elif filters.priority is not None:
            where.append(S.order_priority == filters.priority)
        if filters.mine:
            where.append(reading_locks.c.user_id == filters.mine)
        return self._entries(select_where=where, now=now, limit=limit, offset=offset)

    def count(self, filters: WorklistFilter) -> int:
        """How many studies are in the report-status group of ``filters`` (for the page's header)."""
        q = select(func.count()).select_from(worklist_studies)
        statuses = filters.status.statuses
        if statuses is not None:
            q = q.where(S.report_status.in_(sorted(statuses)))
        return int(self._conn.execute(q).scalar_one())

    def _entries(
        self, *, select_where: list[ColumnElement[bool]], now: datetime, limit: int, offset: int
    ) -> list[WorklistEntry]:
        if limit < 1:
            raise ValueError("limit must be at least 1")
        lock = reading_locks.c
        q = (
            select(worklist_studies, lock.user_id, lock.user_name, lock.acquired_at, lock.expires_at)
            .select_from(
                worklist_studies.outerjoin(reading_locks, and_(lock.study_uid == S.study_uid, lock.expires_at > now))
            )
            .where(*select_where)
            .order_by(*priority_order())
            .limit(limit)
            .offset(offset)
        )
        rows = [dict(r) for r in self._conn.execute(q).mappings()]
        summaries = self._summaries([r["study_uid"] for r in rows])
        return [_entry(r, summaries.get(r["study_uid"], FindingsSummary())) for r in rows]

    def _summaries(self, study_uids: list[str]) -> dict[str, FindingsSummary]:
        if not study_uids:
            return {}
        f = worklist_findings.c
        rows = self._conn.execute(
            select(f.study_uid, f.model_name, f.model_version, f.critical, f.not_analysed_reason, f.data)
            .where(f.study_uid.in_(study_uids))
            .order_by(f.study_uid, f.produced_at, f.model_name)
        ).mappings()
        by_study: dict[str, list[Mapping[str, Any]]] = {}
        for r in rows:
            by_study.setdefault(r["study_uid"], []).append(dict(r))
        return {uid: _summary(found) for uid, found in by_study.items()}


def _differs(stored: Any, new: Any) -> bool:
    if isinstance(stored, datetime) and isinstance(new, datetime):
        return _utc(stored) != _utc(new)
    return bool(stored != new)


def _summary(rows: list[Mapping[str, Any]]) -> FindingsSummary:
    models: list[str] = []
    names: list[str] = []
    for r in rows:
        model = f"{r['model_name']} {r['model_version']}"
        if model not in models:
            models.append(model)
        for coded in (r["data"] or {}).get("findings", []):
            name = coded.get("display") or coded.get("code", "")
            if name and name not in names:
                names.append(name)
    return FindingsSummary(
        models=tuple(models),
        codes=tuple(names),
        critical=any(bool(r["critical"]) for r in rows),
        declined=sum(1 for r in rows if r["not_analysed_reason"]),
    )


def _entry(r: Mapping[str, Any], findings: FindingsSummary) -> WorklistEntry:
    lock = None
    if r["user_id"] is not None:
        lock = ReadingLock(r["study_uid"], r["user_id"], r["user_name"], _utc(r["acquired_at"]), _utc(r["expires_at"]))
    return WorklistEntry(
        study_uid=r["study_uid"],
        received_at=_utc(r["received_at"]),
        accession_number=r["accession_number"],
        patient_name=r["patient_name"],
        patient_id=r["patient_id"],
        modality=r["modality"],
        body_part=r["body_part"],
        study_description=r["study_description"],
        study_date=r["study_date"],
        order_priority=r["order_priority"],
        report_id=r["report_id"],
        report_status=r["report_status"],
        report_version=r["report_version"],
        results_interpreter=r["results_interpreter"],
        critical=bool(r["critical"]),
        critical_since=utc(r["critical_since"]),
        critical_state=CriticalState(r["critical_state"] or ""),
        findings=findings,
        lock=lock,
    )


def entry_data(entry: WorklistEntry, *, now: datetime) -> dict[str, Any]:
    """A study's row as JSON (the live stream's ``data`` of a study change, and what a page re-renders)."""
    return {
        "studyUid": entry.study_uid,
        "accessionNumber": entry.accession_number,
        "patientName": entry.patient_name,
        "patientId": entry.patient_id,
        "modality": entry.modality,
        "bodyPart": entry.body_part,
        "description": entry.study_description,
        "receivedAt": entry.received_at.isoformat(),
        "waitingS": round(entry.waiting(now)),
        "priority": entry.order_priority,
        "reportId": entry.report_id,
        "reportStatus": entry.report_status,
        "critical": entry.critical,
        "criticalSince": entry.critical_since.isoformat() if entry.critical_since else None,
        "criticalState": entry.critical_state.value,
        "findings": {
            "models": list(entry.findings.models),
            "codes": list(entry.findings.codes),
            "critical": entry.findings.critical,
            "declined": entry.findings.declined,
        },
        "lock": (
            {
                "userId": entry.lock.user_id,
                "userName": entry.lock.user_name,
                "expiresAt": entry.lock.expires_at.isoformat(),
            }
            if entry.lock is not None
            else None
        ),
    }
