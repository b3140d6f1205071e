"""HL7 v2 wiring of the reporting service (issue #6 part 3).

Orders in: ORM^O01/OMI^O23 (parsed by our HL7 layer) -> OrderDetails -> ServiceRequest plus an
``ImagingOrderReceived`` event in the transactional outbox, exactly once per MSH-10. ORU out: each
stored DiagnosticReport version -> ImagingResult -> one ORU^R01 per destination in the persisted
queue, in the report's transaction, with a deterministic MSH-10.

Fixtures: the ORM/OMI texts below were written for these tests from the skeletons in
``shared/notes/standards.md`` (HL7 v2.5.1 4.4.1 ORM^O01 with IHE ZDS, 4.4.10 OMI^O23 with IPC).
The only fake is RecordingPublisher (our EventPublisher port).
"""

from __future__ import annotations

import asyncio
import socket
from datetime import UTC, datetime
from pathlib import Path

import hl7
import pytest
from fastapi.testclient import TestClient
from prometheus_client import CollectorRegistry, generate_latest
from sqlalchemy import Engine, select

from radcds.adapters.db.outbox import OutboxRelay, pending_count
from radcds.adapters.kafka.codec import validate_payload
from radcds.domain.events import ORDER_RECEIVED
from radcds_devstack.testing import RecordingPublisher
from radcds_reporting.adapters.hl7v2.ack import AckCode, ErrorCode, HL7MessageError, parse_ack
from radcds_reporting.adapters.hl7v2.config import DestinationOptions, MLLPDestination
from radcds_reporting.adapters.hl7v2.mllp import START_BLOCK, TRAILER, MLLPServer
from radcds_reporting.adapters.hl7v2.orders import parse_order_message
from radcds_reporting.adapters.hl7v2.oru import TextLayout
from radcds_reporting.adapters.hl7v2.outbound import QueueState
from radcds_reporting.adapters.hl7v2.received import SqlReceivedMessageLog
from radcds_reporting.adapters.repository import FhirRepository
from radcds_reporting.app import build_components, create_app
from radcds_reporting.db.tables import hl7_outbound_messages
from radcds_reporting.domain.orders import OrderControl
from radcds_reporting.domain.results import ResultStatus
from radcds_reporting.handlers import ReportingService
from radcds_reporting.settings import ReportingSettings
from radcds_reporting.use_cases.hl7_orders import OrderStore, order_details
from radcds_reporting.use_cases.orders import find_order
from radcds_reporting.use_cases.oru import OutboundQueueCollector, ResultOutbox, control_id_for, result_from_report
from radcds_reporting.use_cases.signoff import ReportSignOff

from .conftest import CTX, STUDY, findings_event

