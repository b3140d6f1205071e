"""FHIR R4 search parameters radcds supports, their index values, and parsing of search requests.

Definitions follow the R4 SearchParameter resources of the core specification (names and
FHIRPath expressions of ``DiagnosticReport-date``, ``clinical-patient``, ``ImagingStudy-started``
...). Semantics (FHIR R4 3.1.1 "Search"):

- several values of one parameter separated by ``,`` are OR; a parameter repeated is AND;
- token ``[system]|[code]``, ``|[code]`` (no system), ``[code]`` (any system), ``[system]|`` (any code);
- reference ``Type/id``, an absolute URL ending in ``Type/id``, or a bare id when the parameter
  targets a single type;
- date with the prefixes eq, ne, gt, lt, ge, le; a value of lower precision is a range (3.1.1.5.2):
  ``ge``/``gt`` match resources whose range ends at/after the value's, ``le``/``lt`` those whose
  range starts at/before it, ``eq`` those wholly inside it.
"""

from __future__ import annotations

import calendar
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from typing import Any, Literal

ParamType = Literal["token", "reference", "date"]
Json = dict[str, Any]


class SearchError(ValueError):
    """A search request this server cannot run as asked (HTTP 400 OperationOutcome).

    ``code`` is the OperationOutcome issue type: ``not-supported`` for an unknown parameter or
    modifier, ``invalid`` for a malformed value.
    """

    def __init__(self, message: str, code: str = "invalid") -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True, slots=True)
class SearchParameter:
    """One search parameter of one resource type."""

    name: str
    type: ParamType
    expression: str  # the FHIRPath of the R4 definition, shown in the CapabilityStatement
    extract: Callable[[Json], list[Any]]
    targets: tuple[str, ...] = ()
    definition: str = ""

    def canonical(self, resource_type: str) -> str:
        """The canonical URL of the R4 SearchParameter this implements."""
        return self.definition or f"http://hl7.org/fhir/SearchParameter/{resource_type}-{self.name}"


# --- extraction of index values --------------------------------------------------------------


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def _codings(concepts: Any) -> list[tuple[str, str]]:
    return [
        (c.get("system", ""), c["code"]) for cc in _as_list(concepts) for c in cc.get("coding", []) if c.get("code")
    ]


def _coding(path: str) -> Callable[[Json], list[Any]]:
    return lambda r: [(c.get("system", ""), c["code"]) for c in _as_list(r.get(path)) if c.get("code")]


def _concept(path: str) -> Callable[[Json], list[Any]]:
    return lambda r: _codings(r.get(path))


def _code(path: str) -> Callable[[Json], list[Any]]:
    return lambda r: [("", v) for v in _as_list(r.get(path)) if isinstance(v, str)]


def _identifiers(r: Json) -> list[Any]:
    return [(i.get("system", ""), i["value"]) for i in r.get("identifier", []) if i.get("value")]


def _refs(path: str, only: str = "") -> Callable[[Json], list[Any]]:
    def extract(r: Json) -> list[Any]:
        out = []
        for ref in _as_list(r.get(path)):
            target = ref.get("reference", "") if isinstance(ref, dict) else ""
            target = normalise_reference(target)
            if target and (not only or target.startswith(only + "/")):
                out.append(target)
        return out

    return extract


def _agent_who(r: Json) -> list[Any]:
    return [normalise_reference(a["who"]["reference"]) for a in r.get("agent", []) if a.get("who", {}).get("reference")]


def _date(*paths: str) -> Callable[[Json], list[Any]]:
    def extract(r: Json) -> list[Any]:
        out = []
        for path in paths:
            value = r.get(path)
            if isinstance(value, str):
                out.append(date_range(value))
            elif isinstance(value, dict) and (value.get("start") or value.get("end")):  # Period
                low = date_range(value["start"])[0] if value.get("start") else datetime.min.replace(tzinfo=UTC)
                high = date_range(value["end"])[1] if value.get("end") else datetime.max.replace(tzinfo=UTC)
                out.append((low, high))
        return out

    return extract


def normalise_reference(ref: str) -> str:
    """``Type/id`` from a relative or absolute reference (drops ``_history/vid``)."""
    parts = [p for p in ref.split("/") if p]
    if "_history" in parts:
        parts = parts[: parts.index("_history")]
    if len(parts) >= 2 and parts[-2][:1].isupper():
        return f"{parts[-2]}/{parts[-1]}"
    return ""


