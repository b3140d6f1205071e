"""Hostile input to reporting's FHIR R4 search (3.1.1): property-based tests and injection attempts (issue #15).

* :func:`parse_search` takes any list of query parameters for any resource type and either gives a
  :class:`SearchRequest` or raises :class:`SearchError` (which the API answers as a 400 OperationOutcome);
  nothing else escapes. :func:`date_range` gives an ordered UTC interval or raises :class:`SearchError`, at the
  calendar's edges too (FHIR R4 2.24.0.4 dateTime, 3.1.1.5.7 date search).
* Through the HTTP API (FastAPI TestClient on SQLite): any query on any searchable type is answered 200 with a
  searchset Bundle or 400 with an OperationOutcome, never a 500; ``vread`` with any version id is 200 or 404.
* SQL and FHIRPath injection: every search parameter of every type, fed the classic payloads (quotes, comments,
  ``UNION``, stacked statements, ``LIKE`` wildcards, FHIRPath expressions, ``_filter``), finds nothing and
  changes nothing: the row counts of every table stay as they were.

Found by these tests and fixed (kept as ``@example`` regressions): instants at the calendar's edge
(``9999-12-31T23:59Z``, ``0001-01-01T00:00+01:00``) raised OverflowError (now the last minute is an interval
within the calendar and an instant whose UTC time leaves it is a 400), and ``_count=²`` passed
``str.isdigit()`` before ``int()`` refused it — both were 500s. ``_offset`` is now bounded.
"""

from __future__ import annotations

from urllib.parse import quote

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine, MetaData, func, select

from radcds.adapters.db.outbox import OutboxRelay
from radcds_devstack.testing import RecordingPublisher
from radcds_reporting.adapters.fhir.search import (
    CONTROL_PARAMETERS,
    MAX_OFFSET,
    SEARCH_PARAMETERS,
    SearchError,
    SearchRequest,
    date_range,
    parse_search,
)
from radcds_reporting.app import build_components, create_app
from radcds_reporting.handlers import ReportingService
from radcds_reporting.settings import ReportingSettings

from .conftest import STUDY, findings_event

pytestmark = pytest.mark.properties

TYPES = sorted(SEARCH_PARAMETERS)
NAMES = sorted(
    {n for params in SEARCH_PARAMETERS.values() for n in params} | CONTROL_PARAMETERS | {"_id", "_lastUpdated"}
)

# Pieces of FHIR search syntax, so that generated values reach past the first check of each parser.
_PIECES = st.sampled_from(
    ["|", ",", "\\,", "\\|", "\\$", ":", "/", "Patient/", "http://loinc.org", "eq", "ne", "gt", "lt", "ge", "le",
     "sa", "eb", "ap", "2026", "-01", "-12-31", "T23:59", ":59", ".123456789", "Z", "+14:00", "-01:00", "9999",
     "0001", "0000", "²", "٣", "%", "_", "'", '"', ";", "--", "*", " ", "\x00", "DiagnosticReport:subject",
     "Observation:derived-from", "ImagingStudy:patient", "missing", "exact", "not", "text", "true"]
)  # fmt: skip
_VALUES = st.one_of(st.text(max_size=40), st.lists(_PIECES, max_size=8).map("".join))
_NAMES = st.one_of(
    st.sampled_from(NAMES),
    st.tuples(st.sampled_from(NAMES), st.sampled_from(["missing", "exact", "not", "text", "contains", "Patient",
                                                       "iterate", "above", "below", "of-type", ""])).map(":".join),
    st.text(max_size=12),
)  # fmt: skip
_PARAMS = st.lists(st.tuples(_NAMES, _VALUES), max_size=6)

EDGE_INSTANTS = ("9999-12-31T23:30-01:00", "0001-01-01T00:00+01:00", "9999-12-31T23:59Z", "9999-12-31T23:59:59Z")


# ------------------------------------------------------------------ the parsers, pure


@given(st.sampled_from(TYPES), _PARAMS, st.booleans())
@example("DiagnosticReport", [("_count", "²")], False)
@example("DiagnosticReport", [("_offset", "٣")], False)
@example("DiagnosticReport", [("date", "ge9999-12-31T23:59Z")], False)
@example("Observation", [("_lastUpdated", "lt0001-01-01T00:00+01:00")], True)
@example("DiagnosticReport", [("_offset", "9" * 40)], False)
def test_any_query_parameters_give_a_search_request_or_a_search_error(rtype, params, lenient):
    try:
        req = parse_search(rtype, params, lenient=lenient)
    except SearchError:
        return
    assert isinstance(req, SearchRequest)
    assert 0 <= req.count <= 200 and 0 <= req.offset <= MAX_OFFSET


