"""Sign-off (PUT / JSON Patch of DiagnosticReport.status) and the critical-result workflow over /fhir."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from radcds.adapters.db.outbox import OutboxRelay
from radcds.adapters.kafka.codec import validate_payload
from radcds.domain.events import (
    CRITICAL_RESULT_ACKNOWLEDGED,
    CRITICAL_RESULT_ESCALATED,
    REPORT_STORED,
    CriticalResultAcknowledged,
    DiagnosticReportStored,
)
from radcds_devstack.testing import RecordingPublisher
from radcds_reporting.app import build_components, create_app
from radcds_reporting.domain.service_request import OrderDetails
from radcds_reporting.handlers import ReportingService
from radcds_reporting.settings import ReportingSettings
from radcds_reporting.use_cases.orders import store_order

from .conftest import STUDY, findings_event

PATCH = {"Content-Type": "application/json-patch+json"}


@pytest.fixture
def publisher():
    return RecordingPublisher()


@pytest.fixture
def make_client(engine, tmp_path, clock, publisher):
    def build(*, critical: bool = False, ordered: bool = True) -> TestClient:
        if ordered:
            store_order(
                engine=engine,
                order=OrderDetails(
                    patient_id="PID-1",
                    placer_order_number="P-1",
                    accession_number="ACC-1",
                    requester="Practitioner/dr-order",
                    performers=("CareTeam/ed-team",),
                ),
            )
        service = ReportingService(
            engine=engine,
            relay=OutboxRelay(engine, publisher, name="reporting-outbox"),
            consumer_group="g",
            clock=clock,
        )
        service.handle(findings_event("e1", STUDY + ".1.1", critical=critical))
        settings = ReportingSettings(
            data_dir=tmp_path,
            fhir_base_url="http://testserver/fhir",
            critical_ack_timeout_s=1800,
            critical_escalation_recipient="Practitioner/on-call-radiologist",
            mllp_enabled=False,
        )
        parts = build_components(settings, engine=engine, publisher=publisher, clock=clock, consume=False)
        client = TestClient(create_app(settings, components=parts))
        client.components = parts  # the typed container: the tests reach its use cases and relay
        return client

    return build


def _report(client) -> dict:
    return client.get("/fhir/DiagnosticReport").json()["entry"][0]["resource"]


def test_final_without_a_practitioner_returns_422_and_keeps_the_report_preliminary(make_client):
    with make_client() as client:
        dr = _report(client)
        r = client.patch(
            f"/fhir/DiagnosticReport/{dr['id']}", json=[{"op": "replace", "path": "/status", "value": "final"}],
            headers=PATCH,
        )  # fmt: skip
        assert r.status_code == 422 and r.json()["resourceType"] == "OperationOutcome"
        assert _report(client)["status"] == "preliminary"


def test_patch_to_final_with_interpreter_signs_records_provenance_and_publishes_status(make_client, publisher):
    with make_client() as client:
        dr = _report(client)
        r = client.patch(
            f"/fhir/DiagnosticReport/{dr['id']}",
            json=[
                {"op": "test", "path": "/status", "value": "preliminary"},
                {"op": "replace", "path": "/status", "value": "final"},
                {"op": "add", "path": "/resultsInterpreter", "value": [{"reference": "Practitioner/rad-1"}]},
            ],
            headers=PATCH,
        )
        assert r.status_code == 200, r.text
        signed = r.json()
        assert signed["status"] == "final" and signed["meta"]["versionId"] == "2"
        assert r.headers["etag"] == 'W/"2"'
        prov = client.get("/fhir/Provenance", params={"agent": "Practitioner/rad-1"}).json()
        assert prov["total"] == 1
        assert prov["entry"][0]["resource"]["target"][0]["reference"].endswith("/_history/2")
    kind, payload, _, _ = publisher.events[-1]
    event = DiagnosticReportStored.from_payload(payload)
    assert kind is REPORT_STORED
    assert (event.status, event.previous_status, event.version_id) == ("final", "preliminary", "2")
    assert event.results_interpreter == "Practitioner/rad-1" and event.accession_number == "ACC-1"
    assert event.service_request_ids


def test_later_change_to_a_final_report_becomes_amended_and_history_keeps_all(make_client):
    with make_client() as client:
        dr = _report(client)
        dr["status"] = "final"
        dr["resultsInterpreter"] = [{"reference": "Practitioner/rad-1"}]
        assert client.put(f"/fhir/DiagnosticReport/{dr['id']}", json=dr).status_code == 200
        signed = _report(client)
        signed["conclusion"] = "Radiologist: no acute intracranial abnormality."
        r = client.put(f"/fhir/DiagnosticReport/{dr['id']}", json=signed, headers={"If-Match": 'W/"2"'})
        assert r.status_code == 200 and r.json()["status"] == "amended"
        corrected = r.json() | {"status": "corrected", "conclusion": "Corrected wording."}
        assert client.put(f"/fhir/DiagnosticReport/{dr['id']}", json=corrected).json()["status"] == "corrected"
        history = client.get(f"/fhir/DiagnosticReport/{dr['id']}/_history").json()
        assert [e["resource"]["status"] for e in history["entry"]] == ["corrected", "amended", "final", "preliminary"]


@pytest.mark.parametrize(
    ("first", "then", "status"),
    [
        ("final", "preliminary", 409),
        ("entered-in-error", "final", 409),
        (None, "amended", 409),
        (None, "signed", 422),
    ],
)
def test_illegal_transition_returns_conflict_or_unprocessable(make_client, first, then, status):
    with make_client() as client:
        dr = _report(client)
        url = f"/fhir/DiagnosticReport/{dr['id']}"
        if first is not None:
            ops = [{"op": "replace", "path": "/status", "value": first}]
            headers = {**PATCH, "X-Radcds-Dev-User": "Practitioner/rad-1"}
            assert client.patch(url, json=ops, headers=headers).status_code == 200
        ops = [{"op": "replace", "path": "/status", "value": then}]
        r = client.patch(url, json=ops, headers={**PATCH, "X-Radcds-Dev-User": "Practitioner/rad-1"})
        assert r.status_code == status and r.json()["resourceType"] == "OperationOutcome"


def test_stale_if_match_returns_412(make_client):
    with make_client() as client:
        dr = _report(client)
        dr["status"] = "final"
        dr["resultsInterpreter"] = [{"reference": "Practitioner/rad-1"}]
        r = client.put(f"/fhir/DiagnosticReport/{dr['id']}", json=dr, headers={"If-Match": 'W/"7"'})
        assert r.status_code == 412


def test_patch_of_a_path_outside_the_allowed_ones_returns_422(make_client):
    with make_client() as client:
        dr = _report(client)
        ops = [{"op": "replace", "path": "/subject/reference", "value": "Patient/other"}]
        assert client.patch(f"/fhir/DiagnosticReport/{dr['id']}", json=ops, headers=PATCH).status_code == 422


def test_critical_finding_creates_stat_communication_to_the_ordering_team_and_event_says_so(make_client, publisher):
    with make_client(critical=True) as client:
        dr = _report(client)
        bundle = client.get("/fhir/Communication", params={"status": "in-progress"}).json()
        assert bundle["total"] == 1
        comm = bundle["entry"][0]["resource"]
    assert comm["priority"] == "stat"
    assert {"reference": f"DiagnosticReport/{dr['id']}"} in comm["about"]
    assert {r["reference"] for r in comm["recipient"]} == {"Practitioner/dr-order", "CareTeam/ed-team"}
    ((kind, payload, _, _),) = publisher.events
    assert kind is REPORT_STORED and payload["critical"] is True
    assert payload["communicationIds"] == [comm["id"]]


def test_critical_finding_without_an_order_goes_to_the_default_recipient(make_client):
    with make_client(critical=True, ordered=False) as client:
        comm = client.get("/fhir/Communication").json()["entry"][0]["resource"]
    assert "display" in comm["recipient"][0] and "reference" not in comm["recipient"][0]


def test_acknowledge_records_who_and_when_and_stops_escalation(make_client, clock, publisher):
    with make_client(critical=True) as client:
        comm = client.get("/fhir/Communication").json()["entry"][0]["resource"]
        clock.advance(minutes=5)
        who = {"name": "who", "valueReference": {"reference": "Practitioner/dr-order"}}
        body = {"resourceType": "Parameters", "parameter": [who]}
        r = client.post(f"/fhir/Communication/{comm['id']}/$acknowledge", json=body)
        assert r.status_code == 200, r.text
        acked = r.json()
        assert acked["status"] == "completed" and acked["received"].startswith("2026-01-02T12:05:00")
        assert acked["note"][-1]["authorReference"] == {"reference": "Practitioner/dr-order"}
        clock.advance(hours=2)
        assert client.components.critical.escalate_overdue() == []
    assert all(kind is not CRITICAL_RESULT_ESCALATED for kind, _, _, _ in publisher.events)


def test_acknowledge_without_who_returns_422(make_client):
    with make_client(critical=True) as client:
        comm = client.get("/fhir/Communication").json()["entry"][0]["resource"]
        assert client.post(f"/fhir/Communication/{comm['id']}/$acknowledge").status_code == 422


def test_patch_communication_status_completed_acknowledges_as_the_token_user(make_client):
    with make_client(critical=True) as client:
        comm = client.get("/fhir/Communication").json()["entry"][0]["resource"]
        r = client.patch(
            f"/fhir/Communication/{comm['id']}",
            json=[{"op": "replace", "path": "/status", "value": "completed"}],
            headers={**PATCH, "X-Radcds-Dev-User": "PractitionerRole/ed-attending"},
        )
        assert r.status_code == 200 and r.json()["note"][-1]["authorReference"]["reference"].startswith("Practitioner")


def test_unacknowledged_critical_result_is_escalated_once_after_the_configured_time(make_client, clock, publisher):
    with make_client(critical=True) as client:
        critical = client.components.critical
        clock.advance(minutes=29)
        assert critical.escalate_overdue() == []
        clock.advance(minutes=2)
        (done,) = critical.escalate_overdue()
        assert critical.escalate_overdue() == []
        escalation = client.get(f"/fhir/Communication/{done.escalation_communication_id}").json()
        original = client.get(f"/fhir/Communication/{done.communication_id}").json()
    assert escalation["recipient"] == [{"reference": "Practitioner/on-call-radiologist"}]
    assert escalation["partOf"] == [{"reference": f"Communication/{done.communication_id}"}]
    assert "escalated" in original["note"][-1]["text"]
    escalated = [p for kind, p, _, _ in publisher.events if kind is CRITICAL_RESULT_ESCALATED]
    assert len(escalated) == 1 and escalated[0]["escalatedAt"] == "2026-01-02T12:31:00.000Z"


def test_critical_result_sent_before_the_clock_stepped_back_hours_is_escalated_at_once_not_hours_late(
    make_client, clock
):
    with make_client(critical=True) as client:
        critical = client.components.critical
        clock.advance(minutes=1)
        clock.advance(hours=-2)  # NTP steps the clock back: the alert was "sent" 2 hours from now
        (done,) = critical.escalate_overdue()
        assert critical.escalate_overdue() == []
    assert done.escalation_communication_id


def test_critical_result_after_a_step_back_shorter_than_the_timeout_waits_its_time(make_client, clock):
    with make_client(critical=True) as client:
        critical = client.components.critical
        clock.advance(minutes=-10)  # a step back within the 30 minute timeout
        assert critical.escalate_overdue() == []
        clock.advance(minutes=41)
        assert len(critical.escalate_overdue()) == 1


def test_sign_off_while_the_broker_is_down_succeeds_and_its_event_goes_out_once_kafka_is_back(make_client, publisher):
    with make_client() as client:
        dr = _report(client)
        before = len(publisher.events)
        real_publish = publisher.publish

        def broker_down(*args, **kwargs):
            raise ConnectionError("broker down")

        publisher.publish = broker_down
        r = client.patch(
            f"/fhir/DiagnosticReport/{dr['id']}",
            json=[
                {"op": "replace", "path": "/status", "value": "final"},
                {"op": "add", "path": "/resultsInterpreter", "value": [{"reference": "Practitioner/rad-1"}]},
            ],
            headers=PATCH,
        )
        assert r.status_code == 200, r.text  # the radiologist's signature is not refused
        assert len(publisher.events) == before
        publisher.publish = real_publish
        client.components.relay.drain()
    kind, payload, _, _ = publisher.events[-1]
    assert kind is REPORT_STORED and payload["status"] == "final"


def test_signed_report_is_rendered_again_as_final_with_the_signer_and_without_the_preliminary_banner(make_client):
    import base64

    with make_client() as client:
        dr = _report(client)
        r = client.patch(
            f"/fhir/DiagnosticReport/{dr['id']}",
            json=[
                {"op": "replace", "path": "/status", "value": "final"},
                {"op": "add", "path": "/resultsInterpreter", "value": [{"reference": "Practitioner/rad-1"}]},
            ],
            headers=PATCH,
        )
        assert r.status_code == 200, r.text
        forms = {f["contentType"]: f for f in r.json()["presentedForm"]}
    html = base64.b64decode(forms["text/html"]["data"]).decode()
    assert "Imaging report (final)" in html and "Signed by Practitioner/rad-1" in html
    assert "AI-generated PRELIMINARY" not in html
    assert "not for diagnostic use on their own" in html  # the measurements stay the algorithms'
    assert forms["application/pdf"]["title"] == "Imaging report (final)"
    assert base64.b64decode(forms["application/pdf"]["data"]).startswith(b"%PDF")


def _acknowledged(publisher) -> list[dict]:
    return [p for kind, p, _, _ in publisher.events if kind is CRITICAL_RESULT_ACKNOWLEDGED]


def test_acknowledge_enqueues_one_acknowledged_event_keyed_by_study_with_who_and_when(make_client, clock, publisher):
    with make_client(critical=True) as client:
        dr = _report(client)
        comm = client.get("/fhir/Communication").json()["entry"][0]["resource"]
        clock.advance(minutes=5)
        who = {"name": "who", "valueReference": {"reference": "Practitioner/dr-order"}}
        body = {"resourceType": "Parameters", "parameter": [who]}
        assert client.post(f"/fhir/Communication/{comm['id']}/$acknowledge", json=body).status_code == 200
        assert client.post(f"/fhir/Communication/{comm['id']}/$acknowledge", json=body).status_code == 200
    (payload,) = _acknowledged(publisher)
    validate_payload(CRITICAL_RESULT_ACKNOWLEDGED, payload)
    assert payload == {
        "communicationId": comm["id"],
        "diagnosticReportId": dr["id"],
        "studyInstanceUid": STUDY,
        "acknowledgedBy": "Practitioner/dr-order",
        "acknowledgedAt": "2026-01-02T12:05:00.000Z",
    }
    assert CriticalResultAcknowledged.from_payload(payload).acknowledged_by == "Practitioner/dr-order"
    ((_, _, _, key),) = [e for e in publisher.events if e[0] is CRITICAL_RESULT_ACKNOWLEDGED]
    assert key == STUDY


def test_acknowledging_the_escalation_after_the_original_publishes_no_second_event(make_client, clock, publisher):
    with make_client(critical=True) as client:
        critical = client.components.critical
        clock.advance(minutes=31)
        (done,) = critical.escalate_overdue()
        critical.acknowledge(communication_id=done.escalation_communication_id, who="Practitioner/on-call-radiologist")
        critical.acknowledge(communication_id=done.communication_id, who="Practitioner/dr-order")
        assert client.get(f"/fhir/Communication/{done.communication_id}").json()["status"] == "completed"
    (payload,) = _acknowledged(publisher)
    assert payload["communicationId"] == done.communication_id  # the critical result, not its escalation
    assert payload["acknowledgedBy"] == "Practitioner/on-call-radiologist"


def test_acknowledgement_is_in_the_outbox_even_while_the_broker_is_down(make_client, publisher):
    with make_client(critical=True) as client:
        comm = client.get("/fhir/Communication").json()["entry"][0]["resource"]
        publisher.fail = True
        r = client.patch(
            f"/fhir/Communication/{comm['id']}",
            json=[{"op": "replace", "path": "/status", "value": "completed"}],
            headers={**PATCH, "X-Radcds-Dev-User": "Practitioner/dr-order"},
        )
        assert r.status_code == 200
        assert _acknowledged(publisher) == []
        publisher.fail = False
        client.components.relay.drain()
    (payload,) = _acknowledged(publisher)
    assert payload["acknowledgedBy"] == "Practitioner/dr-order"