_PATIENT = ("Patient",)
_SUBJECTS = ("Patient", "Group", "Device", "Location")


def _common_subject(targets: tuple[str, ...] = _SUBJECTS) -> list[SearchParameter]:
    return [
        SearchParameter("patient", "reference", "subject.where(resolve() is Patient)", _refs("subject", "Patient"),
                        _PATIENT, "http://hl7.org/fhir/SearchParameter/clinical-patient"),
        SearchParameter("subject", "reference", "subject", _refs("subject"), targets),
        SearchParameter("encounter", "reference", "encounter", _refs("encounter"), ("Encounter",),
                        "http://hl7.org/fhir/SearchParameter/clinical-encounter"),
        SearchParameter("identifier", "token", "identifier", _identifiers, (),
                        "http://hl7.org/fhir/SearchParameter/clinical-identifier"),
    ]  # fmt: skip


def _params(*items: SearchParameter) -> dict[str, SearchParameter]:
    return {p.name: p for p in items}


#: Search parameters per resource type (besides ``_id`` and ``_lastUpdated``, which every type has).
SEARCH_PARAMETERS: dict[str, dict[str, SearchParameter]] = {
    "DiagnosticReport": _params(
        *_common_subject(),
        SearchParameter("status", "token", "status", _code("status")),
        SearchParameter("category", "token", "category", _concept("category")),
        SearchParameter("code", "token", "code", _concept("code"), (),
                        "http://hl7.org/fhir/SearchParameter/clinical-code"),
        SearchParameter("date", "date", "effective", _date("effectiveDateTime", "effectivePeriod"), (),
                        "http://hl7.org/fhir/SearchParameter/clinical-date"),
        SearchParameter("issued", "date", "issued", _date("issued")),
        SearchParameter("based-on", "reference", "basedOn", _refs("basedOn"), ("ServiceRequest",)),
        SearchParameter("result", "reference", "result", _refs("result"), ("Observation",)),
        SearchParameter("results-interpreter", "reference", "resultsInterpreter", _refs("resultsInterpreter"),
                        ("Practitioner", "PractitionerRole", "Organization", "CareTeam")),
        SearchParameter("performer", "reference", "performer", _refs("performer"),
                        ("Practitioner", "PractitionerRole", "Organization", "CareTeam")),
    ),
    "Observation": _params(
        *_common_subject(),
        SearchParameter("status", "token", "status", _code("status")),
        SearchParameter("category", "token", "category", _concept("category")),
        SearchParameter("code", "token", "code", _concept("code"), (),
                        "http://hl7.org/fhir/SearchParameter/clinical-code"),
        SearchParameter("date", "date", "effective", _date("effectiveDateTime", "effectivePeriod"), (),
                        "http://hl7.org/fhir/SearchParameter/clinical-date"),
        SearchParameter("derived-from", "reference", "derivedFrom", _refs("derivedFrom"),
                        ("ImagingStudy", "DocumentReference", "Media", "Observation")),
        SearchParameter("interpretation", "token", "interpretation", _concept("interpretation")),
    ),
    "ImagingStudy": _params(
        *_common_subject(("Patient", "Group", "Device")),
        SearchParameter("status", "token", "status", _code("status")),
        SearchParameter("started", "date", "started", _date("started")),
        SearchParameter("basedon", "reference", "basedOn", _refs("basedOn"),
                        ("ServiceRequest", "Appointment", "AppointmentResponse", "Task", "CarePlan")),
        SearchParameter("modality", "token", "series.modality", lambda r: [
            (c.get("system", ""), c["code"]) for c in r.get("modality", []) if c.get("code")]),
    ),
    "ServiceRequest": _params(
        *_common_subject(),
        SearchParameter("status", "token", "status", _code("status")),
        SearchParameter("intent", "token", "intent", _code("intent")),
        SearchParameter("priority", "token", "priority", _code("priority")),
        SearchParameter("code", "token", "code", _concept("code"), (),
                        "http://hl7.org/fhir/SearchParameter/clinical-code"),
        SearchParameter("authored", "date", "authoredOn", _date("authoredOn")),
        SearchParameter("requester", "reference", "requester", _refs("requester"),
                        ("Practitioner", "PractitionerRole", "Organization", "Patient", "RelatedPerson", "Device")),
        SearchParameter("performer", "reference", "performer", _refs("performer"),
                        ("Practitioner", "PractitionerRole", "Organization", "CareTeam", "HealthcareService",
                         "Patient", "Device", "RelatedPerson")),
    ),
    "Provenance": _params(
        SearchParameter("target", "reference", "target", _refs("target"),
                        ("DiagnosticReport", "Observation", "ImagingStudy", "ServiceRequest", "Communication",
                         "Patient")),
        SearchParameter("recorded", "date", "recorded", _date("recorded")),
        SearchParameter("agent", "reference", "agent.who", _agent_who,
                        ("Practitioner", "PractitionerRole", "Organization", "Device", "Patient", "RelatedPerson")),
    ),
    "Patient": _params(
        SearchParameter("identifier", "token", "identifier", _identifiers),
    ),
    "Device": _params(
        SearchParameter("identifier", "token", "identifier", _identifiers),
    ),
    "Organization": _params(
        SearchParameter("identifier", "token", "identifier", _identifiers),
    ),
    "Communication": _params(
        *_common_subject(("Patient", "Group")),
        SearchParameter("status", "token", "status", _code("status")),
        SearchParameter("category", "token", "category", _concept("category")),
        SearchParameter("sent", "date", "sent", _date("sent")),
        SearchParameter("received", "date", "received", _date("received")),
        SearchParameter("recipient", "reference", "recipient", _refs("recipient"),
                        ("Practitioner", "PractitionerRole", "Organization", "CareTeam", "Patient", "Group",
                         "RelatedPerson", "Device", "HealthcareService")),
        SearchParameter("based-on", "reference", "basedOn", _refs("basedOn"), ("ServiceRequest",)),
        SearchParameter("part-of", "reference", "partOf", _refs("partOf"), ("Communication",)),
    ),
}  # fmt: skip

