"""FHIR resource repository on SQLAlchemy (one code path for SQLite and PostgreSQL).

The current version of each resource is in ``fhir_resources``; every version is in
``fhir_resource_versions`` (FHIR R4 3.1.0.9 history); search values are in the index tables
of :mod:`radcds_reporting.db.tables`, rewritten with each version, and searches are SQL
over those indexes (FHIR R4 3.1.1).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import ColumnElement, Connection, and_, delete, false, func, insert, or_, select, update

from radcds.adapters.fhir.resources import validate_resource, with_narrative
from radcds_reporting.adapters.fhir.search import Criterion, DateValue, TokenValue, index_rows
from radcds_reporting.db.tables import (
    fhir_resource_versions,
    fhir_resources,
    fhir_search_dates,
    fhir_search_references,
    fhir_search_tokens,
)


class VersionConflict(Exception):
    """``If-Match`` named a version that is not the current one (HTTP 412)."""


def fhir_instant(moment: datetime) -> str:
    """A FHIR instant in UTC with milliseconds."""
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class FhirRepository:
    """Reads and writes resources inside the caller's transaction."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn

    @property
    def connection(self) -> Connection:
        """The connection (and transaction) this repository reads and writes through."""
        return self._conn

    def read(self, resource_type: str, resource_id: str) -> dict[str, Any] | None:
        """The current version of a resource, or None."""
        row = self._conn.execute(
            select(fhir_resources.c.content).where(
                fhir_resources.c.resource_type == resource_type, fhir_resources.c.id == resource_id
            )
        ).first()
        return None if row is None else json.loads(row.content)

    def study_instance_uid_of(self, resource_type: str, resource_id: str) -> str:
        """The Study Instance UID a stored resource belongs to ("" when none or unknown)."""
        uid = self._conn.execute(
            select(fhir_resources.c.study_instance_uid).where(
                fhir_resources.c.resource_type == resource_type, fhir_resources.c.id == resource_id
            )
        ).scalar_one_or_none()
        return str(uid or "")

    def read_version(self, resource_type: str, resource_id: str, version_id: int) -> dict[str, Any] | None:
        """One version of a resource (vread), or None."""
        row = self._conn.execute(
            select(fhir_resource_versions.c.content).where(
                fhir_resource_versions.c.resource_type == resource_type,
                fhir_resource_versions.c.id == resource_id,
                fhir_resource_versions.c.version_id == version_id,
            )
        ).first()
        return None if row is None else json.loads(row.content)

    def history(self, resource_type: str, resource_id: str) -> list[dict[str, Any]]:
        """Every version of a resource, newest first."""
        rows = self._conn.execute(
            select(fhir_resource_versions.c.content)
            .where(fhir_resource_versions.c.resource_type == resource_type, fhir_resource_versions.c.id == resource_id)
            .order_by(fhir_resource_versions.c.version_id.desc())
        ).all()
        return [json.loads(r.content) for r in rows]

    def upsert(
        self,
        resource: dict[str, Any],
        *,
        study_instance_uid: str = "",
        if_match: str | None = None,
        now: datetime | None = None,
    ) -> dict[str, Any]:
        """Validate as R4, store a new version when the content changed, return what is stored.

        This is the one point where every stored resource gets its generated narrative (R4 2.1.0.4,
        dom-6): ``text`` is rebuilt from the content being stored, whatever the caller sent.
        """
        resource = validate_resource(with_narrative({k: v for k, v in resource.items() if k != "meta"}))
        rtype, rid = resource["resourceType"], resource["id"]
        current = self._conn.execute(
            select(fhir_resources.c.version_id, fhir_resources.c.content, fhir_resources.c.study_instance_uid)
            .where(fhir_resources.c.resource_type == rtype, fhir_resources.c.id == rid)
            .with_for_update()
        ).first()
        if if_match is not None and (current is None or str(current.version_id) != if_match):
            raise VersionConflict(f"{rtype}/{rid} is not at version {if_match}")
        if current is not None:
            stored = json.loads(current.content)
            if {k: v for k, v in stored.items() if k != "meta"} == resource:
                return stored  # type: ignore[no-any-return]
            study_instance_uid = study_instance_uid or current.study_instance_uid
        now = now or datetime.now(UTC)
        version = 1 if current is None else current.version_id + 1
        resource["meta"] = {"versionId": str(version), "lastUpdated": fhir_instant(now)}
        subject = resource.get("subject", {}).get("reference", "") if rtype != "Patient" else f"Patient/{rid}"
        content = json.dumps(resource)
        values = {
            "version_id": version,
            "last_updated": now,
            "subject": subject,
            "study_instance_uid": study_instance_uid,
            "content": content,
        }
        if current is None:
            self._conn.execute(insert(fhir_resources).values(resource_type=rtype, id=rid, **values))
        else:
            self._conn.execute(
                update(fhir_resources)
                .where(fhir_resources.c.resource_type == rtype, fhir_resources.c.id == rid)
                .values(**values)
            )
        self._conn.execute(
            insert(fhir_resource_versions).values(
                resource_type=rtype, id=rid, version_id=version, last_updated=now, content=content
            )
        )
        self._reindex(resource)
        return resource

    def _reindex(self, resource: dict[str, Any]) -> None:
        rtype, rid = resource["resourceType"], resource["id"]
        for table in (fhir_search_tokens, fhir_search_references, fhir_search_dates):
            self._conn.execute(delete(table).where(table.c.resource_type == rtype, table.c.resource_id == rid))
        idx = index_rows(resource)
        base = {"resource_type": rtype, "resource_id": rid}
        if idx.tokens:
            self._conn.execute(
                insert(fhir_search_tokens), [{**base, "param": p, "system": s, "value": v} for p, s, v in idx.tokens]
            )
        if idx.references:
            self._conn.execute(
                insert(fhir_search_references), [{**base, "param": p, "target": t} for p, t in idx.references]
            )
        if idx.dates:
            self._conn.execute(
                insert(fhir_search_dates), [{**base, "param": p, "low": lo, "high": hi} for p, lo, hi in idx.dates]
            )

    def search(
        self,
        resource_type: str,
        *,
        criteria: list[Criterion] | None = None,
        subject: str | None = None,
        study_instance_uid: str | None = None,
        count: int = 50,
        offset: int = 0,
    ) -> tuple[int, list[dict[str, Any]]]:
        """Resources of a type matching every criterion, newest first; returns (total, page)."""
        where: list[ColumnElement[bool]] = [fhir_resources.c.resource_type == resource_type]
        if subject is not None:
            where.append(fhir_resources.c.subject == subject)
        if study_instance_uid is not None:
            where.append(fhir_resources.c.study_instance_uid == study_instance_uid)
        where.extend(_criterion(resource_type, c) for c in criteria or [])
        total = self._conn.execute(select(func.count()).select_from(fhir_resources).where(*where)).scalar_one()
        if count == 0:
            return int(total), []
        rows = self._conn.execute(
            select(fhir_resources.c.content)
            .where(*where)
            .order_by(fhir_resources.c.last_updated.desc(), fhir_resources.c.id)
            .limit(count)
            .offset(offset)
        ).all()
        return int(total), [json.loads(r.content) for r in rows]

    def referenced(self, resource_type: str, resource_ids: list[str], param: str) -> list[str]:
        """The ``Type/id`` targets of reference parameter ``param`` of the given resources (``_include``)."""
        if not resource_ids:
            return []
        rows = self._conn.execute(
            select(fhir_search_references.c.target)
            .where(
                fhir_search_references.c.resource_type == resource_type,
                fhir_search_references.c.param == param,
                fhir_search_references.c.resource_id.in_(resource_ids),
            )
            .distinct()
        ).all()
        return sorted(r.target for r in rows)

    def read_many(self, references: list[str]) -> list[dict[str, Any]]:
        """The current versions of ``Type/id`` references that exist, in the order given."""
        out = []
        for ref in references:
            rtype, _, rid = ref.partition("/")
            found = self.read(rtype, rid)
            if found is not None:
                out.append(found)
        return out


