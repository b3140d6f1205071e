"""FusionFollowUps over real HTTP (a loopback server standing in for fusion's FHIR API, with canned answers):
active recommendations by the patient's identifiers, and degradation when fusion fails or is absent."""

from __future__ import annotations

import asyncio
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

import httpx
import pytest

from radcds_devstack.testing import free_port
from radcds_referral.adapters.followups import FusionFollowUps

RECOMMENDATION = {
    "resourceType": "ServiceRequest",
    "id": "rec-1",
    "status": "active",
    "intent": "proposal",
    "subject": {"reference": "Patient/p1", "identifier": {"value": "MRN-1"}},
    "code": {"coding": [{"system": "http://www.ama-assn.org/go/cpt", "code": "71250"}]},
    "occurrencePeriod": {"start": "2021-01-01", "end": "2021-06-01"},
}


class Fusion(BaseHTTPRequestHandler):
    status = 200
    seen: list[dict] = []

    def do_GET(self):
        query = parse_qs(urlparse(self.path).query)
        Fusion.seen.append(query)
        entries = [{"resource": RECOMMENDATION}] if query.get("patient.identifier") == ["urn:oid:1.2.3|MRN-1"] else []
        body = json.dumps({"resourceType": "Bundle", "type": "searchset", "entry": entries}).encode()
        self.send_response(Fusion.status)
        self.send_header("Content-Type", "application/fhir+json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):  # quiet
        pass


@pytest.fixture
def fusion():
    server = ThreadingHTTPServer(("127.0.0.1", free_port()), Fusion)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    Fusion.status, Fusion.seen = 200, []
    yield f"http://127.0.0.1:{server.server_port}/fhir"
    server.shutdown()


def read(base: str, patient) -> list[dict]:
    async def go():
        async with httpx.AsyncClient() as http:
            return await FusionFollowUps(http, base_url=base, timeout_s=2.0).open_for(patient)

    return asyncio.run(go())


PATIENT = {
    "resourceType": "Patient",
    "id": "ehr-1",
    "identifier": [{"system": "urn:oid:1.2.3", "value": "MRN-1"}, {"value": "SSN-9"}],
}


def test_active_recommendations_are_found_by_each_patient_identifier_with_its_system(fusion):
    assert read(fusion, PATIENT) == [RECOMMENDATION]
    assert [q["patient.identifier"] for q in Fusion.seen] == [["urn:oid:1.2.3|MRN-1"], ["SSN-9"]]
    assert all(q["status"] == ["active"] for q in Fusion.seen)


def test_patient_without_identifiers_asks_nothing(fusion):
    assert read(fusion, {"resourceType": "Patient", "id": "x"}) == []
    assert read(fusion, None) == []
    assert Fusion.seen == []


def test_failing_fusion_adds_nothing(fusion):
    Fusion.status = 500
    assert read(fusion, PATIENT) == []


def test_absent_fusion_adds_nothing():
    assert read(f"http://127.0.0.1:{free_port()}/fhir", PATIENT) == []