#: A new order (ORC-1 NW) with ZDS Study Instance UID, ORC-12 ordering provider and OBR-31 reason;
#: the accession ACC-1 and study are those of conftest's findings events.
ORM_NEW = "\r".join(
    [
        "MSH|^~\\&|RIS|HOSP|RADCDS|HOSP|20260102090000||ORM^O01|UT-ORM-1|P|2.3.1",
        "PID|1||PID-1^^^HOSP^MR||DOE^JANE||19700101|F",
        "ORC|NW|PLC-1^EPIC|FIL-1^RIS||SC||||20260102090000|||1234^SMITH^JOHN^Q",
        "OBR|1|PLC-1^EPIC|FIL-1^RIS|70450^CT HEAD WO CONTRAST^CPT4||||||||||||||ACC-1|RP1|SPS1||||CT"
        "|||||||head injury^head injury",
        f"ZDS|{STUDY}^100^Application^DICOM",
    ]
)
#: A cancel (ORC-1 CA) of an order nobody placed.
ORM_CANCEL_UNKNOWN = "\r".join(
    [
        "MSH|^~\\&|RIS|HOSP|RADCDS|HOSP|20260102091000||ORM^O01|UT-ORM-CA-X|P|2.3.1",
        "PID|1||PID-1^^^HOSP^MR||DOE^JANE",
        "ORC|CA|PLC-NOBODY^EPIC",
    ]
)
#: The cancel of ORM_NEW.
ORM_CANCEL = "\r".join(
    [
        "MSH|^~\\&|RIS|HOSP|RADCDS|HOSP|20260102092000||ORM^O01|UT-ORM-CA-1|P|2.3.1",
        "PID|1||PID-1^^^HOSP^MR||DOE^JANE",
        "ORC|CA|PLC-1^EPIC|FIL-1^RIS",
    ]
)
#: An OMI^O23 (IHE RAD-4) with IPC: accession, requested procedure, study, step, modality, AE title.
OMI_NEW = "\r".join(
    [
        "MSH|^~\\&|RIS|HOSP|RADCDS|HOSP|20260102093000+0100||OMI^O23^OMI_O23|UT-OMI-1|P|2.5.1",
        "PID|1||PID-2^^^HOSP^MR||ROE^RICHARD",
        "ORC|NW|PLC-2^EPIC|||SC||||20260102093000+0100",
        "OBR|1|PLC-2^EPIC||71046^XR CHEST 2 VIEWS^CPT4",
        "IPC|ACC-2^RIS|RP2^RIS|1.2.826.0.1.3680043.8.498.77^DICOM|SPS2^RIS|CR||||CRROOM1",
    ]
)
DEST = MLLPDestination(host="127.0.0.1", port=6661)
PATCH_FINAL = [
    {"op": "replace", "path": "/status", "value": "final"},
    {"op": "add", "path": "/resultsInterpreter", "value": [{"reference": "Practitioner/rad-1"}]},
]


def _store(engine: Engine, publisher: RecordingPublisher | None = None) -> OrderStore:
    relay = OutboxRelay(engine, publisher) if publisher is not None else None
    return OrderStore(engine=engine, log=SqlReceivedMessageLog(engine), relay=relay)


def _queued(engine: Engine) -> list[hl7.Message]:
    outbox = ResultOutbox(engine=engine, destinations=[DEST])
    with engine.connect() as conn:
        rows = (
            conn.execute(
                select(hl7_outbound_messages.c.payload)
                .where(hl7_outbound_messages.c.destination == DEST.key)
                .order_by(hl7_outbound_messages.c.id)
            )
            .scalars()
            .all()
        )
    assert outbox.counts()[DEST.key]["queued"] == len(rows)
    return [hl7.parse(p) for p in rows]


# ---------------------------------------------------------------- orders in


def test_new_orm_maps_every_shared_field_to_order_details():
    details = order_details(parse_order_message(ORM_NEW).order)

    assert (details.placer_order_number, details.placer_assigning_authority) == ("PLC-1", "EPIC")
    assert (details.filler_order_number, details.filler_assigning_authority) == ("FIL-1", "RIS")
    assert details.accession_number == "ACC-1"
    assert details.study_instance_uid == STUDY
    assert (details.patient_id, details.issuer_of_patient_id) == ("PID-1", "HOSP")
    assert details.control is OrderControl.NEW
    assert details.code is not None and details.code.code == "70450"
    assert details.code_text == "CT HEAD WO CONTRAST"
    assert details.requester == "Practitioner/1234"
    assert details.requester_display == "SMITH, JOHN Q"
    assert details.reason_text == "head injury"
    assert details.authored_on == "2026-01-02T09:00:00.000Z"


def test_omi_with_ipc_maps_accession_and_study_and_keeps_the_offset_of_orc9():
    details = order_details(parse_order_message(OMI_NEW).order)

    assert details.accession_number == "ACC-2"
    assert details.study_instance_uid == "1.2.826.0.1.3680043.8.498.77"
    assert details.filler_order_number == ""
    assert details.authored_on == "2026-01-02T08:30:00.000Z"


