"""QIDO-RS: search for studies, series and instances (DICOM PS3.18 section 10.6).

- Matching (PS3.4 C.2.2.2): single value, universal (empty value or ``*``), wildcard (``*`` and
  ``?``; not on UI, DA, TM, IS), list of UIDs (comma or backslash separated; repeated keys add to
  the list), and range matching on dates and times (``YYYYMMDD-YYYYMMDD``, ``-YYYYMMDD``,
  ``YYYYMMDD-``). Person names match case-insensitively; other text exactly.
- Query keys are attribute keywords (``PatientID``) or tags (``00100020``); the matching keys of
  PS3.18 Table 10.6.1-5 at the searched level and above. ``limit``, ``offset``, ``includefield``
  (keywords, tags or ``all``) and ``fuzzymatching`` (accepted; literal matching is always used).
  Anything else is refused with a message (HTTP 400).
- Results are DICOM JSON (PS3.18 F.2) with the return attributes of PS3.18 Tables 6.7.1-2
  (study), 6.7.1-2a (series) and 6.7.1-2b (instance), the matching keys and the included fields.

The query runs on SQLAlchemy Core over ``dicom_instances`` joined to ``dicom_instance_attributes``
(filled by :func:`record_attributes`), on SQLite and PostgreSQL alike.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import pydicom
from pydicom.datadict import keyword_for_tag, tag_for_keyword
from sqlalchemy import ColumnElement, Connection, Engine, String, Table, and_, func, select
from sqlalchemy.dialects import postgresql, sqlite

from radcds.adapters.db.tables import dicom_instance_attributes, dicom_instances
from radcds_imaging.adapters.imaging_study import instance_attributes

_I = dicom_instances.c
_A = dicom_instance_attributes.c
_SOURCE = dicom_instances.outerjoin(
    dicom_instance_attributes, dicom_instance_attributes.c.sop_instance_uid == dicom_instances.c.sop_instance_uid
)
#: Sorts absent series and instance numbers last.
_LAST = 2**31 - 1


class QidoLevel(enum.StrEnum):
    """Query/retrieve level of a search (PS3.4 C.6.1.1)."""

    STUDY = "study"
    SERIES = "series"
    INSTANCE = "instance"


_RANK = {QidoLevel.STUDY: 0, QidoLevel.SERIES: 1, QidoLevel.INSTANCE: 2}

MatchKind = Literal["uid", "text", "person_name", "date", "time", "number", "modalities"]


@dataclass(frozen=True, slots=True)
class _Attribute:
    keyword: str
    vr: str
    level: QidoLevel
    column: ColumnElement[Any] | None  # None: computed from several rows
    match: MatchKind | None  # None: returned, never matched

    @property
    def tag(self) -> str:
        tag = tag_for_keyword(self.keyword)
        assert tag is not None, self.keyword
        return f"{tag:08X}"


_S, _SE, _IN = QidoLevel.STUDY, QidoLevel.SERIES, QidoLevel.INSTANCE
#: What can be matched or returned, per level.
ATTRIBUTES: dict[str, _Attribute] = {
    a.keyword: a
    for a in (
        _Attribute("StudyDate", "DA", _S, _A.study_date, "date"),
        _Attribute("StudyTime", "TM", _S, _A.study_time, "time"),
        _Attribute("AccessionNumber", "SH", _S, _I.accession_number, "text"),
        _Attribute("ModalitiesInStudy", "CS", _S, None, "modalities"),
        _Attribute("ReferringPhysicianName", "PN", _S, _A.referring_physician_name, "person_name"),
        _Attribute("TimezoneOffsetFromUTC", "SH", _S, _A.timezone_offset_from_utc, None),
        _Attribute("PatientName", "PN", _S, _A.patient_name, "person_name"),
        _Attribute("PatientID", "LO", _S, _I.patient_id, "text"),
        _Attribute("IssuerOfPatientID", "LO", _S, _A.issuer_of_patient_id, "text"),
        _Attribute("PatientBirthDate", "DA", _S, _A.patient_birth_date, "date"),
        _Attribute("PatientSex", "CS", _S, _A.patient_sex, "text"),
        _Attribute("StudyInstanceUID", "UI", _S, _I.study_instance_uid, "uid"),
        _Attribute("StudyID", "SH", _S, _A.study_id, "text"),
        _Attribute("StudyDescription", "LO", _S, _A.study_description, "text"),
        _Attribute("NumberOfStudyRelatedSeries", "IS", _S, None, None),
        _Attribute("NumberOfStudyRelatedInstances", "IS", _S, None, None),
        _Attribute("Modality", "CS", _SE, _I.modality, "text"),
        _Attribute("SeriesInstanceUID", "UI", _SE, _I.series_instance_uid, "uid"),
        _Attribute("SeriesNumber", "IS", _SE, _A.series_number, "number"),
        _Attribute("SeriesDescription", "LO", _SE, _A.series_description, "text"),
        _Attribute("SeriesDate", "DA", _SE, _A.series_date, "date"),
        _Attribute("SeriesTime", "TM", _SE, _A.series_time, "time"),
        _Attribute("BodyPartExamined", "CS", _SE, _A.body_part_examined, "text"),
        _Attribute("Laterality", "CS", _SE, _A.laterality, "text"),
        _Attribute("NumberOfSeriesRelatedInstances", "IS", _SE, None, None),
        _Attribute("SOPClassUID", "UI", _IN, _I.sop_class_uid, "uid"),
        _Attribute("SOPInstanceUID", "UI", _IN, _I.sop_instance_uid, "uid"),
        _Attribute("InstanceNumber", "IS", _IN, _A.instance_number, "number"),
        _Attribute("Rows", "US", _IN, _A.rows, None),
        _Attribute("Columns", "US", _IN, _A.columns, None),
        _Attribute("BitsAllocated", "US", _IN, _A.bits_allocated, None),
        _Attribute("NumberOfFrames", "IS", _IN, _A.number_of_frames, None),
    )
}
#: Returned at every level with a level-specific value.
_RETRIEVE_URL = ("RetrieveURL", "UR")
_INSTANCE_AVAILABILITY = ("InstanceAvailability", "CS")
#: Returned only when the instances carry a value (PS3.18 Table 6.7.1-2: "if present").
_ONLY_IF_PRESENT = frozenset({"TimezoneOffsetFromUTC"})

#: Default return attributes, PS3.18 Table 6.7.1-2 (study), 6.7.1-2a (series), 6.7.1-2b (instance).
STUDY_RETURN = (
    "StudyDate",
    "StudyTime",
    "AccessionNumber",
    "InstanceAvailability",
    "ModalitiesInStudy",
    "ReferringPhysicianName",
    "TimezoneOffsetFromUTC",
    "RetrieveURL",
    "PatientName",
    "PatientID",
    "PatientBirthDate",
    "PatientSex",
    "StudyInstanceUID",
    "StudyID",
    "NumberOfStudyRelatedSeries",
    "NumberOfStudyRelatedInstances",
)
SERIES_RETURN = (
    "Modality",
    "SeriesDescription",
    "SeriesNumber",
    "SeriesInstanceUID",
    "NumberOfSeriesRelatedInstances",
    "RetrieveURL",
)
INSTANCE_RETURN = (
    "SOPClassUID",
    "SOPInstanceUID",
    "InstanceAvailability",
    "RetrieveURL",
    "InstanceNumber",
    "Rows",
    "Columns",
    "BitsAllocated",
    "NumberOfFrames",
)
_CONTROL_PARAMS = frozenset({"limit", "offset", "includefield", "fuzzymatching"})

_UID = re.compile(r"^[0-9]+(\.[0-9]+)*$")
_DA = r"\d{8}"
_TM = r"\d{2}(?:\d{2}(?:\d{2}(?:\.\d{1,6})?)?)?"
_TAG = re.compile(r"^[0-9A-Fa-f]{8}$")


@dataclass(frozen=True, slots=True)
class Match:
    """One matching key of a query (PS3.4 C.2.2.2).

    ``values`` holds the value (or the UIDs / modalities of list matching); a range has ``low``
    and/or ``high`` set instead; ``wildcard`` marks a value with ``*`` or ``?``.
    """

    keyword: str
    kind: MatchKind
    values: tuple[str, ...] = ()
    low: str = ""
    high: str = ""
    is_range: bool = False
    wildcard: bool = False


@dataclass(frozen=True, slots=True)
class QidoQuery:
    """A validated QIDO-RS search (PS3.18 10.6.1)."""

    level: QidoLevel
    matches: tuple[Match, ...]
    study_instance_uid: str | None = None
    series_instance_uid: str | None = None
    limit: int = 100
    offset: int = 0
    #: Keywords asked for with ``includefield`` (and the universal-matching keys).
    include: frozenset[str] = frozenset()
    include_all: bool = False
    warnings: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class QidoResult:
    """One page of matches, in DICOM JSON, and whether more can be requested with ``offset``."""

    matches: list[dict[str, Any]]
    more: bool


def _keyword(key: str) -> str:
    """The attribute keyword named by a query key (keyword or 8 hex digit tag), "" if none."""
    if _TAG.match(key):
        return keyword_for_tag(int(key, 16)) or ""
    return key if tag_for_keyword(key) is not None else ""


def _split_list(value: str) -> list[str]:
    return [v.strip() for v in re.split(r"[,\\]", value) if v.strip()]


def _range(keyword: str, value: str, element: str, kind: MatchKind) -> Match:
    if re.fullmatch(element, value):
        return Match(keyword, kind, (value,))
    m = re.fullmatch(f"({element})?-({element})?", value)
    if not m or not (m.group(1) or m.group(2)):
        fmt = "YYYYMMDD" if kind == "date" else "HHMMSS"
        raise ValueError(
            f"{keyword}={value!r} is not a {'date' if kind == 'date' else 'time'} or range "
            f"({fmt}, {fmt}-{fmt}, -{fmt} or {fmt}-)"
        )
    low, high = m.group(1) or "", m.group(2) or ""
    if low and high and low > high:
        raise ValueError(f"{keyword}={value!r}: the range starts after it ends")
    return Match(keyword, kind, low=low, high=high, is_range=True)


def _match(attribute: _Attribute, values: list[str]) -> Match | None:
    """The match for a key, or None for universal matching."""
    kw, kind = attribute.keyword, attribute.match
    assert kind is not None
    if kind in ("uid", "modalities"):
        items = [v for value in values for v in _split_list(value)]
        if not items or items == ["*"]:
            return None
        for v in items:
            if kind == "uid" and (len(v) > 64 or not _UID.match(v)):
                raise ValueError(f"{kw}: {v!r} is not a UID (digits and dots, at most 64 characters)")
            if kind == "modalities" and ("*" in v or "?" in v):
                raise ValueError(f"{kw}: wildcards are not supported in a list of modalities")
        return Match(kw, kind, tuple(dict.fromkeys(items)))
    if len(values) > 1:
        raise ValueError(f"{kw} is given more than once; only UID attributes and ModalitiesInStudy take lists")
    value = values[0].strip()
    if value in ("", "*"):
        return None
    wildcard = "*" in value or "?" in value
    if wildcard and kind in ("date", "time", "number"):
        raise ValueError(f"{kw}: wildcards are not allowed in {attribute.vr} attributes")
    if kind == "date":
        return _range(kw, value, _DA, kind)
    if kind == "time":
        return _range(kw, value, _TM, kind)
    if kind == "number":
        try:
            return Match(kw, kind, (str(int(value)),))
        except ValueError:
            raise ValueError(f"{kw}={value!r} is not an integer") from None
    return Match(kw, kind, (value,), wildcard=wildcard)


def _int_param(name: str, values: list[str], minimum: int) -> int:
    if len(values) != 1:
        raise ValueError(f"{name} is given more than once")
    try:
        n = int(values[0])
    except ValueError:
        raise ValueError(f"{name}={values[0]!r} is not an integer") from None
    if n < minimum:
        raise ValueError(f"{name} must be at least {minimum}")
    return n


def parse_qido_query(
    level: QidoLevel | str,
    params: Mapping[str, str] | Iterable[tuple[str, str]],
    *,
    study_instance_uid: str | None = None,
    series_instance_uid: str | None = None,
    default_limit: int = 100,
    max_limit: int = 1000,
) -> QidoQuery:
    """Validate the query parameters of a QIDO-RS request (PS3.18 8.3.4, 10.6.1.2).

    ``study_instance_uid`` / ``series_instance_uid`` come from the resource path. Raises
    ``ValueError`` with a message fit for the client for any key or value that cannot be used.
    """
    level = QidoLevel(level)
    if series_instance_uid and level is not QidoLevel.INSTANCE:
        raise ValueError("a series in the path only scopes an instance-level search")
    items = list(params.items()) if isinstance(params, Mapping) else list(params)
    grouped: dict[str, list[str]] = {}
    for key, value in items:
        grouped.setdefault(key, []).append(value)

    matches: list[Match] = []
    include: set[str] = set()
    include_all = False
    warnings: list[str] = []
    limit, offset = default_limit, 0
    seen: dict[str, str] = {}
    for key, values in grouped.items():
        if key == "limit":
            limit = _int_param(key, values, 1)
            if limit > max_limit:
                warnings.append(f"limit {limit} exceeds the maximum of {max_limit}; at most {max_limit} returned")
                limit = max_limit
            continue
        if key == "offset":
            offset = _int_param(key, values, 0)
            continue
        if key == "fuzzymatching":
            flag = values[-1].lower()
            if flag not in ("true", "false"):
                raise ValueError(f"fuzzymatching={values[-1]!r} must be true or false")
            if flag == "true":
                warnings.append("fuzzymatching is not supported; literal matching was performed")
            continue
        if key == "includefield":
            for field in (f.strip() for v in values for f in v.split(",")):
                if field == "all":
                    include_all = True
                elif field:
                    keyword = _keyword(field)
                    if not keyword:
                        raise ValueError(f"includefield {field!r} is not a DICOM attribute keyword or tag")
                    include.add(keyword)
            continue
        keyword = _keyword(key)
        if not keyword:
            if "." in key:
                raise ValueError(f"query key {key!r}: sequence matching is not supported")
            raise ValueError(
                f"unknown query parameter {key!r}: not a DICOM attribute keyword or tag, "
                f"nor one of {', '.join(sorted(_CONTROL_PARAMS))}"
            )
        attribute = ATTRIBUTES.get(keyword)
        if attribute is None or attribute.match is None or _RANK[attribute.level] > _RANK[level]:
            supported = [a.keyword for a in ATTRIBUTES.values() if a.match and _RANK[a.level] <= _RANK[level]]
            raise ValueError(
                f"{keyword} cannot be matched in a {level}-level search; matching keys: {', '.join(supported)}"
            )
        if keyword in seen:
            raise ValueError(f"{keyword} is given twice (as {seen[keyword]!r} and {key!r})")
        seen[keyword] = key
        include.add(keyword)
        match = _match(attribute, values)
        if match is not None:
            matches.append(match)
    return QidoQuery(
        level=level,
        matches=tuple(matches),
        study_instance_uid=study_instance_uid,
        series_instance_uid=series_instance_uid,
        limit=limit,
        offset=offset,
        include=frozenset(include),
        include_all=include_all,
        warnings=tuple(warnings),
    )


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
    attribute = ATTRIBUTES[m.keyword]
    column = _I.modality if m.kind == "modalities" else attribute.column
    assert column is not None
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
    attrs = [a for a in ATTRIBUTES.values() if a.level is _S and a.column is not None]
    stmt = (
        select(
            *(func.max(a.column).label(a.keyword) for a in attrs if a.column is not None),
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
    attrs = [a for a in ATTRIBUTES.values() if a.level is _SE and a.column is not None]
    stmt = (
        select(
            *(func.max(a.column).label(a.keyword) for a in attrs if a.column is not None),
            func.max(_I.study_instance_uid).label("StudyInstanceUID"),
            func.count().label("NumberOfSeriesRelatedInstances"),
        )
        .select_from(_SOURCE)
        .where(_I.series_instance_uid.in_(uids))
        .group_by(_I.series_instance_uid)
    )
    return {r.SeriesInstanceUID: dict(r._mapping) for r in conn.execute(stmt)}


def _instance_values(conn: Connection, uids: Sequence[str]) -> dict[str, dict[str, Any]]:
    attrs = [a for a in ATTRIBUTES.values() if a.level is _IN and a.column is not None]
    stmt = (
        select(
            *(a.column.label(a.keyword) for a in attrs if a.column is not None),
            _I.study_instance_uid.label("StudyInstanceUID"),
            _I.series_instance_uid.label("SeriesInstanceUID"),
        )
        .select_from(_SOURCE)
        .where(_I.sop_instance_uid.in_(uids))
    )
    return {r.SOPInstanceUID: dict(r._mapping) for r in conn.execute(stmt)}


def _returned(query: QidoQuery) -> list[str]:
    """Keywords returned for each match, in standard order."""
    level = query.level
    out = list({_S: STUDY_RETURN, _SE: SERIES_RETURN, _IN: INSTANCE_RETURN}[level])
    if level is not _S:
        out.append("StudyInstanceUID")
        if not query.study_instance_uid:
            out += [k for k in STUDY_RETURN if k not in ("RetrieveURL", "InstanceAvailability")]
    if level is _IN:
        out.append("SeriesInstanceUID")
        if not query.series_instance_uid:
            out += [k for k in SERIES_RETURN if k != "RetrieveURL"]
    available = [a.keyword for a in ATTRIBUTES.values() if _RANK[a.level] <= _RANK[level]]
    out += [k for k in available if query.include_all or k in query.include]
    return list(dict.fromkeys(out))


def _element(vr: str, value: Any) -> dict[str, Any]:
    """A DICOM JSON attribute object (PS3.18 F.2.2); absent values give an element with no Value."""
    if value is None or value == "" or value == []:
        return {"vr": vr}
    values = value if isinstance(value, list) else [value]
    if vr == "PN":
        groups = ("Alphabetic", "Ideographic", "Phonetic")
        return {
            "vr": vr,
            "Value": [{g: p for g, p in zip(groups, str(v).split("=")[:3], strict=False) if p} for v in values],
        }
    if vr in ("IS", "US"):
        return {"vr": vr, "Value": [int(v) for v in values]}
    return {"vr": vr, "Value": [str(v) for v in values]}


def _retrieve_url(base_url: str, level: QidoLevel, values: Mapping[str, Any]) -> str:
    url = f"{base_url}/dicom-web/studies/{values['StudyInstanceUID']}"
    if level is not _S:
        url += f"/series/{values['SeriesInstanceUID']}"
    if level is _IN:
        url += f"/instances/{values['SOPInstanceUID']}"
    return url


def _dataset(query: QidoQuery, values: Mapping[str, Any], base_url: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for keyword in _returned(query):
        value: Any
        if keyword == _RETRIEVE_URL[0]:
            vr, value = _RETRIEVE_URL[1], _retrieve_url(base_url, query.level, values)
        elif keyword == _INSTANCE_AVAILABILITY[0]:
            vr, value = _INSTANCE_AVAILABILITY[1], "ONLINE"
        elif keyword in ATTRIBUTES:
            vr, value = ATTRIBUTES[keyword].vr, values.get(keyword)
        else:
            continue  # asked for with includefield but not kept by imaging
        if keyword in _ONLY_IF_PRESENT and not value:
            continue
        tag = tag_for_keyword(keyword)
        assert tag is not None
        out[f"{tag:08X}"] = _element(vr, value)
    return dict(sorted(out.items()))


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
        return QidoResult([_dataset(query, studies[uid], base_url) for uid in page], more=more)
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
    return QidoResult([_dataset(query, r, base_url) for r in rows], more=more)


def search(conn_or_engine: Connection | Engine, query: QidoQuery, base_url: str) -> list[dict[str, Any]]:
    """The DICOM JSON datasets (PS3.18 F.2) matching ``query``: one page, ``limit``/``offset`` applied."""
    return run_search(conn_or_engine, query, base_url).matches


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
