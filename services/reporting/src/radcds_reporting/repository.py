"""FHIR resource repository on SQLAlchemy (one code path for SQLite and PostgreSQL)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, func, insert, select, update

from radcds.adapters.db.tables import fhir_resources
from radcds.adapters.fhir.resources import validate_resource


class FhirRepository:
    """Reads and writes resources inside the caller's transaction."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn

    def read(self, resource_type: str, resource_id: str) -> dict[str, Any] | None:
        """The current version of a resource, or None."""
        row = self._conn.execute(
            select(fhir_resources.c.content).where(
                fhir_resources.c.resource_type == resource_type, fhir_resources.c.id == resource_id
            )
        ).first()
        return None if row is None else json.loads(row.content)

    def upsert(self, resource: dict[str, Any], *, study_instance_uid: str = "") -> dict[str, Any]:
        """Validate as R4, store a new version when the content changed, return what is stored."""
        resource = validate_resource({k: v for k, v in resource.items() if k != "meta"})
        rtype, rid = resource["resourceType"], resource["id"]
        current = self._conn.execute(
            select(fhir_resources.c.version_id, fhir_resources.c.content).where(
                fhir_resources.c.resource_type == rtype, fhir_resources.c.id == rid
            )
        ).first()
        if current is not None:
            stored = json.loads(current.content)
            if {k: v for k, v in stored.items() if k != "meta"} == resource:
                return stored  # type: ignore[no-any-return]
        now = datetime.now(UTC)
        version = 1 if current is None else current.version_id + 1
        resource["meta"] = {
            "versionId": str(version),
            "lastUpdated": now.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        }
        subject = resource.get("subject", {}).get("reference", "") if rtype != "Patient" else f"Patient/{rid}"
        values = {
            "version_id": version,
            "last_updated": now,
            "subject": subject,
            "study_instance_uid": study_instance_uid,
            "content": json.dumps(resource),
        }
        if current is None:
            self._conn.execute(insert(fhir_resources).values(resource_type=rtype, id=rid, **values))
        else:
            self._conn.execute(
                update(fhir_resources)
                .where(fhir_resources.c.resource_type == rtype, fhir_resources.c.id == rid)
                .values(**values)
            )
        return resource

    def search(
        self,
        resource_type: str,
        *,
        subject: str | None = None,
        study_instance_uid: str | None = None,
        count: int = 50,
        offset: int = 0,
    ) -> tuple[int, list[dict[str, Any]]]:
        """Resources of a type by subject and/or study, newest first; returns (total, page)."""
        where = [fhir_resources.c.resource_type == resource_type]
        if subject is not None:
            where.append(fhir_resources.c.subject == subject)
        if study_instance_uid is not None:
            where.append(fhir_resources.c.study_instance_uid == study_instance_uid)
        total = self._conn.execute(select(func.count()).select_from(fhir_resources).where(*where)).scalar_one()
        rows = self._conn.execute(
            select(fhir_resources.c.content)
            .where(*where)
            .order_by(fhir_resources.c.last_updated.desc(), fhir_resources.c.id)
            .limit(count)
            .offset(offset)
        ).all()
        return int(total), [json.loads(r.content) for r in rows]