def test_accepted_order_is_stored_as_service_request_with_one_order_event_without_demographics(engine):
    publisher = RecordingPublisher()
    stored = _store(engine, publisher).store(parse_order_message(ORM_NEW))

    assert stored is not None and stored["status"] == "active"
    with engine.connect() as conn:
        found = find_order(conn, accession_number="ACC-1", study_instance_uid="")
    assert found is not None and found["id"] == stored["id"]
    assert found["requester"] == {"reference": "Practitioner/1234", "display": "SMITH, JOHN Q"}
    (kind, payload, _, _), *rest = publisher.events
    assert kind is ORDER_RECEIVED and not rest
    validate_payload(ORDER_RECEIVED, payload)
    assert payload == {
        "serviceRequestId": stored["id"],
        "status": "active",
        "orderControl": "NW",
        "placerOrderNumber": "PLC-1",
        "placerAssigningAuthority": "EPIC",
        "fillerOrderNumber": "FIL-1",
        "fillerAssigningAuthority": "RIS",
        "accessionNumber": "ACC-1",
        "studyInstanceUid": STUDY,
        # radcds's pseudonymous Patient id (for fusion to close follow-up recommendations), never the MRN
        "patientId": stored["subject"]["reference"].removeprefix("Patient/"),
        "procedureCode": {"system": "http://www.ama-assn.org/go/cpt", "code": "70450"},
        "priority": "routine",  # the message names none (no TQ1-9, ORC-7.6 or OBR-27.6)
    }
    assert "DOE" not in str(payload) and "PID-1" not in str(payload)


def test_same_msh10_twice_is_stored_once_and_announced_once(engine):
    publisher = RecordingPublisher()
    store = _store(engine, publisher)
    first = store.store(parse_order_message(ORM_NEW))
    second = store.store(parse_order_message(ORM_NEW))

    assert first is not None and second is None
    with engine.connect() as conn:
        assert len(FhirRepository(conn).history("ServiceRequest", first["id"])) == 1
    assert len(publisher.events) == 1


def test_cancel_of_unknown_order_raises_ae_204_at_orc2_and_stores_nothing(engine):
    publisher = RecordingPublisher()
    store = _store(engine, publisher)

    with pytest.raises(HL7MessageError) as raised:
        store.store(parse_order_message(ORM_CANCEL_UNKNOWN))

    assert raised.value.code is ErrorCode.UNKNOWN_KEY_IDENTIFIER
    assert raised.value.ack_code is AckCode.AE
    assert raised.value.location is not None and raised.value.location.label.startswith("ORC-2")
    assert pending_count(engine) == 0 and publisher.events == []
    assert not SqlReceivedMessageLog(engine).was_accepted(sender="RIS|HOSP", control_id="UT-ORM-CA-X")


def test_cancel_of_known_order_revokes_the_service_request_and_announces_ca(engine):
    publisher = RecordingPublisher()
    store = _store(engine, publisher)
    created = store.store(parse_order_message(ORM_NEW))
    cancelled = store.store(parse_order_message(ORM_CANCEL))

    assert created is not None and cancelled is not None
    assert cancelled["id"] == created["id"] and cancelled["status"] == "revoked"
    assert [p["orderControl"] for _, p, _, _ in publisher.events] == ["NW", "CA"]
    assert publisher.events[1][1]["status"] == "revoked"


def _mllp_exchange(port: int, message: str) -> str:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(START_BLOCK + message.encode() + TRAILER)
        data = b""
        while not data.endswith(TRAILER):
            chunk = s.recv(65536)
            assert chunk, "connection closed before the ACK"
            data += chunk
    return data[1:-2].decode()


def test_app_lifespan_listens_for_orders_over_mllp_and_answers_aa_then_ae_for_unknown_cancel(engine, tmp_path):
    publisher = RecordingPublisher()
    settings = ReportingSettings(data_dir=tmp_path, mllp_host="127.0.0.1", mllp_port=0)
    parts = build_components(settings, engine=engine, publisher=publisher, consume=False)
    with TestClient(create_app(settings, components=parts)) as client:
        server = parts.mllp
        assert isinstance(server, MLLPServer)
        first = parse_ack(_mllp_exchange(server.port, ORM_NEW))
        again = parse_ack(_mllp_exchange(server.port, ORM_NEW))
        refused = parse_ack(_mllp_exchange(server.port, ORM_CANCEL_UNKNOWN))
        ready = client.get("/readyz").json()["checks"]
        found = client.get("/fhir/ServiceRequest", params={"identifier": "ACC-1"}).json()

    assert (first.code, again.code, refused.code) == (AckCode.AA, AckCode.AA, AckCode.AE)
    assert first.acknowledged_control_id == "UT-ORM-1"
    assert refused.error_location.startswith("ORC")
    assert ready["mllp"] == "ok"
    assert found["total"] == 1
    assert [k for k, _, _, _ in publisher.events] == [ORDER_RECEIVED]


