"""fusion's composition root with an EHR configured: the patient found by identifier on a loopback FHIR server
(canned answers), the context reaching the assessment, and an EHR that does not know the patient or is down
naming what was missing. Settings refuse an EHR without auth in production."""

from __future__ import annotations

import json
import logging
import threading
from datetime import date
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import pytest
from pydantic import ValidationError
from sqlalchemy import select

from radcds.adapters.db.engine import make_engine, migrate, sqlite_url
from radcds.adapters.db.tables import event_outbox
from radcds.domain.events import ASSESSMENT_PRODUCED, ORDER_EVALUATED
from radcds_devstack.testing import RecordingPublisher, free_port
from radcds_fusion.adapters.sr_nodules import ReportedNodule
from radcds_fusion.app import build_components
from radcds_fusion.db.tables import fusion_recommendations
from radcds_fusion.domain.context import PatientRef
from radcds_fusion.domain.nodules import Composition, Nodule
from radcds_fusion.settings import FusionSettings

PATIENT = {"resourceType": "Patient", "id": "ehr-7", "gender": "male", "birthDate": "1958-03-04"}
COPD = {
    "resourceType": "Condition",
    "id": "copd",
    "clinicalStatus": {
        "coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": "active"}]
    },
    "code": {"coding": [{"system": "http://snomed.info/sct", "code": "13645005"}]},
    "subject": {"reference": "Patient/ehr-7"},
}


def bundle(*resources):
    return {"resourceType": "Bundle", "type": "searchset", "entry": [{"resource": r} for r in resources]}


class Ehr(BaseHTTPRequestHandler):
    seen: list[tuple[str, dict]] = []

    def do_GET(self):
        url = urlparse(self.path)
        query = parse_qs(url.query)
        Ehr.seen.append((url.path, query))
        if url.path.endswith("/Patient") and query.get("identifier") == ["urn:mrn|MRN-7"]:
            body = bundle(PATIENT)
        elif url.path.endswith("/Patient/ehr-7"):
            body = PATIENT
        elif url.path.endswith("/Condition"):
            body = bundle(COPD)
        else:
            body = bundle()
        data = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/fhir+json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


@pytest.fixture
def ehr():
    server = ThreadingHTTPServer(("127.0.0.1", free_port()), Ehr)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    Ehr.seen = []
    yield f"http://127.0.0.1:{server.server_port}/fhir"
    server.shutdown()


def assess(tmp_path: Path, base_url: str, identifier: str) -> dict:
    settings = FusionSettings(
        environment="test",
        data_dir=tmp_path,
        ehr_fhir_base_url=base_url,
        ehr_auth="none",
        ehr_patient_identifier_system="urn:mrn",
        ehr_budget_s=2.0,
        ehr_read_timeout_s=1.0,
    )
    events = RecordingPublisher()
    parts = build_components(settings, engine=make_engine(sqlite_url(tmp_path / "fusion.db")), publisher=events)
    migrate(parts.engine, chain="radcds_fusion.db")
    nodule = ReportedNodule(
        Nodule(Composition.SOLID, 7.0, 7.0, location="Upper lobe of right lung"),
        ("SCT", "427359005", "Solitary nodule of lung"),
        "1.9",
        "n1",
        None,
        None,
    )
    try:
        parts.service.record_measurement_report(
            event_id="sr-1",
            patient=PatientRef("p-7", identifier, ""),
            study_uid="1.2.7",
            study_date=date(2026, 12, 1),
            sr_instance_uid="1.2.7.9",
            nodules=[nodule],
        )
    finally:
        assert parts.ehr is not None
        parts.ehr.close()
    with parts.engine.connect() as conn:
        rows = conn.execute(
            select(event_outbox.c.payload)
            .where(event_outbox.c.event_type == ASSESSMENT_PRODUCED.type)
            .order_by(event_outbox.c.seq)
        )
        return json.loads(rows.scalars().one())


