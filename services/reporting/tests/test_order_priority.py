"""Order priority (FHIR R4 ServiceRequest.priority, value set request-priority) from HL7 v2 orders and FHIR updates.

HL7 v2.5.1 names it in TQ1-9 (4.5.4.9), else in the TQ.6 component of ORC-7 or OBR-27, with codes from table
0027; reporting stores it on the ServiceRequest and announces it in ``ImagingOrderReceived.priority``. A FHIR
``PUT ServiceRequest/{id}`` may change the priority only, and announces the change the same way.

Fixtures: the ORM/OMI texts are those of test_hl7_wiring.py (written for these tests from HL7 v2.5.1 4.4.1 and
4.4.10) with ORC-7 / OBR-27 / TQ1 added. The only fake is RecordingPublisher (our EventPublisher port).
"""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from radcds.adapters.db.outbox import OutboxRelay
from radcds.adapters.kafka.codec import validate_payload
from radcds.domain.events import ORDER_RECEIVED, ImagingOrderReceived
from radcds_devstack.testing import RecordingPublisher
from radcds_reporting.adapters.hl7v2.orders import parse_order_message
from radcds_reporting.adapters.hl7v2.received import SqlReceivedMessageLog
from radcds_reporting.app import build_components, create_app
from radcds_reporting.domain.orders import order_priority
from radcds_reporting.settings import ReportingSettings
from radcds_reporting.use_cases.hl7_orders import OrderStore, order_details

from .conftest import STUDY

PID = "PID|1||PID-1^^^HOSP^MR||DOE^JANE||19700101|F"
OBR = "OBR|1|PLC-1^EPIC|FIL-1^RIS|70450^CT HEAD WO CONTRAST^CPT4||||||||||||||ACC-1|RP1|SPS1||||CT"


def _orm(control_id: str, orc7: str = "", obr27: str = "", control: str = "NW") -> str:
    obr = OBR + ("|" * 3 + obr27 if obr27 else "")
    return "\r".join(
        [
            f"MSH|^~\\&|RIS|HOSP|RADCDS|HOSP|20260102090000||ORM^O01|{control_id}|P|2.3.1",
            PID,
            f"ORC|{control}|PLC-1^EPIC|FIL-1^RIS||SC||{orc7}||20260102090000|||1234^SMITH^JOHN^Q",
            obr,
            f"ZDS|{STUDY}^100^Application^DICOM",
        ]
    )


def _omi(tq1_9: str, orc7: str) -> str:
    return "\r".join(
        [
            "MSH|^~\\&|RIS|HOSP|RADCDS|HOSP|20260102093000+0100||OMI^O23^OMI_O23|UT-OMI-P|P|2.5.1",
            "PID|1||PID-2^^^HOSP^MR||ROE^RICHARD",
            f"ORC|NW|PLC-2^EPIC|||SC||{orc7}||20260102093000+0100",
            f"TQ1|1||||||20260102100000+0100||{tq1_9}",
            "OBR|1|PLC-2^EPIC||71046^XR CHEST 2 VIEWS^CPT4",
            "IPC|ACC-2^RIS|RP2^RIS|1.2.826.0.1.3680043.8.498.77^DICOM|SPS2^RIS|CR||||CRROOM1",
        ]
    )


@pytest.mark.parametrize(
    ("code", "priority"),
    [("S", "stat"), ("A", "asap"), ("R", "routine"), ("P", "routine"), ("C", "routine"), ("T", "routine")],
)
def test_table_0027_priority_maps_to_fhir_request_priority(code, priority):
    assert order_priority(code) == priority
    assert order_priority(code.lower()) == priority


def test_table_0027_empty_is_no_priority_and_unknown_codes_are_routine():
    assert order_priority("") == "" and order_priority("  ") == ""
    assert order_priority("PRN") == "routine" and order_priority("ZZ") == "routine"


def test_orm_priority_is_read_from_orc7_component_6():
    order = parse_order_message(_orm("P-1", orc7="^^^20260102100000^^S")).order
    assert order.priority == "stat" and order_details(order).priority == "stat"


def test_orm_priority_falls_back_to_obr27_component_6():
    assert parse_order_message(_orm("P-2", obr27="^^^^^A")).order.priority == "asap"


def test_omi_tq1_9_priority_wins_over_orc7():
    order = parse_order_message(_omi("S^Stat^HL70485", "^^^^^R")).order
    assert order.priority == "stat"


def test_order_without_priority_has_none_and_its_service_request_is_routine():
    order = parse_order_message(_orm("P-3")).order
    assert order.priority == "" and order_details(order).priority == "routine"


def _store(engine, publisher: RecordingPublisher) -> OrderStore:
    return OrderStore(engine=engine, log=SqlReceivedMessageLog(engine), relay=OutboxRelay(engine, publisher))


