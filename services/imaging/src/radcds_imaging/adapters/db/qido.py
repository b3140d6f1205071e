"""QIDO-RS search over imaging's tables (DICOM PS3.18 section 10.6, matching PS3.4 C.2.2.2).

The query runs on SQLAlchemy Core over ``dicom_instances`` joined to ``dicom_instance_attributes``
(filled by :func:`radcds_imaging.adapters.db.indexing.record_attributes`), on SQLite and PostgreSQL alike.
The query model is :mod:`radcds_imaging.domain.qido`; each match is rendered as DICOM JSON by
:func:`radcds_imaging.adapters.dicom_json.qido_dataset`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import ColumnElement, Connection, Engine, and_, func, select

from radcds_imaging.adapters.dicom_json import qido_dataset
from radcds_imaging.db.tables import dicom_instance_attributes, dicom_instances
from radcds_imaging.domain.qido import ATTRIBUTES, Match, QidoLevel, QidoQuery, QidoResult

_I = dicom_instances.c
_A = dicom_instance_attributes.c
_SOURCE = dicom_instances.outerjoin(
    dicom_instance_attributes, dicom_instance_attributes.c.sop_instance_uid == dicom_instances.c.sop_instance_uid
)
#: Sorts absent series and instance numbers last.
_LAST = 2**31 - 1
_S, _SE, _IN = QidoLevel.STUDY, QidoLevel.SERIES, QidoLevel.INSTANCE
#: The column each stored attribute is read from; the others are computed from several rows.
COLUMNS: dict[str, ColumnElement[Any]] = {
    "StudyDate": _A.study_date,
    "StudyTime": _A.study_time,
    "AccessionNumber": _I.accession_number,
    "ReferringPhysicianName": _A.referring_physician_name,
    "TimezoneOffsetFromUTC": _A.timezone_offset_from_utc,
    "PatientName": _A.patient_name,
    "PatientID": _I.patient_id,
    "IssuerOfPatientID": _A.issuer_of_patient_id,
    "PatientBirthDate": _A.patient_birth_date,
    "PatientSex": _A.patient_sex,
    "StudyInstanceUID": _I.study_instance_uid,
    "StudyID": _A.study_id,
    "StudyDescription": _A.study_description,
    "Modality": _I.modality,
    "SeriesInstanceUID": _I.series_instance_uid,
    "SeriesNumber": _A.series_number,
    "SeriesDescription": _A.series_description,
    "SeriesDate": _A.series_date,
    "SeriesTime": _A.series_time,
    "BodyPartExamined": _A.body_part_examined,
    "Laterality": _A.laterality,
    "SOPClassUID": _I.sop_class_uid,
    "SOPInstanceUID": _I.sop_instance_uid,
    "InstanceNumber": _A.instance_number,
    "Rows": _A.rows,
    "Columns": _A.columns,
    "BitsAllocated": _A.bits_allocated,
    "NumberOfFrames": _A.number_of_frames,
}


def _columns(level: QidoLevel) -> dict[str, ColumnElement[Any]]:
    return {k: c for k, c in COLUMNS.items() if ATTRIBUTES[k].level is level}


def _wildcard(column: ColumnElement[Any], value: str, dialect: str, *, case_sensitive: bool) -> ColumnElement[bool]:
    """PS3.4 C.2.2.2.4 wildcard matching: ``*`` any run of characters, ``?`` one character."""
    if case_sensitive and dialect == "sqlite":
        # SQLite's LIKE ignores ASCII case; GLOB does not. "[" is GLOB's only other special character.
        return column.op("GLOB")(value.replace("[", "[[]"))
    pattern = value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_").replace("*", "%").replace("?", "_")
    if case_sensitive:
        return column.like(pattern, escape="\\")
    return func.lower(column).like(pattern.lower(), escape="\\")


def _condition(m: Match, dialect: str) -> ColumnElement[bool]:
    column = _I.modality if m.kind == "modalities" else COLUMNS[m.keyword]
    if m.kind in ("uid", "modalities"):
        return column.in_(m.values)
    if m.is_range:
        upper = m.high + "~" if m.kind == "time" else m.high  # "~" sorts after digits and "."
        bounds = [column != ""]
        if m.low:
            bounds.append(column >= m.low)
        if m.high:
            bounds.append(column <= upper)
        return and_(*bounds)
    (value,) = m.values
    if m.kind == "number":
        return column == int(value)
    if m.kind == "person_name":
        if m.wildcard:
            return _wildcard(column, value, dialect, case_sensitive=False)
        return func.lower(column) == value.lower()
    if m.wildcard:
        return _wildcard(column, value, dialect, case_sensitive=True)
    return column == value


def _study_values(conn: Connection, uids: Sequence[str]) -> dict[str, dict[str, Any]]:
    attrs = _columns(_S)
    stmt = (
        select(
            *(func.max(column).label(keyword) for keyword, column in attrs.items()),
            func.count(func.distinct(_I.series_instance_uid)).label("NumberOfStudyRelatedSeries"),
            func.count().label("NumberOfStudyRelatedInstances"),
        )
        .select_from(_SOURCE)
        .where(_I.study_instance_uid.in_(uids))
        .group_by(_I.study_instance_uid)
    )
    out = {r.StudyInstanceUID: dict(r._mapping) for r in conn.execute(stmt)}
    modalities = select(_I.study_instance_uid, _I.modality).where(_I.study_instance_uid.in_(uids)).distinct()
    for study, modality in conn.execute(modalities):
        if modality:
            out[study].setdefault("ModalitiesInStudy", []).append(modality)
    for values in out.values():
        values["ModalitiesInStudy"] = sorted(values.get("ModalitiesInStudy", []))
    return out


def _series_values(conn: Connection, uids: Sequence[str]) -> dict[str, dict[str, Any]]:
    attrs = _columns(_SE)
    stmt = (
        select(
            *(func.max(column).label(keyword) for keyword, column in attrs.items()),
            func.max(_I.study_instance_uid).label("StudyInstanceUID"),
            func.count().label("NumberOfSeriesRelatedInstances"),
        )
        .select_from(_SOURCE)
        .where(_I.series_instance_uid.in_(uids))
        .group_by(_I.series_instance_uid)
    )
    return {r.SeriesInstanceUID: dict(r._mapping) for r in conn.execute(stmt)}


def _instance_values(conn: Connection, uids: Sequence[str]) -> dict[str, dict[str, Any]]:
    attrs = _columns(_IN)
    stmt = (
        select(
            *(column.label(keyword) for keyword, column in attrs.items()),
            _I.study_instance_uid.label("StudyInstanceUID"),
            _I.series_instance_uid.label("SeriesInstanceUID"),
        )
        .select_from(_SOURCE)
        .where(_I.sop_instance_uid.in_(uids))
    )
    return {r.SOPInstanceUID: dict(r._mapping) for r in conn.execute(stmt)}


def run_search(conn_or_engine: Connection | Engine, query: QidoQuery, base_url: str) -> QidoResult:
    """Run a search and return one page of DICOM JSON datasets (PS3.18 F.2), and whether more match."""
    if isinstance(conn_or_engine, Engine):
        with conn_or_engine.connect() as conn:
            return run_search(conn, query, base_url)
    conn = conn_or_engine
    base_url = base_url.rstrip("/")
    dialect = conn.dialect.name
    where = [_condition(m, dialect) for m in query.matches]
    if query.study_instance_uid:
        where.append(_I.study_instance_uid == query.study_instance_uid)
    if query.series_instance_uid:
        where.append(_I.series_instance_uid == query.series_instance_uid)
    study_date = func.coalesce(func.max(_A.study_date), "")
    study_time = func.coalesce(func.max(_A.study_time), "")
    if query.level is _S:
        key = _I.study_instance_uid
        order = [study_date.desc(), study_time.desc(), key]
    elif query.level is _SE:
        key = _I.series_instance_uid
        order = [
            study_date.desc(),
            func.max(_I.study_instance_uid),
            func.coalesce(func.max(_A.series_number), _LAST),
            key,
        ]
    else:
        key = _I.sop_instance_uid
        order = [
            study_date.desc(),
            func.max(_I.study_instance_uid),
            func.coalesce(func.max(_A.series_number), _LAST),
            func.max(_I.series_instance_uid),
            func.coalesce(func.max(_A.instance_number), _LAST),
            key,
        ]
    stmt = select(key).select_from(_SOURCE).group_by(key).order_by(*order)
    if where:
        stmt = stmt.where(and_(*where))
    page = list(conn.scalars(stmt.limit(query.limit + 1).offset(query.offset)))
    more = len(page) > query.limit
    page = page[: query.limit]
    if not page:
        return QidoResult([], more=False)

    if query.level is _S:
        studies = _study_values(conn, page)
        return QidoResult([qido_dataset(query, studies[uid], base_url) for uid in page], more=more)
    rows: list[dict[str, Any]]
    if query.level is _SE:
        series = _series_values(conn, page)
        rows = [series[uid] for uid in page]
    else:
        instances = _instance_values(conn, page)
        series = _series_values(conn, sorted({instances[uid]["SeriesInstanceUID"] for uid in page}))
        rows = [{**series[instances[uid]["SeriesInstanceUID"]], **instances[uid]} for uid in page]
    studies = _study_values(conn, sorted({r["StudyInstanceUID"] for r in rows}))
    rows = [{**studies[r["StudyInstanceUID"]], **r} for r in rows]
    return QidoResult([qido_dataset(query, r, base_url) for r in rows], more=more)


def search(conn_or_engine: Connection | Engine, query: QidoQuery, base_url: str) -> list[dict[str, Any]]:
    """The DICOM JSON datasets (PS3.18 F.2) matching ``query``: one page, ``limit``/``offset`` applied."""
    return run_search(conn_or_engine, query, base_url).matches


class QidoQueries:
    """The QIDO-RS read side: one page of DICOM JSON matches for a validated query."""

    def __init__(self, engine: Engine, *, public_base_url: str) -> None:
        self._engine = engine
        self._base_url = public_base_url.rstrip("/")

    def search(self, query: QidoQuery) -> QidoResult:
        """Run ``query`` (PS3.18 10.6.1) and return one page of matches, and whether more can be requested."""
        return run_search(self._engine, query, self._base_url)