def test_context_from_the_ehr_reaches_the_assessment(tmp_path, ehr):
    payload = assess(tmp_path, ehr, "MRN-7")
    assert "age 68" in payload["contextUsed"]
    assert "COPD" in payload["contextUsed"]
    # COPD is a Fleischner risk factor: high-risk management without an assumption
    assert payload["sections"]["recommendations"][0] == (
        "fleischner-2017 1.0.0: CT at 6-12 months, then CT at 18-24 months. Due by 2027-12-01."
    )
    assert ("/fhir/Patient", {"identifier": ["urn:mrn|MRN-7"], "_count": ["50"]}) in Ehr.seen


def test_patient_unknown_to_the_ehr_is_named_as_missing(tmp_path, ehr):
    payload = assess(tmp_path, ehr, "MRN-UNKNOWN")
    assert payload["missingContext"][0] == "Patient (not found in the EHR by identifier)"


def test_ehr_down_is_named_as_missing_and_the_assessment_still_made(tmp_path):
    payload = assess(tmp_path, f"http://127.0.0.1:{free_port()}/fhir", "MRN-7")
    assert payload["missingContext"][0].startswith("Patient (")
    assert payload["sections"]["recommendations"]


def test_ehr_down_is_logged_as_a_warning_naming_the_failure_not_the_patient(tmp_path, caplog):
    with caplog.at_level(logging.WARNING, logger="radcds_fusion.adapters.ehr_source"):
        assess(tmp_path, f"http://127.0.0.1:{free_port()}/fhir", "MRN-7")
    messages = [r.getMessage() for r in caplog.records if r.name == "radcds_fusion.adapters.ehr_source"]
    assert messages == ["EHR source Patient (lookup by identifier) not read: EHR unreachable"]
    assert not any("MRN-7" in m for m in caplog.messages)


def test_settings_refuse_an_ehr_without_auth_in_production_or_smart_without_a_key(tmp_path):
    with pytest.raises(ValidationError, match="development and test only"):
        FusionSettings(environment="production", ehr_fhir_base_url="https://ehr.example.org/fhir", ehr_auth="none")
    with pytest.raises(ValidationError, match="needs ehr_client_id"):
        FusionSettings(ehr_fhir_base_url="https://ehr.example.org/fhir")


def _ehr_patient_ids(tmp_path: Path) -> list[str | None]:
    with make_engine(sqlite_url(tmp_path / "fusion.db")).connect() as conn:
        return list(conn.execute(select(fusion_recommendations.c.ehr_patient_id)).scalars())


def test_recommendation_records_the_ehr_patient_id_found_by_mrn_and_none_for_an_unknown_patient(tmp_path, ehr):
    assess(tmp_path / "known", ehr, "MRN-7")
    assert _ehr_patient_ids(tmp_path / "known") == ["ehr-7"]
    assess(tmp_path / "unknown", ehr, "MRN-UNKNOWN")
    assert _ehr_patient_ids(tmp_path / "unknown") == [None]


def test_composition_root_reads_referral_evaluations_and_closes_by_the_configured_mrn_system(tmp_path):
    from .test_cds_orders import evaluated

    settings = FusionSettings(environment="test", data_dir=tmp_path, ehr_patient_identifier_system="urn:mrn")
    parts = build_components(settings, engine=make_engine(sqlite_url(tmp_path / "fusion.db")), publisher=None)
    migrate(parts.engine, chain="radcds_fusion.db")
    assert ORDER_EVALUATED.topic in parts.topics
    nodule = ReportedNodule(Nodule(Composition.SOLID, 7.0, 7.0), ("SCT", "427359005", ""), "1.9", "n1", None, None)
    parts.service.record_measurement_report(
        event_id="sr-1",
        patient=PatientRef("p-7", "MRN-7", ""),
        study_uid="1.2.7",
        study_date=date(2026, 12, 1),
        sr_instance_uid="1.2.7.9",
        nodules=[nodule],
    )
    parts.service.handle(evaluated("1", patient="ehr-7", identifiers=(("urn:mrn", "MRN-7"),)))
    with parts.engine.connect() as conn:
        assert list(conn.execute(select(fusion_recommendations.c.state)).scalars()) == ["closed"]