# ---------------------------------------------------------------- ORU out


def _report(**overrides: object) -> dict:
    report = {
        "resourceType": "DiagnosticReport",
        "id": "dr-1",
        "meta": {"versionId": "3", "lastUpdated": "2026-01-02T12:00:00.000Z"},
        "status": "preliminary",
        "code": {"coding": [{"system": "http://loinc.org", "code": "24725-4", "display": "CT Head"}]},
        "subject": {"reference": "Patient/p1"},
        "effectiveDateTime": "2026-01-02T10:15:00Z",
        "issued": "2026-01-02T12:00:00.000Z",
        "identifier": [{"type": {"coding": [{"code": "ACSN"}]}, "value": "ACC-9"}],
        "result": [{"reference": "Observation/o1"}],
        "conclusion": "Preliminary AI-generated result, not for diagnostic use.",
    }
    return report | overrides


OBSERVATIONS = [
    {
        "resourceType": "Observation",
        "id": "o1",
        "status": "preliminary",
        "code": {"coding": [{"system": "urn:radcds:measure", "code": "mean", "display": "Mean"}], "text": "Mean"},
        "valueQuantity": {"value": 40.0, "unit": "[hnsf'U]", "system": "http://unitsofmeasure.org", "code": "[hnsf'U]"},
        "method": {"text": "pixel_statistics v1 (not for diagnostic use)"},
    },
    {
        "resourceType": "Observation",
        "id": "o2",
        "status": "preliminary",
        "code": {"text": "Analysis by head_ct"},
        "dataAbsentReason": {"coding": [{"code": "not-performed"}]},
        "note": [{"text": "slice thickness outside the validated envelope"}],
        "method": {"text": "head_ct v2 (not for diagnostic use)"},
    },
]
ORDER = {
    "resourceType": "ServiceRequest",
    "id": "sr-1",
    "identifier": [
        {"type": {"coding": [{"code": "PLAC"}]}, "system": "urn:radcds:assigning-authority:EPIC", "value": "PLC-9"},
        {"type": {"coding": [{"code": "FILL"}]}, "system": "urn:radcds:assigning-authority:RIS", "value": "FIL-9"},
    ],
    "code": {"coding": [{"system": "http://www.ama-assn.org/go/cpt", "code": "70450", "display": "CT HEAD"}]},
    "requester": {"reference": "Practitioner/1234", "display": "SMITH, JOHN"},
}
NOW = datetime(2026, 1, 2, 12, 30, tzinfo=UTC)


def test_report_with_order_maps_placer_filler_accession_text_and_measurements():
    result = result_from_report(_report(), observations=OBSERVATIONS, service_request=ORDER, patient=None, now=NOW)

    assert result is not None and result.status is ResultStatus.PRELIMINARY
    assert result.placer_order_number is not None and result.placer_order_number.number == "PLC-9"
    assert result.placer_order_number.namespace == "EPIC"
    assert result.filler_order_number is not None and result.filler_order_number.number == "FIL-9"
    assert result.accession_number == "ACC-9"
    assert result.procedure_code.code == "70450"
    assert result.ordering_provider is not None and result.ordering_provider.name.family == "SMITH"
    assert [(m.code.code, m.value, m.unit) for m in result.measurements] == [("mean", 40.0, "[hnsf'U]")]
    text = {s.kind.value: s.lines for s in result.sections}
    assert "Mean: 40 [hnsf'U]" in text["findings"]
    assert "Not analysed by head_ct v2: slice thickness outside the validated envelope" in text["findings"]
    assert text["impression"] == ("Preliminary AI-generated result, not for diagnostic use.",)
    assert text["ai-disclaimer"][0] == "AI-generated, preliminary, not for diagnostic use."
    assert "head_ct v2" in text["ai-disclaimer"][1] and "pixel_statistics v1" in text["ai-disclaimer"][1]
    assert result.observation_time == datetime(2026, 1, 2, 10, 15, tzinfo=UTC)