def _criterion(resource_type: str, c: Criterion) -> ColumnElement[bool]:
    """An SQL condition on ``fhir_resources`` for one criterion (its values OR-ed).

    Each indexed criterion is ``id IN (SELECT resource_id FROM <index> WHERE ...)``: the database
    starts from the index table's lookup index and then reads the matching rows by primary key.
    """
    if c.type == "id":
        return fhir_resources.c.id.in_(list(c.values))
    if c.type == "lastUpdated":
        col = fhir_resources.c.last_updated
        return or_(*(_date_match(d, col, col) for d in c.values))
    if c.type == "token":
        t = fhir_search_tokens
        alternatives = [_token_match(t, v) for v in c.values]
        return fhir_resources.c.id.in_(
            select(t.c.resource_id).where(t.c.resource_type == resource_type, t.c.param == c.param, or_(*alternatives))
        )
    if c.type == "reference":
        r = fhir_search_references
        return fhir_resources.c.id.in_(
            select(r.c.resource_id).where(
                r.c.resource_type == resource_type, r.c.param == c.param, r.c.target.in_(list(c.values))
            )
        )
    d = fhir_search_dates
    return fhir_resources.c.id.in_(
        select(d.c.resource_id).where(
            d.c.resource_type == resource_type,
            d.c.param == c.param,
            or_(*(_date_match(v, d.c.low, d.c.high) for v in c.values)),
        )
    )


def _token_match(t: Any, v: TokenValue) -> ColumnElement[bool]:
    conds = []
    if v.code is not None:
        conds.append(t.c.value == v.code)
    if v.system is not None:
        conds.append(t.c.system == v.system)
    return and_(*conds) if conds else false()


def _date_match(v: DateValue, low: Any, high: Any) -> ColumnElement[bool]:
    """FHIR R4 3.1.1.5.2 prefixes over the resource's range [low, high] and the value's [v.low, v.high]."""
    if v.prefix == "ge":
        return high >= v.low  # type: ignore[no-any-return]
    if v.prefix == "gt":
        return high > v.high  # type: ignore[no-any-return]
    if v.prefix == "le":
        return low <= v.high  # type: ignore[no-any-return]
    if v.prefix == "lt":
        return low < v.low  # type: ignore[no-any-return]
    inside = and_(low >= v.low, high <= v.high)
    return ~inside if v.prefix == "ne" else inside