@given(_VALUES)
@example("9999-12-31T23:59Z")
@example("9999-12-31T23:30-01:00")
@example("0001-01-01T00:00+01:00")
@example("9999-12-31T23:59:59Z")
def test_any_date_text_gives_an_ordered_utc_interval_or_a_search_error(text):
    try:
        low, high = date_range(text)
    except SearchError:
        return
    assert low <= high
    assert low.utcoffset() is not None and low.utcoffset().total_seconds() == 0


@pytest.mark.parametrize("text", EDGE_INSTANTS[:2])
def test_an_instant_whose_interval_leaves_the_calendar_is_a_search_error_not_an_overflow(text):
    with pytest.raises(SearchError, match="not a valid date"):
        date_range(text)


@pytest.mark.parametrize("text", EDGE_INSTANTS[2:])
def test_the_last_minute_and_second_of_the_calendar_are_intervals_within_it(text):
    low, high = date_range(text)
    assert (low.year, high.year, high.second, high.microsecond) == (9999, 9999, 59, 999999)


@pytest.mark.parametrize("raw", ["²", "٣", "1²", "-1", "+1", " 1", "1.0", "0x10", "1e3", "9" * 19])
def test_count_and_offset_accept_ascii_digits_only(raw):
    for name in ("_count", "_offset"):
        with pytest.raises(SearchError):
            parse_search("DiagnosticReport", [(name, raw)], lenient=False)


def test_an_offset_past_the_bound_is_a_search_error_and_one_at_the_bound_is_not():
    assert parse_search("DiagnosticReport", [("_offset", str(MAX_OFFSET))], lenient=False).offset == MAX_OFFSET
    with pytest.raises(SearchError, match="_offset"):
        parse_search("DiagnosticReport", [("_offset", str(MAX_OFFSET + 1))], lenient=False)


# ------------------------------------------------------------------ the HTTP API


@pytest.fixture(scope="module")
def api(reporting_db: Engine, tmp_path_factory):
    service = ReportingService(
        engine=reporting_db,
        relay=OutboxRelay(reporting_db, RecordingPublisher(), name="reporting-outbox"),
        consumer_group="g",
    )
    service.handle(findings_event("e1", STUDY + ".1.1"))
    service.handle(findings_event("e2", STUDY + ".1.2", critical=True))
    settings_ = ReportingSettings(
        data_dir=tmp_path_factory.mktemp("rep"), fhir_base_url="http://testserver/fhir", mllp_enabled=False
    )
    parts = build_components(settings_, engine=reporting_db, publisher=RecordingPublisher(), consume=False)
    with TestClient(create_app(settings_, components=parts), raise_server_exceptions=False) as client:
        yield client


def _row_counts(engine: Engine) -> dict[str, int]:
    meta = MetaData()
    meta.reflect(engine)
    with engine.connect() as conn:
        return {name: conn.execute(select(func.count()).select_from(t)).scalar_one() for name, t in meta.tables.items()}


def _assert_bundle_or_outcome(r) -> None:
    assert r.status_code in (200, 400), (r.status_code, r.text[:300])
    body = r.json()
    if r.status_code == 200:
        assert body["resourceType"] == "Bundle" and body["type"] == "searchset"
    else:
        assert body["resourceType"] == "OperationOutcome" and body["issue"][0]["severity"] == "error"


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture], max_examples=60)
@given(rtype=st.sampled_from(TYPES), params=_PARAMS)
@example(rtype="DiagnosticReport", params=[("_count", "²")])
@example(rtype="DiagnosticReport", params=[("issued", "9999-12-31T23:59Z")])
@example(rtype="Communication", params=[("sent", "le0001-01-01T00:00+01:00")])
@example(rtype="ServiceRequest", params=[("_offset", "99999999999999999999")])
def test_any_query_on_any_type_answers_200_bundle_or_400_operation_outcome(api, rtype, params):
    _assert_bundle_or_outcome(api.get(f"/fhir/{rtype}", params=params))


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture], max_examples=40)
@given(version=st.text(min_size=1, max_size=24).filter(lambda v: v not in {".", ".."}))
@example(version="²")
@example(version="9" * 30)
def test_vread_with_any_version_id_answers_200_or_404_operation_outcome(api, version):
    dr = api.get("/fhir/DiagnosticReport").json()["entry"][0]["resource"]
    r = api.get(f"/fhir/DiagnosticReport/{dr['id']}/_history/{quote(version, safe='')}")
    assert r.status_code in (200, 404), (r.status_code, r.text[:300])
    assert r.json()["resourceType"] in {"DiagnosticReport", "OperationOutcome"}


