"""FHIR R4 search (3.1.1) over the index tables, _include, paging, history and vread.

Runs on SQLite; the ``postgres``-marked variant runs the same tests on a throwaway PostgreSQL.
"""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from radcds.adapters.db.outbox import OutboxRelay
from radcds.domain import codes
from radcds.domain.codes import Coding
from radcds.domain.findings import StudyContext
from radcds_devstack.testing import RecordingPublisher
from radcds_reporting.app import build_components, create_app
from radcds_reporting.domain.orders import OrderControl
from radcds_reporting.domain.service_request import OrderDetails
from radcds_reporting.handlers import ReportingService
from radcds_reporting.settings import ReportingSettings
from radcds_reporting.use_cases.orders import store_order

from .conftest import CTX, STUDY, findings_event

STUDY2 = "1.2.826.0.1.3680043.2.1125.2"
CTX2 = StudyContext(
    patient_id="PID-2", accession_number="ACC-2", modality="CT", study_date="20250615", study_description="CT CHEST"
)
ORDER = OrderDetails(
    patient_id="PID-1",
    placer_order_number="P-1",
    filler_order_number="F-1",
    accession_number="ACC-1",
    study_instance_uid=STUDY,
    code=Coding(codes.LOINC, "24725-4", "CT Head"),
    requester="Practitioner/dr-order",
    performers=("CareTeam/ed-team",),
    encounter="Encounter/enc-1",
    authored_on="2026-01-01T09:00:00Z",
)
CANCELLED = OrderDetails(patient_id="PID-2", placer_order_number="P-2", control=OrderControl.CANCEL)


@pytest.fixture(scope="module")
def api(reporting_db, tmp_path_factory):
    store_order(engine=reporting_db, order=ORDER)
    store_order(engine=reporting_db, order=CANCELLED)
    service = ReportingService(
        engine=reporting_db,
        relay=OutboxRelay(reporting_db, RecordingPublisher(), name="reporting-outbox"),
        consumer_group="g",
    )
    service.handle(findings_event("e1", STUDY + ".1.1"))
    service.handle(findings_event("e2", STUDY + ".1.2", reason="outside envelope: colour image"))
    service.handle(findings_event("e3", STUDY2 + ".1.1", context=CTX2, study=STUDY2))
    settings = ReportingSettings(
        data_dir=tmp_path_factory.mktemp("rep"), fhir_base_url="http://testserver/fhir", mllp_enabled=False
    )
    parts = build_components(settings, engine=reporting_db, publisher=RecordingPublisher(), consume=False)
    app = create_app(settings, components=parts)
    with TestClient(app) as client:
        yield client


def _search(api, rtype: str, **params) -> dict:
    r = api.get(f"/fhir/{rtype}", params=params)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("application/fhir+json")
    return r.json()


def _matches(bundle: dict) -> list[dict]:
    return [e["resource"] for e in bundle.get("entry", []) if e["search"]["mode"] == "match"]


def _report(api, accession: str) -> dict:
    (dr,) = _matches(_search(api, "DiagnosticReport", identifier=accession))
    return dr


def test_report_of_an_ordered_study_is_based_on_its_service_request_and_encounter(api):
    dr = _report(api, "ACC-1")
    (sr,) = _matches(_search(api, "ServiceRequest", identifier="ACC-1"))
    assert dr["basedOn"] == [{"reference": f"ServiceRequest/{sr['id']}"}]
    assert dr["encounter"] == {"reference": "Encounter/enc-1"}
    assert dr["code"]["coding"][0]["code"] == "24725-4"  # CT head
    assert _report(api, "ACC-2")["code"]["coding"][0]["code"] == "24627-2"  # CT chest


def test_search_by_status_token_returns_only_matching_reports(api):
    assert _search(api, "DiagnosticReport", status="preliminary")["total"] == 2
    assert _search(api, "DiagnosticReport", status="final")["total"] == 0
    assert _search(api, "DiagnosticReport", status="final,preliminary")["total"] == 2