#: Result parameters every type accepts (3.1.1.4 "Modifying Search Results") and ones we ignore.
CONTROL_PARAMETERS = frozenset({"_count", "_offset", "_include", "_format", "_pretty", "_total", "_summary", "_sort"})


@dataclass(frozen=True, slots=True)
class IndexRows:
    """The index rows of one resource version."""

    tokens: list[tuple[str, str, str]] = field(default_factory=list)  # (param, system, value)
    references: list[tuple[str, str]] = field(default_factory=list)  # (param, target)
    dates: list[tuple[str, datetime, datetime]] = field(default_factory=list)  # (param, low, high)


def index_rows(resource: Json) -> IndexRows:
    """Every indexed search value of ``resource``."""
    rows = IndexRows()
    for p in SEARCH_PARAMETERS.get(resource["resourceType"], {}).values():
        try:
            values = p.extract(resource)
        except (KeyError, TypeError, ValueError):
            continue
        for v in values:
            if p.type == "token":
                rows.tokens.append((p.name, v[0][:256], v[1][:256]))
            elif p.type == "reference":
                rows.references.append((p.name, v[:160]))
            else:
                rows.dates.append((p.name, v[0], v[1]))
    return rows


# --- dates -----------------------------------------------------------------------------------

_DATE = re.compile(
    r"^(?P<y>\d{4})(?:-(?P<m>\d{2})(?:-(?P<d>\d{2})(?:T(?P<H>\d{2}):(?P<M>\d{2})(?::(?P<S>\d{2})(?P<f>\.\d+)?)?"
    r"(?P<tz>Z|[+-]\d{2}:\d{2})?)?)?)?$"
)