def test_report_without_order_uses_accession_else_report_id_as_filler_number():
    with_accession = result_from_report(
        _report(), observations=OBSERVATIONS, service_request=None, patient=None, now=NOW
    )
    without = result_from_report(
        _report(identifier=[]), observations=OBSERVATIONS, service_request=None, patient=None, now=NOW
    )

    assert with_accession is not None and with_accession.placer_order_number is None
    assert with_accession.filler_order_number is not None
    assert (with_accession.filler_order_number.number, with_accession.filler_order_number.namespace) == ("ACC-9", "")
    assert without is not None and without.filler_order_number is not None
    assert (without.filler_order_number.number, without.filler_order_number.namespace) == ("dr-1", "RADCDS")


@pytest.mark.parametrize(
    ("status", "obr25"),
    [("preliminary", "P"), ("final", "F"), ("amended", "C"), ("corrected", "C"), ("cancelled", "X")],
)
def test_report_status_gives_obr25(status: str, obr25: str):
    result = result_from_report(
        _report(status=status), observations=OBSERVATIONS, service_request=ORDER, patient=None, now=NOW
    )
    assert result is not None and result.status.obr25 == obr25


def test_entered_in_error_report_is_not_sent():
    report = _report(status="entered-in-error")
    assert result_from_report(report, observations=OBSERVATIONS, service_request=ORDER, patient=None, now=NOW) is None


def test_control_id_is_deterministic_per_report_version_and_destination_and_fits_msh10():
    a = control_id_for("dr-1", "3", "engine:6661")

    assert a == control_id_for("dr-1", "3", "engine:6661")
    assert len(a) == 20
    assert len({a, control_id_for("dr-1", "4", "engine:6661"), control_id_for("dr-1", "3", "other:6661")}) == 3


def test_preliminary_report_queues_one_oru_per_destination_and_a_redelivered_event_queues_none(engine, clock):
    other = MLLPDestination(
        host="127.0.0.1", port=6662, options=DestinationOptions(text_layout=TextLayout.FORMATTED_TEXT)
    )
    _store(engine).store(parse_order_message(ORM_NEW))
    results = ResultOutbox(engine=engine, destinations=[DEST, other], clock=clock)
    service = ReportingService(
        engine=engine,
        relay=OutboxRelay(engine, RecordingPublisher(), name="reporting-outbox"),
        consumer_group="g",
        clock=clock,
        results=results,
    )
    service.handle(findings_event("e1", STUDY + ".1.1"))
    # The same Kafka event again, and a new event id that rebuilds the same report version.
    service.handle(findings_event("e1", STUDY + ".1.1"))
    service.handle(findings_event("e1-again", STUDY + ".1.1"))

    counts = results.counts()
    assert counts[DEST.key]["queued"] == 1 and counts[other.key]["queued"] == 1
    oru = _queued(engine)[0]
    assert str(oru.segment("OBR")[25]) == "P"
    assert str(oru.segment("OBR")[18]) == CTX.accession_number
    assert str(oru.segment("OBR")[2]) == "PLC-1^EPIC" and str(oru.segment("OBR")[3]) == "FIL-1^RIS"
    assert str(oru.segment("MSH")[10]) == control_id_for(str(service_report_id(engine)), "1", DEST.key)


def service_report_id(engine: Engine) -> str:
    with engine.connect() as conn:
        _, reports = FhirRepository(conn).search("DiagnosticReport", count=1)
    return str(reports[0]["id"])