def test_search_by_patient_returns_that_patients_resources_only(api):
    patient = _report(api, "ACC-2")["subject"]["reference"]
    bundle = _search(api, "DiagnosticReport", patient=patient.split("/")[1])
    assert [r["identifier"][0]["value"] for r in _matches(bundle)] == ["ACC-2"]
    assert _search(api, "Observation", subject=patient)["total"] == 1


@pytest.mark.parametrize(
    ("date", "accessions"),
    [
        ("ge2026-01-01", {"ACC-1"}),
        ("lt2026-01-01", {"ACC-2"}),
        ("2026-01", {"ACC-1"}),
        ("le2025-06-15", {"ACC-2"}),
        ("gt2025-06-15", {"ACC-1"}),
        ("2025-06-15", {"ACC-2"}),
        ("ne2025-06-15", {"ACC-1"}),
        ("ge2025-01-01T00:00:00Z", {"ACC-1", "ACC-2"}),
    ],
)
def test_search_by_date_prefix_matches_fhir_range_semantics(api, date, accessions):
    bundle = _search(api, "DiagnosticReport", date=date, _count=10)
    assert {r["identifier"][0]["value"] for r in _matches(bundle)} == accessions


def test_two_date_parameters_are_anded_into_a_range(api):
    r = api.get("/fhir/DiagnosticReport?date=ge2025-06-01&date=le2025-06-30")
    assert {x["resource"]["identifier"][0]["value"] for x in r.json()["entry"]} == {"ACC-2"}


def test_search_by_identifier_with_and_without_system(api):
    assert _search(api, "DiagnosticReport", identifier="ACC-1")["total"] == 1
    assert _search(api, "DiagnosticReport", identifier="|ACC-1")["total"] == 1
    assert _search(api, "DiagnosticReport", identifier="http://other.example|ACC-1")["total"] == 0
    study = _search(api, "ImagingStudy", identifier=f"urn:dicom:uid|urn:oid:{STUDY}")
    assert study["total"] == 1


def test_search_by_code_with_system(api):
    assert _search(api, "DiagnosticReport", code="http://loinc.org|24627-2")["total"] == 1
    assert _search(api, "DiagnosticReport", code="http://snomed.info/sct|24627-2")["total"] == 0
    obs = _search(api, "Observation", code=f"{codes.RADCDS_MEASUREMENT}|hyperdense-region-mean-hu")
    assert obs["total"] == 2


def test_search_by_based_on_reference(api):
    (sr,) = _matches(_search(api, "ServiceRequest", identifier="P-1"))
    assert _search(api, "DiagnosticReport", **{"based-on": f"ServiceRequest/{sr['id']}"})["total"] == 1
    assert _search(api, "DiagnosticReport", **{"based-on": sr["id"]})["total"] == 1
    assert _search(api, "ImagingStudy", basedon=f"ServiceRequest/{sr['id']}")["total"] == 1


def test_cancelled_order_is_a_revoked_service_request(api):
    (sr,) = _matches(_search(api, "ServiceRequest", status="revoked"))
    assert sr["identifier"][0]["value"] == "P-2" and sr["intent"] == "order"
    (active,) = _matches(_search(api, "ServiceRequest", status="active"))
    types = {i.get("type", {}).get("coding", [{}])[0].get("code") for i in active["identifier"]}
    assert {"PLAC", "FILL", "ACSN"} <= types
    assert active["extension"][0]["valueId"] == STUDY


def test_include_adds_results_subject_and_order_as_include_entries(api):
    r = api.get(
        "/fhir/DiagnosticReport?identifier=ACC-1&_include=DiagnosticReport:result"
        "&_include=DiagnosticReport:subject&_include=DiagnosticReport:based-on"
    )
    entries = r.json()["entry"]
    assert [e["search"]["mode"] for e in entries].count("match") == 1
    included = sorted(e["resource"]["resourceType"] for e in entries if e["search"]["mode"] == "include")
    assert included == ["Observation", "Observation", "Patient", "ServiceRequest"]