def date_range(text: str) -> tuple[datetime, datetime]:
    """The UTC range a FHIR date, dateTime or instant stands for (a date is its whole day)."""
    m = _DATE.match(text.strip())
    if m is None:
        raise SearchError(f"{text!r} is not a FHIR date or dateTime")
    g = m.groupdict()
    try:
        year = int(g["y"])
        if g["m"] is None:
            return datetime(year, 1, 1, tzinfo=UTC), datetime(year, 12, 31, 23, 59, 59, 999999, tzinfo=UTC)
        month = int(g["m"])
        if g["d"] is None:
            last = calendar.monthrange(year, month)[1]
            return (
                datetime(year, month, 1, tzinfo=UTC),
                datetime(year, month, last, 23, 59, 59, 999999, tzinfo=UTC),
            )
        day = int(g["d"])
        if g["H"] is None:
            return datetime(year, month, day, tzinfo=UTC), datetime(year, month, day, 23, 59, 59, 999999, tzinfo=UTC)
        tz = UTC
        if g["tz"] and g["tz"] != "Z":
            sign = 1 if g["tz"][0] == "+" else -1
            tz = timezone(sign * timedelta(hours=int(g["tz"][1:3]), minutes=int(g["tz"][4:6])))
        second = int(g["S"] or 0)
        micro = int((g["f"] or ".0")[1:7].ljust(6, "0"))
        start = datetime(year, month, day, int(g["H"]), int(g["M"]), second, micro, tzinfo=tz).astimezone(UTC)
        if g["S"] is None:
            return start, start + (timedelta(minutes=1) - timedelta(microseconds=1))
        if g["f"] is None:
            return start, start + (timedelta(seconds=1) - timedelta(microseconds=1))
        return start, start
    except (ValueError, OverflowError) as exc:
        # OverflowError: an instant at the calendar's edge (9999-12-31T23:59Z, 0001-01-01T00:00+01:00) whose
        # interval or UTC conversion leaves datetime's range — a client error (400), never a 500.
        raise SearchError(f"{text!r} is not a valid date: {exc}") from None


# --- parsing of search requests --------------------------------------------------------------

DATE_PREFIXES = ("eq", "ne", "gt", "lt", "ge", "le")


@dataclass(frozen=True, slots=True)
class TokenValue:
    """One token search value, ``[system|]code`` (FHIR R4 3.1.1.5.9)."""

    system: str | None  # None: any system; "": no system
    code: str | None  # None: any code of the system


@dataclass(frozen=True, slots=True)
class DateValue:
    """One date search value with its prefix, as the interval it covers (FHIR R4 3.1.1.5.7, 3.1.1.4.2)."""

    prefix: str
    low: datetime
    high: datetime


@dataclass(frozen=True, slots=True)
class Criterion:
    """One search parameter occurrence: its values are OR-ed; criteria are AND-ed."""

    param: str
    type: Literal["token", "reference", "date", "id", "lastUpdated"]
    values: tuple[Any, ...]


@dataclass(frozen=True, slots=True)
class Include:
    """``_include=Source:param`` (3.1.1.5.6)."""

    source_type: str
    param: str
    target_type: str | None


@dataclass
class SearchRequest:
    """A parsed search: criteria, paging, includes, and the parameters kept for links."""

    resource_type: str
    criteria: list[Criterion] = field(default_factory=list)
    count: int = 50
    offset: int = 0
    includes: list[Include] = field(default_factory=list)
    used: list[tuple[str, str]] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)


def _split_values(raw: str) -> list[str]:
    """Values separated by unescaped commas (3.1.1.5.7 escaping with ``\\``)."""
    out, cur, i = [], "", 0
    while i < len(raw):
        ch = raw[i]
        if ch == "\\" and i + 1 < len(raw):
            cur += raw[i + 1]
            i += 2
            continue
        if ch == ",":
            out.append(cur)
            cur = ""
        else:
            cur += ch
        i += 1
    out.append(cur)
    if any(v == "" for v in out):
        raise SearchError("empty value in a search parameter")
    return out


def _token(value: str) -> TokenValue:
    if "|" not in value:
        return TokenValue(None, value)
    system, _, code = value.partition("|")
    return TokenValue(system, code or None)


def _reference(p: SearchParameter, value: str) -> tuple[str, ...]:
    if "/" in value:
        ref = normalise_reference(value)
        if not ref:
            raise SearchError(f"{p.name}: {value!r} is not a reference")
        if p.targets and ref.split("/")[0] not in p.targets:
            raise SearchError(f"{p.name} refers to {', '.join(p.targets)}, not {ref.split('/')[0]}")
        return (ref,)
    if not re.fullmatch(r"[A-Za-z0-9\-.]{1,64}", value):
        raise SearchError(f"{p.name}: {value!r} is not a resource id")
    return tuple(f"{t}/{value}" for t in p.targets)


