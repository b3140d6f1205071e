"""fusion's HTTP API built by create_app (Kafka consumer off; a recording publisher behind the outbox): health,
the recommendations as FHIR ServiceRequests (read, search), ``$cancel`` with its errors, and the events the outbox
relay publishes."""

from __future__ import annotations

import time
from datetime import date
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from radcds.adapters.db.engine import make_engine, sqlite_url
from radcds.domain.events import ASSESSMENT_PRODUCED, RECOMMENDATION_CHANGED
from radcds_devstack.testing import RecordingPublisher
from radcds_fusion.adapters.sr_nodules import ReportedNodule
from radcds_fusion.app import FusionComponents, build_components, create_app
from radcds_fusion.domain.context import PatientRef
from radcds_fusion.domain.nodules import Composition, Nodule
from radcds_fusion.settings import FusionSettings

PATIENT = PatientRef("patient-1", "MRN-1", "HOSP")


@pytest.fixture
def app_and_events(tmp_path: Path):
    events = RecordingPublisher()
    settings = FusionSettings(environment="test", data_dir=tmp_path, ehr_patient_identifier_system="urn:oid:1.2.3")
    engine = make_engine(sqlite_url(tmp_path / "fusion.db"))
    parts = build_components(settings, engine=engine, publisher=events, consume=False)
    app = create_app(settings, components=parts)
    with TestClient(app) as client:
        yield parts, client, events


def recommend(parts: FusionComponents) -> str:
    service = parts.service
    nodule = Nodule(Composition.SOLID, 8.2, 7.8, location="Upper lobe of right lung")
    reported = ReportedNodule(nodule, ("SCT", "427359005", "Solitary nodule of lung"), "1.9", "n1", None, None)
    service.record_measurement_report(
        event_id="sr-1",
        patient=PATIENT,
        study_uid="1.2.9.2",
        study_date=date(2026, 12, 1),
        sr_instance_uid="1.2.9.2.9",
        nodules=[reported],
    )
    rec = parts.queries.search(patient_id="patient-1", states=None)
    return rec[0][0].id


def wait_for(events: RecordingPublisher, kind, count: int) -> list[dict]:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and len(events.of(kind)) < count:
        time.sleep(0.05)
    return events.of(kind)


def test_health_and_readiness_answer(app_and_events):
    _, client, _ = app_and_events
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200, ready.text


def test_recommendation_is_read_and_searched_as_a_service_request_and_its_events_published(app_and_events):
    app, client, events = app_and_events
    rec_id = recommend(app)
    read = client.get(f"/fhir/ServiceRequest/{rec_id}")
    assert read.status_code == 200
    assert read.headers["content-type"].startswith("application/fhir+json")
    body = read.json()
    assert (body["intent"], body["status"]) == ("proposal", "active")
    assert body["subject"] == {"reference": "Patient/patient-1", "identifier": {"value": "MRN-1"}}
    assert body["reasonCode"][0]["coding"] == [
        {"system": "http://snomed.info/sct", "code": "427359005", "display": "Solitary nodule of lung"}
    ]
    by_mrn = client.get("/fhir/ServiceRequest", params={"patient.identifier": "urn:oid:1.2.3|MRN-1"}).json()
    assert [e["resource"]["id"] for e in by_mrn["entry"]] == [rec_id]
    assert client.get("/fhir/ServiceRequest", params={"patient.identifier": "MRN-2"}).json()["total"] == 0
    # the same digits in another identifier system are another patient's
    other = client.get("/fhir/ServiceRequest", params={"patient.identifier": "urn:oid:9.9.9|MRN-1"}).json()
    assert other["total"] == 0
    search = client.get("/fhir/ServiceRequest", params={"patient": "Patient/patient-1", "status": "active"}).json()
    assert search["total"] == 1 and search["entry"][0]["resource"]["id"] == rec_id
    assert client.get("/fhir/ServiceRequest", params={"status": "completed"}).json()["total"] == 0
    assert wait_for(events, RECOMMENDATION_CHANGED, 1)[0]["recommendationId"] == rec_id
    assert wait_for(events, ASSESSMENT_PRODUCED, 1)[0]["studyInstanceUid"] == "1.2.9.2"


def params(reason: str | None = "moved to another hospital", practitioner: str | None = "Practitioner/7") -> dict:
    parameter = []
    if reason is not None:
        parameter.append({"name": "reason", "valueString": reason})
    if practitioner is not None:
        parameter.append({"name": "practitioner", "valueReference": {"reference": practitioner}})
    return {"resourceType": "Parameters", "parameter": parameter}


def test_cancel_revokes_the_service_request_and_a_second_cancel_conflicts(app_and_events):
    app, client, events = app_and_events
    rec_id = recommend(app)
    done = client.post(f"/fhir/ServiceRequest/{rec_id}/$cancel", json=params())
    assert done.status_code == 200, done.text
    assert done.json()["status"] == "revoked"
    assert done.json()["meta"]["versionId"] == "2"
    again = client.post(f"/fhir/ServiceRequest/{rec_id}/$cancel", json=params())
    assert again.status_code == 409
    assert again.json()["resourceType"] == "OperationOutcome"
    assert wait_for(events, RECOMMENDATION_CHANGED, 2)[-1]["state"] == "cancelled"


@pytest.mark.parametrize(
    ("body", "status"),
    [
        (params(reason=None), 400),
        (params(reason="  "), 400),
        (params(practitioner=None), 400),
        (params(practitioner="Patient/1"), 400),
        ({"resourceType": "Bundle"}, 400),
    ],
)
def test_cancel_without_reason_or_practitioner_is_refused_with_an_operation_outcome(app_and_events, body, status):
    app, client, _ = app_and_events
    rec_id = recommend(app)
    answer = client.post(f"/fhir/ServiceRequest/{rec_id}/$cancel", json=body)
    assert answer.status_code == status
    assert answer.json()["issue"][0]["severity"] == "error"
    assert client.get(f"/fhir/ServiceRequest/{rec_id}").json()["status"] == "active"


def test_unknown_recommendation_and_bad_search_parameters_answer_operation_outcomes(app_and_events):
    _, client, _ = app_and_events
    assert client.get("/fhir/ServiceRequest/nope").status_code == 404
    assert client.post("/fhir/ServiceRequest/nope/$cancel", json=params()).status_code == 404
    assert client.get("/fhir/ServiceRequest", params={"status": "draft"}).status_code == 400
    assert client.get("/fhir/ServiceRequest", params={"_tag": "unknown"}).status_code == 400
