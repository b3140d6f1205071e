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


Pure: the DICOM data dictionary (keyword or tag of a query key) is handed in by the caller as ``keyword_of``
(:func:`radcds_imaging.adapters.dicom_json.dicom_keyword`); the search runs in
:mod:`radcds_imaging.adapters.db.qido` and its results are rendered by :mod:`radcds_imaging.adapters.dicom_json`.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal


class QidoLevel(enum.StrEnum):
    """Query/retrieve level of a search (PS3.4 C.6.1.1)."""

    STUDY = "study"
    SERIES = "series"
    INSTANCE = "instance"


RANK = {QidoLevel.STUDY: 0, QidoLevel.SERIES: 1, QidoLevel.INSTANCE: 2}

MatchKind = Literal["uid", "text", "person_name", "date", "time", "number", "modalities"]


@dataclass(frozen=True, slots=True)
class QueryAttribute:
    """An attribute QIDO-RS matches or returns at ``level`` (PS3.18 Table 10.6.1-5); ``match`` None: returned only."""

    keyword: str
    vr: str
    level: QidoLevel
    match: MatchKind | None


_S, _SE, _IN = QidoLevel.STUDY, QidoLevel.SERIES, QidoLevel.INSTANCE
ATTRIBUTES: dict[str, QueryAttribute] = {
    a.keyword: a
    for a in (
        QueryAttribute("StudyDate", "DA", _S, "date"),
        QueryAttribute("StudyTime", "TM", _S, "time"),
        QueryAttribute("AccessionNumber", "SH", _S, "text"),
        QueryAttribute("ModalitiesInStudy", "CS", _S, "modalities"),
        QueryAttribute("ReferringPhysicianName", "PN", _S, "person_name"),
        QueryAttribute("TimezoneOffsetFromUTC", "SH", _S, None),
        QueryAttribute("PatientName", "PN", _S, "person_name"),
        QueryAttribute("PatientID", "LO", _S, "text"),
        QueryAttribute("IssuerOfPatientID", "LO", _S, "text"),
        QueryAttribute("PatientBirthDate", "DA", _S, "date"),
        QueryAttribute("PatientSex", "CS", _S, "text"),
        QueryAttribute("StudyInstanceUID", "UI", _S, "uid"),
        QueryAttribute("StudyID", "SH", _S, "text"),
        QueryAttribute("StudyDescription", "LO", _S, "text"),
        QueryAttribute("NumberOfStudyRelatedSeries", "IS", _S, None),
        QueryAttribute("NumberOfStudyRelatedInstances", "IS", _S, None),
        QueryAttribute("Modality", "CS", _SE, "text"),
        QueryAttribute("SeriesInstanceUID", "UI", _SE, "uid"),
        QueryAttribute("SeriesNumber", "IS", _SE, "number"),
        QueryAttribute("SeriesDescription", "LO", _SE, "text"),
        QueryAttribute("SeriesDate", "DA", _SE, "date"),
        QueryAttribute("SeriesTime", "TM", _SE, "time"),
        QueryAttribute("BodyPartExamined", "CS", _SE, "text"),
        QueryAttribute("Laterality", "CS", _SE, "text"),
        QueryAttribute("NumberOfSeriesRelatedInstances", "IS", _SE, None),
        QueryAttribute("SOPClassUID", "UI", _IN, "uid"),
        QueryAttribute("SOPInstanceUID", "UI", _IN, "uid"),
        QueryAttribute("InstanceNumber", "IS", _IN, "number"),
        QueryAttribute("Rows", "US", _IN, None),
        QueryAttribute("Columns", "US", _IN, None),
        QueryAttribute("BitsAllocated", "US", _IN, None),
        QueryAttribute("NumberOfFrames", "IS", _IN, None),
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
#: A query key resolved to its attribute keyword ("" when the key names no DICOM attribute).
KeywordOf = Callable[[str], str]


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


def _match(attribute: QueryAttribute, values: list[str]) -> Match | None:
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
    keyword_of: KeywordOf,
    default_limit: int = 100,
    max_limit: int = 1000,
) -> QidoQuery:
    """Validate the query parameters of a QIDO-RS request (PS3.18 8.3.4, 10.6.1.2).

    ``study_instance_uid`` / ``series_instance_uid`` come from the resource path; ``keyword_of`` resolves a key
    (keyword or tag) with the DICOM data dictionary (PS3.6). Raises
    ``ValueError`` with a message fit for the client for any key or value that cannot be used.
    """
    level = QidoLevel(level)
    if series_instance_uid and level is not QidoLevel.INSTANCE:
        raise ValueError("a series in the path only scopes an instance-level search")
    items = list(params.items()) if isinstance(params, Mapping) else list(params)
    # NUL is no character of a DICOM value (PS3.5 6.1.2.3, 6.2: only the padding of a UI); SQLite's LIKE stops at
    # it, so "*\x00*" matched every instance (found by the hostile-input tests), and PostgreSQL refuses it in text.
    texts = [study_instance_uid or "", series_instance_uid or ""] + [part for item in items for part in item]
    if any("\x00" in text for text in texts):
        raise ValueError("a query key or value holds a NUL character")
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
                    keyword = keyword_of(field)
                    if not keyword:
                        raise ValueError(f"includefield {field!r} is not a DICOM attribute keyword or tag")
                    include.add(keyword)
            continue
        keyword = keyword_of(key)
        if not keyword:
            if "." in key:
                raise ValueError(f"query key {key!r}: sequence matching is not supported")
            raise ValueError(
                f"unknown query parameter {key!r}: not a DICOM attribute keyword or tag, "
                f"nor one of {', '.join(sorted(_CONTROL_PARAMS))}"
            )
        attribute = ATTRIBUTES.get(keyword)
        if attribute is None or attribute.match is None or RANK[attribute.level] > RANK[level]:
            supported = [a.keyword for a in ATTRIBUTES.values() if a.match and RANK[a.level] <= RANK[level]]
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


def returned_keywords(query: QidoQuery) -> list[str]:
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
    available = [a.keyword for a in ATTRIBUTES.values() if RANK[a.level] <= RANK[level]]
    out += [k for k in available if query.include_all or k in query.include]
    return list(dict.fromkeys(out))