# ------------------------------------------------------------------ SQL and FHIRPath injection

SQL_PAYLOADS = (
    "' OR '1'='1",
    "' OR 1=1 --",
    '" OR ""="',
    "1; DROP TABLE fhir_resources; --",
    "x' UNION SELECT resource_id, resource_type FROM fhir_resources --",
    "%",
    "_",
    "%' --",
    "\\",
    "'; DELETE FROM outbox; --",
    "' AND (SELECT COUNT(*) FROM sqlite_master) > 0 --",
    "1' AND pg_sleep(0) IS NULL --",
)
FHIRPATH_PAYLOADS = (
    "DiagnosticReport.where(true)",
    "%resource.subject",
    "iif(true, 'x', 'y')",
    "subject.resolve().name",
    "code.coding.where(system = 'http://loinc.org')",
    "$this",
)


def _injection_values(payload: str) -> list[str]:
    """The payload as every part of a search value: code, system|code, a reference, a date with its prefix."""
    return [payload, f"http://loinc.org|{payload}", f"Patient/{payload}", f"ge{payload}"]


@pytest.mark.parametrize("rtype", TYPES)
def test_sql_and_fhirpath_payloads_in_every_search_parameter_find_nothing_and_change_nothing(api, reporting_db, rtype):
    before = _row_counts(reporting_db)
    names = [*SEARCH_PARAMETERS[rtype], "_id", "_lastUpdated"]
    for name in names:
        for payload in SQL_PAYLOADS + FHIRPATH_PAYLOADS:
            for value in _injection_values(payload):
                r = api.get(f"/fhir/{rtype}", params={name: value})
                _assert_bundle_or_outcome(r)
                if r.status_code == 200:
                    assert r.json()["total"] == 0, (name, value)
    assert _row_counts(reporting_db) == before


@pytest.mark.parametrize(
    "params",
    [
        {"_filter": "subject eq 'Patient/x' or true"},
        {"_query": "everything"},
        {"_has:Observation:derived-from:code": "' OR 1=1 --"},
        {"subject.name": "x' OR '1'='1"},
        {"_include": "DiagnosticReport:subject' OR 1=1 --"},
        {"_sort": "resource_id; DROP TABLE fhir_resources"},
        {"_revinclude": "Provenance:target"},
    ],
)
def test_unsupported_search_syntax_carrying_a_payload_is_a_400_operation_outcome(api, reporting_db, params):
    before = _row_counts(reporting_db)
    r = api.get("/fhir/DiagnosticReport", params=params)
    assert r.status_code == 400 and r.json()["resourceType"] == "OperationOutcome"
    assert _row_counts(reporting_db) == before


def test_payloads_in_the_path_are_404_operation_outcomes_and_change_nothing(api, reporting_db):
    before = _row_counts(reporting_db)
    for payload in SQL_PAYLOADS:
        for path in (f"/fhir/DiagnosticReport/{payload}", f"/fhir/Patient/{payload}/_history/1"):
            r = api.get(path)
            assert r.status_code in (400, 404), (path, r.status_code)
            assert r.json()["resourceType"] == "OperationOutcome"
    assert _row_counts(reporting_db) == before


def test_a_write_body_nested_too_deeply_to_decode_is_a_400_operation_outcome(api, reporting_db):
    before = _row_counts(reporting_db)
    dr = api.get("/fhir/DiagnosticReport").json()["entry"][0]["resource"]
    deep = b"[" * 100_000 + b"]" * 100_000
    for method, path, ctype in (
        ("PUT", f"/fhir/DiagnosticReport/{dr['id']}", "application/fhir+json"),
        ("PATCH", f"/fhir/DiagnosticReport/{dr['id']}", "application/json-patch+json"),
    ):
        r = api.request(method, path, content=deep, headers={"Content-Type": ctype})
        assert r.status_code == 400 and r.json()["resourceType"] == "OperationOutcome", (method, r.status_code)
    assert _row_counts(reporting_db) == before