def _order_events(publisher: RecordingPublisher) -> list[dict]:
    return [payload for kind, payload, _, _ in publisher.events if kind is ORDER_RECEIVED]


def test_stat_order_is_stored_stat_and_announced_stat(engine):
    publisher = RecordingPublisher()
    stored = _store(engine, publisher).store(parse_order_message(_orm("P-4", orc7="^^^^^S")))
    assert stored is not None and stored["priority"] == "stat"
    (payload,) = _order_events(publisher)
    validate_payload(ORDER_RECEIVED, payload)
    assert payload["priority"] == "stat"
    assert ImagingOrderReceived.from_payload(payload).priority == "stat"


def test_cancel_without_priority_keeps_the_stored_priority(engine):
    publisher = RecordingPublisher()
    store = _store(engine, publisher)
    store.store(parse_order_message(_orm("P-5", orc7="^^^^^S")))
    cancelled = store.store(parse_order_message(_orm("P-6", control="CA")))
    assert cancelled is not None and cancelled["status"] == "revoked" and cancelled["priority"] == "stat"
    assert [p["priority"] for p in _order_events(publisher)] == ["stat", "stat"]


# --- FHIR update ------------------------------------------------------------------------------


@pytest.fixture
def publisher() -> RecordingPublisher:
    return RecordingPublisher()


@pytest.fixture
def client(engine, tmp_path, clock, publisher):
    settings = ReportingSettings(data_dir=tmp_path, fhir_base_url="http://testserver/fhir", mllp_enabled=False)
    parts = build_components(settings, engine=engine, publisher=publisher, clock=clock, consume=False)
    with TestClient(create_app(settings, components=parts)) as c:
        yield c


@pytest.fixture
def ordered(engine, publisher) -> tuple[dict, dict]:
    """The stored ServiceRequest of a routine HL7 order, and the order event payload that announced it."""
    stored = _store(engine, publisher).store(parse_order_message(_orm("P-7")))
    assert stored is not None and stored["priority"] == "routine"
    (announced,) = _order_events(publisher)
    publisher.events.clear()
    return stored, announced


@pytest.fixture
def order(ordered) -> dict:
    return ordered[0]


def test_put_service_request_with_new_priority_stores_a_version_and_announces_it(client, ordered, publisher):
    order, announced = ordered
    body = {**order, "priority": "urgent"}
    response = client.put(f"/fhir/ServiceRequest/{order['id']}", json=body, headers={"If-Match": 'W/"1"'})
    assert response.status_code == 200, response.text
    stored = response.json()
    assert stored["priority"] == "urgent" and stored["meta"]["versionId"] == "2"
    assert client.get(f"/fhir/ServiceRequest/{order['id']}").json()["priority"] == "urgent"
    (payload,) = _order_events(publisher)
    validate_payload(ORDER_RECEIVED, payload)
    # The same order keys as the HL7 order's event, read back from the ServiceRequest; a change (XO), now urgent.
    assert announced["orderControl"] == "NW" and announced["placerOrderNumber"] == "PLC-1"
    assert payload == {**announced, "orderControl": "XO", "priority": "urgent"}


def test_put_service_request_with_the_same_priority_writes_and_announces_nothing(client, order, publisher):
    response = client.put(f"/fhir/ServiceRequest/{order['id']}", json=order)
    assert response.status_code == 200 and response.json()["meta"]["versionId"] == "1"
    assert _order_events(publisher) == []


def test_put_service_request_changing_more_than_priority_is_refused_with_422(client, order, publisher):
    body = {**order, "priority": "stat", "status": "revoked"}
    response = client.put(f"/fhir/ServiceRequest/{order['id']}", json=body)
    assert response.status_code == 422
    assert "only priority" in response.json()["issue"][0]["diagnostics"]
    assert "status" in response.json()["issue"][0]["diagnostics"]
    assert _order_events(publisher) == []


def test_put_service_request_with_a_priority_outside_request_priority_is_refused_with_422(client, order):
    response = client.put(f"/fhir/ServiceRequest/{order['id']}", json={**order, "priority": "S"})
    assert response.status_code == 422 and "request-priority" in response.json()["issue"][0]["diagnostics"]


def test_put_service_request_with_a_stale_if_match_is_refused_with_412(client, order):
    body = {**order, "priority": "stat"}
    response = client.put(f"/fhir/ServiceRequest/{order['id']}", json=body, headers={"If-Match": 'W/"7"'})
    assert response.status_code == 412


def test_put_unknown_service_request_is_404_never_a_create(client):
    body = {"resourceType": "ServiceRequest", "id": "nobody", "priority": "stat"}
    assert client.put("/fhir/ServiceRequest/nobody", json=body).status_code == 404


def test_capability_statement_lists_update_for_service_request(client):
    resources = {r["type"]: r for r in client.get("/fhir/metadata").json()["rest"][0]["resource"]}
    assert {"code": "update"} in resources["ServiceRequest"]["interaction"]
