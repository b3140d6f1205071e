"""Write-side QIDO-RS indexing: the header attributes of each stored instance, kept in ``dicom_instance_attributes``
for QIDO-RS (PS3.18 10.6) and the FHIR ImagingStudy (in the store transaction, after the ``dicom_instances`` row)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pydicom
from sqlalchemy import Connection, String, Table, select
from sqlalchemy.dialects import postgresql, sqlite

from radcds_imaging.adapters.imaging_study import instance_attributes
from radcds_imaging.db.tables import dicom_instance_attributes


def _fit(table: Table, name: str, value: Any) -> Any:
    """Cut text to its column's length: PostgreSQL refuses over-long values that SQLite keeps."""
    column_type = table.c[name].type
    if isinstance(value, str) and isinstance(column_type, String) and column_type.length:
        return value[: column_type.length]
    return value


def attribute_row(ds: pydicom.Dataset, sop_instance_uid: str) -> dict[str, Any]:
    """The ``dicom_instance_attributes`` row of one instance (values cut to their columns)."""
    attrs = instance_attributes(ds)
    table = dicom_instance_attributes
    values = {c.name: _fit(table, c.name, attrs[c.name]) for c in table.columns if c.name != "sop_instance_uid"}
    values["sop_instance_uid"] = sop_instance_uid
    return values


def _upsert_statement(dialect: str) -> Any:
    table = dicom_instance_attributes
    insert = sqlite.insert(table) if dialect == "sqlite" else postgresql.insert(table)
    return insert.on_conflict_do_update(
        index_elements=[table.c.sop_instance_uid],
        set_={c.name: insert.excluded[c.name] for c in table.columns if c.name != "sop_instance_uid"},
    )


def record_attributes_many(conn: Connection, rows: Sequence[dict[str, Any]]) -> None:
    """Keep the header attributes of stored instances (rows from :func:`attribute_row`) in one statement.

    Call in the transaction that inserts their ``dicom_instances`` rows, after those inserts (the rows
    are referenced). Writing again for the same instance replaces the values (re-indexing).
    """
    if not rows:
        return
    table = dicom_instance_attributes
    dialect = conn.dialect.name
    if dialect in ("sqlite", "postgresql"):
        conn.execute(_upsert_statement(dialect), list(rows))
        return
    for values in rows:
        uid = values["sop_instance_uid"]
        existing = conn.execute(select(table.c.sop_instance_uid).where(table.c.sop_instance_uid == uid))
        if existing.first() is None:
            conn.execute(table.insert().values(**values))
        else:
            conn.execute(table.update().where(table.c.sop_instance_uid == uid).values(**values))


def record_attributes(conn: Connection, ds: pydicom.Dataset, sop_instance_uid: str) -> None:
    """Keep the header attributes of one stored instance for QIDO-RS and ImagingStudy (see
    :func:`record_attributes_many`)."""
    record_attributes_many(conn, [attribute_row(ds, sop_instance_uid)])