def test_sign_off_queues_final_then_amend_queues_corrected_with_the_same_filler_number(engine, clock):
    _store(engine).store(parse_order_message(ORM_NEW))
    results = ResultOutbox(engine=engine, destinations=[DEST], clock=clock)
    service = ReportingService(
        engine=engine,
        relay=OutboxRelay(engine, RecordingPublisher(), name="reporting-outbox"),
        consumer_group="g",
        clock=clock,
        results=results,
    )
    service.handle(findings_event("e1", STUDY + ".1.1"))
    signoff = ReportSignOff(
        engine=engine,
        relay=OutboxRelay(engine, RecordingPublisher(), name="reporting-outbox"),
        clock=clock,
        results=results,
    )
    report_id = service_report_id(engine)

    signoff.update(report_id=report_id, patch=PATCH_FINAL)
    signoff.update(
        report_id=report_id, patch=[{"op": "replace", "path": "/conclusion", "value": "Corrected impression."}]
    )

    messages = _queued(engine)
    assert [str(m.segment("OBR")[25]) for m in messages] == ["P", "F", "C"]
    assert {str(m.segment("OBR")[3]) for m in messages} == {"FIL-1^RIS"}
    assert str(messages[1].segment("OBR")[32]).startswith("rad-1")
    assert "Corrected impression." in str(messages[2])
    with engine.connect() as conn:
        keys = set(conn.execute(select(hl7_outbound_messages.c.order_key)).scalars())
    assert keys == {"EPIC|PLC-1"}  # one order: the queue keeps P before F before C


def test_queue_gauge_reports_messages_per_destination_and_state(engine, clock):
    results = ResultOutbox(engine=engine, destinations=[DEST], clock=clock)
    registry = CollectorRegistry()
    registry.register(OutboundQueueCollector(results))

    text = generate_latest(registry).decode()

    assert f'radcds_hl7_outbound_messages{{destination="{DEST.key}",state="parked"}} 0.0' in text
    assert f'radcds_hl7_outbound_messages{{destination="{DEST.key}",state="queued"}} 0.0' in text


def test_worker_started_by_the_outbox_delivers_a_queued_oru_to_an_mllp_receiver(engine, clock):
    received: list[str] = []

    class Receiver:
        """Our MLLPApplication port: records and answers AA (python-hl7 builds the ACK)."""

        async def handle(self, data: bytes) -> list[bytes]:
            received.append(data.decode())
            return [str(hl7.parse(data.decode()).create_ack()).encode()]

        async def handle_broken(self, broken):  # type: ignore[no-untyped-def]
            return []

    async def scenario() -> dict[str, int]:
        async with MLLPServer(Receiver(), port=0) as server:
            dest = MLLPDestination(host="127.0.0.1", port=server.port)
            results = ResultOutbox(engine=engine, destinations=[dest], clock=clock)
            service = ReportingService(
                engine=engine,
                relay=OutboxRelay(engine, RecordingPublisher(), name="reporting-outbox"),
                consumer_group="g",
                clock=clock,
                results=results,
            )
            results.start()
            await asyncio.to_thread(service.handle, findings_event("e1", STUDY + ".1.1"))
            for _ in range(400):
                if received and results.counts()[dest.key]["delivered"] == 1:
                    break
                await asyncio.sleep(0.05)
            await results.stop()
            return results.counts()[dest.key]

    counts = asyncio.run(scenario())
    assert counts[QueueState.DELIVERED.value] == 1
    assert str(hl7.parse(received[0]).segment("OBR")[25]) == "P"


def test_settings_refuse_mllp_with_several_http_workers_and_a_missing_options_file(tmp_path: Path):
    with pytest.raises(ValueError, match="http_workers"):
        ReportingSettings(data_dir=tmp_path, http_workers=2)
    with pytest.raises(ValueError, match="mllp_options_file"):
        ReportingSettings(data_dir=tmp_path, mllp_options_file=tmp_path / "missing.toml")
    with pytest.raises(ValueError, match="mllp_destinations"):
        ReportingSettings(data_dir=tmp_path, mllp_destinations="no-port")
    assert ReportingSettings(data_dir=tmp_path, http_workers=2, mllp_enabled=False).http_workers == 2