def test_paging_links_walk_the_whole_result_set(api):
    first = _search(api, "DiagnosticReport", _count=1)
    assert first["total"] == 2 and len(first["entry"]) == 1
    links = {link["relation"]: link["url"] for link in first["link"]}
    assert "previous" not in links and links["next"].startswith("http://testserver/fhir/DiagnosticReport?")
    second = api.get(links["next"].removeprefix("http://testserver")).json()
    links2 = {link["relation"]: link["url"] for link in second["link"]}
    assert "next" not in links2 and "previous" in links2
    assert first["entry"][0]["resource"]["id"] != second["entry"][0]["resource"]["id"]


def test_unknown_parameter_returns_400_unless_handling_is_lenient(api):
    r = api.get("/fhir/DiagnosticReport", params={"colour": "blue"})
    assert r.status_code == 400 and r.json()["issue"][0]["code"] == "not-supported"
    lenient = api.get("/fhir/DiagnosticReport", params={"colour": "blue"}, headers={"Prefer": "handling=lenient"})
    assert lenient.status_code == 200 and lenient.json()["total"] == 2
    outcome = [e for e in lenient.json()["entry"] if e["search"]["mode"] == "outcome"]
    assert "colour" in outcome[0]["resource"]["issue"][0]["diagnostics"]
    assert "colour" not in lenient.json()["link"][0]["url"]


@pytest.mark.parametrize(
    "query",
    [
        "date=2026-13-01",
        "date=xx2026",
        "_count=-1",
        "_include=DiagnosticReport:status",
        "status:missing=true",
        "based-on=Patient/1",
        "subject=",
        "_include:iterate=DiagnosticReport:result",
    ],
)
def test_malformed_parameter_returns_400_operation_outcome_even_when_lenient(api, query):
    r = api.get(f"/fhir/DiagnosticReport?{query}", headers={"Prefer": "handling=lenient"})
    assert r.status_code == 400, query
    assert r.json()["resourceType"] == "OperationOutcome"


def test_history_keeps_every_version_and_vread_returns_each(api):
    dr = _report(api, "ACC-1")
    assert dr["meta"]["versionId"] == "2"  # the second instance's findings updated it
    history = api.get(f"/fhir/DiagnosticReport/{dr['id']}/_history").json()
    assert history["type"] == "history" and history["total"] == 2
    assert [e["resource"]["meta"]["versionId"] for e in history["entry"]] == ["2", "1"]
    v1 = api.get(f"/fhir/DiagnosticReport/{dr['id']}/_history/1")
    assert v1.status_code == 200 and v1.headers["etag"] == 'W/"1"' and len(v1.json()["result"]) == 1
    assert api.get(f"/fhir/DiagnosticReport/{dr['id']}/_history/9").status_code == 404


def test_provenance_is_found_by_target(api):
    dr = _report(api, "ACC-1")
    (prov,) = _matches(_search(api, "Provenance", target=f"DiagnosticReport/{dr['id']}"))
    assert {e["what"]["reference"].split("/")[0] for e in prov["entity"]} == {"ImagingStudy", "Observation"}
    assert prov["policy"]


def test_metadata_lists_exactly_the_supported_search_parameters(api):
    cs = api.get("/fhir/metadata").json()
    by_type = {r["type"]: r for r in cs["rest"][0]["resource"]}
    assert set(by_type) == {
        "Communication",
        "Device",
        "DiagnosticReport",
        "ImagingStudy",
        "Observation",
        "Organization",
        "Patient",
        "Provenance",
        "ServiceRequest",
    }
    names = {p["name"] for p in by_type["DiagnosticReport"]["searchParam"]}
    assert {"patient", "status", "date", "issued", "identifier", "based-on", "code", "_lastUpdated"} <= names
    assert by_type["DiagnosticReport"]["searchInclude"] == [
        "DiagnosticReport:result",
        "DiagnosticReport:subject",
        "DiagnosticReport:based-on",
    ]
    assert CTX.accession_number == "ACC-1"


def test_search_by_id_and_last_updated(api):
    dr = _report(api, "ACC-2")
    assert _search(api, "DiagnosticReport", _id=dr["id"])["total"] == 1
    assert _search(api, "DiagnosticReport", _lastUpdated="ge2000-01-01")["total"] == 2
    assert _search(api, "DiagnosticReport", _lastUpdated="lt2000-01-01")["total"] == 0
