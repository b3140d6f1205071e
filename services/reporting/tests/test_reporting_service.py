"""Findings to FHIR: idempotent handler, DiagnosticReport content, and the /fhir API."""

from __future__ import annotations

import base64

import pytest
from fastapi.testclient import TestClient

from radcds.adapters.db.engine import make_engine, migrate, sqlite_url
from radcds.adapters.db.outbox import OutboxRelay
from radcds.adapters.kafka.codec import decode, encode
from radcds.domain import codes
from radcds.domain.events import FINDINGS_PRODUCED, REPORT_STORED, ImagingFindingsProduced
from radcds.domain.findings import ImageAnalysis, InstanceReference, Measurement, ModelIdentity, StudyContext
from radcds_devstack.testing import RecordingPublisher
from radcds_reporting.adapters.repository import FhirRepository
from radcds_reporting.app import build_components, create_app
from radcds_reporting.handlers import ReportingService
from radcds_reporting.settings import ReportingSettings

STUDY = "1.2.826.0.1.3680043.2.1125.1"
CTX = StudyContext(patient_id="PID-1", accession_number="ACC-1", modality="CT", study_date="20260102")


def _event(event_id: str, sop: str, *, reason: str = "", value: float = 40.0):
    analysis = ImageAnalysis(
        InstanceReference(STUDY, STUDY + ".1", sop, "1.2.840.10008.5.1.4.1.1.2"),
        CTX,
        ModelIdentity("pixel_statistics", "1"),
        measurements=() if reason else (Measurement(codes.MEAN_PIXEL_VALUE, value, codes.UNIT_HOUNSFIELD),),
        not_analysed_reason=reason,
    )
    msg = encode(
        FINDINGS_PRODUCED,
        ImagingFindingsProduced(analysis).to_payload(),
        event_id=event_id,
        source="/radcds/inference",
        subject=STUDY,
    )
    return decode(list(msg.headers.items()), None, msg.value)


@pytest.fixture
def engine(tmp_path):
    e = make_engine(sqlite_url(tmp_path / "reporting.db"))
    migrate(e, chain="radcds_reporting.db")
    return e


def test_findings_event_stores_preliminary_report_and_publishes_report_stored(engine):
    publisher = RecordingPublisher()
    ReportingService(
        engine=engine, relay=OutboxRelay(engine, publisher, name="reporting-outbox"), consumer_group="g"
    ).handle(_event("e1", STUDY + ".1.1"))
    ((kind, payload, _, _),) = publisher.events
    assert kind is REPORT_STORED
    with engine.connect() as conn:
        dr = FhirRepository(conn).read("DiagnosticReport", payload["diagnosticReportId"])
    assert dr["status"] == "preliminary"
    assert dr["category"][0]["coding"][0]["code"] == "LP29684-5"
    assert dr["effectiveDateTime"] == "2026-01-02"
    assert len(dr["result"]) == 1
    html = base64.b64decode(dr["presentedForm"][0]["data"]).decode()
    assert "NOT FOR DIAGNOSTIC USE" in html and "pixel_statistics v1" in html


def test_same_event_twice_is_processed_once(engine):
    publisher = RecordingPublisher()
    service = ReportingService(
        engine=engine, relay=OutboxRelay(engine, publisher, name="reporting-outbox"), consumer_group="g"
    )
    service.handle(_event("e1", STUDY + ".1.1"))
    service.handle(_event("e1", STUDY + ".1.1"))
    assert len(publisher.events) == 1
    with engine.connect() as conn:
        total, _ = FhirRepository(conn).search("DiagnosticReport", count=10)
    assert total == 1


def test_two_instances_of_one_study_share_one_report_with_both_results(engine):
    service = ReportingService(
        engine=engine, relay=OutboxRelay(engine, RecordingPublisher(), name="reporting-outbox"), consumer_group="g"
    )
    service.handle(_event("e1", STUDY + ".1.1"))
    service.handle(_event("e2", STUDY + ".1.2", reason="not analysed: colour image"))
    with engine.connect() as conn:
        total, (dr,) = FhirRepository(conn).search("DiagnosticReport", count=10)
    assert total == 1
    assert len(dr["result"]) == 2
    assert "not analysed: colour image" in dr["conclusion"]
    assert dr["meta"]["versionId"] == "2"


@pytest.fixture
def client(tmp_path, engine):
    ReportingService(
        engine=engine, relay=OutboxRelay(engine, RecordingPublisher(), name="reporting-outbox"), consumer_group="g"
    ).handle(_event("e1", STUDY + ".1.1"))
    settings = ReportingSettings(data_dir=tmp_path, fhir_base_url="http://testserver/fhir", mllp_enabled=False)
    app = create_app(settings, components=build_components(settings, engine=engine, consume=False))
    with TestClient(app) as c:
        yield c


def test_read_unknown_resource_returns_404_operation_outcome(client):
    r = client.get("/fhir/DiagnosticReport/nope")
    assert r.status_code == 404
    assert r.json()["resourceType"] == "OperationOutcome"
    assert r.json()["issue"][0]["code"] == "not-found"


def test_unsupported_resource_type_returns_operation_outcome(client):
    assert client.get("/fhir/Medication/1").json()["resourceType"] == "OperationOutcome"


def test_search_by_patient_returns_searchset_bundle(client):
    bundle = client.get("/fhir/DiagnosticReport", params={"_count": 1}).json()
    assert bundle["type"] == "searchset" and bundle["total"] == 1
    subject = bundle["entry"][0]["resource"]["subject"]["reference"]
    by_patient = client.get("/fhir/Observation", params={"patient": subject.split("/")[1]}).json()
    assert by_patient["total"] == 1


def test_search_with_unknown_parameter_returns_400_operation_outcome(client):
    r = client.get("/fhir/Observation", params={"foo": "bar"})
    assert r.status_code == 400 and r.json()["issue"][0]["code"] == "not-supported"


def test_metadata_is_an_r4_capability_statement(client):
    cs = client.get("/fhir/metadata").json()
    assert cs["resourceType"] == "CapabilityStatement" and cs["fhirVersion"] == "4.0.1"