def _date_value(value: str) -> DateValue:
    prefix = value[:2] if value[:2] in DATE_PREFIXES else "eq"
    if value[:2].isalpha() and value[:2] not in DATE_PREFIXES:
        raise SearchError(f"date prefix {value[:2]!r} is not supported (use {', '.join(DATE_PREFIXES)})")
    text = value[2:] if value[:2] in DATE_PREFIXES else value
    low, high = date_range(text)
    return DateValue(prefix, low, high)


def parse_search(
    resource_type: str,
    params: Iterable[tuple[str, str]],
    *,
    lenient: bool,
    default_count: int = 50,
    max_count: int = 200,
) -> SearchRequest:
    """Parse query parameters; raise :class:`SearchError` (or skip, when ``lenient``) on unknown ones."""
    known = SEARCH_PARAMETERS[resource_type]
    req = SearchRequest(resource_type, count=default_count)
    for name, raw in params:
        base, _, modifier = name.partition(":")
        try:
            if base in CONTROL_PARAMETERS:
                _control(req, base, modifier, raw, max_count=max_count)
                continue
            if modifier:
                raise SearchError(f"modifier :{modifier} on {base} is not supported", "not-supported")
            values = _split_values(raw)
            if base == "_id":
                req.criteria.append(Criterion("_id", "id", tuple(values)))
            elif base == "_lastUpdated":
                req.criteria.append(Criterion("_lastUpdated", "lastUpdated", tuple(_date_value(v) for v in values)))
            elif base in known:
                p = known[base]
                if p.type == "token":
                    parsed: tuple[Any, ...] = tuple(_token(v) for v in values)
                elif p.type == "reference":
                    parsed = tuple(ref for v in values for ref in _reference(p, v))
                else:
                    parsed = tuple(_date_value(v) for v in values)
                req.criteria.append(Criterion(base, p.type, parsed))
            else:
                raise SearchError(f"unknown search parameter {name!r} for {resource_type}", "not-supported")
        except SearchError:
            if lenient and not (base in known or base in CONTROL_PARAMETERS or base in {"_id", "_lastUpdated"}):
                req.ignored.append(name)
                continue
            raise
        req.used.append((name, raw))
    return req


_ASCII_INTEGER = re.compile(r"[0-9]{1,18}")
MAX_OFFSET = 100_000  # past this a page is a scan of the table; also keeps OFFSET within SQL's 64-bit integer


def _control(req: SearchRequest, base: str, modifier: str, raw: str, *, max_count: int) -> None:
    if base in {"_count", "_offset"}:
        # ASCII digits only: str.isdigit() also accepts "²" and other digits int() refuses (a 500 found by fuzzing).
        if modifier or _ASCII_INTEGER.fullmatch(raw) is None:
            raise SearchError(f"{base} must be a non-negative integer")
        if base == "_count":
            req.count = min(int(raw), max_count)
            req.used.append(("_count", str(req.count)))
        else:
            req.offset = int(raw)
            if req.offset > MAX_OFFSET:
                raise SearchError(f"_offset must be at most {MAX_OFFSET}; narrow the search instead of paging so far")
        return
    if base == "_include":
        if modifier:
            raise SearchError(f"_include:{modifier} is not supported")
        parts = raw.split(":")
        if len(parts) not in (2, 3) or parts[0] != req.resource_type:
            raise SearchError(f"_include={raw!r}: expected {req.resource_type}:<reference parameter>[:<type>]")
        p = SEARCH_PARAMETERS[req.resource_type].get(parts[1])
        if p is None or p.type != "reference":
            raise SearchError(f"_include={raw!r}: {parts[1]!r} is not a reference parameter of {req.resource_type}")
        req.includes.append(Include(parts[0], parts[1], parts[2] if len(parts) == 3 else None))
        req.used.append(("_include", raw))
        return
    if base == "_total" and raw not in {"none", "estimate", "accurate"}:
        raise SearchError("_total must be none, estimate or accurate")
    if base == "_summary" and raw not in {"false"}:
        raise SearchError("_summary is not supported (only _summary=false)")
    if base == "_sort" and raw not in {"-_lastUpdated"}:
        raise SearchError("_sort: only -_lastUpdated (the default order) is supported")
    # _format, _pretty: accepted; responses are always application/fhir+json.
