"""HAPI HL7v2 2.6.0 as a real MLLP peer of radcds (deploy/local/hapi-hl7v2/Hl7v2Harness.java).

* HAPI's ``HL7Service`` (SimpleServer) receives our ORU^R01s from our real ``DeliveryWorker`` and
  ``MLLPSender``, validates each on receipt (strict v2.5.1 parse, HAPI's default validation,
  required fields, lengths, MSH-9, table 0396) and answers AA, or AE when it found an error;
* HAPI's client (``Connection``/``Initiator``) sends an ORM^O01 to our real order listener (the
  reporting service's ``OrderStore`` behind ``OrderInbox`` on an ``MLLPServer``), parses our ACK with
  its strict v2.5.1 context and validates it; the ServiceRequest and the Patient with the order's
  demographics are stored, and the report on that order goes back to HAPI with them in PID.

Ports 26200 (HAPI server) and 26201 (our listener). Run under the integration lock:
``flock /tmp/radcds-it.lock .venv/bin/python -m pytest tests/integration/test_hapi_mllp.py``
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import hl7
import pytest
from sqlalchemy import Engine, select

from radcds.adapters.db.engine import make_engine, migrate, sqlite_url
from radcds.adapters.db.outbox import pending_count
from radcds.adapters.fhir.report import patient_id_for
from radcds.domain.codes import LOINC, SNOMED_CT, Coding
from radcds.domain.findings import StudyContext
from radcds_reporting.adapters.hl7v2.ack import AckCode, parse_ack
from radcds_reporting.adapters.hl7v2.config import MLLPDestination
from radcds_reporting.adapters.hl7v2.inbound import OrderInbox
from radcds_reporting.adapters.hl7v2.mllp import MLLPSender, MLLPServer
from radcds_reporting.adapters.hl7v2.oru import MessageHeader, TextLayout, build_oru_r01
from radcds_reporting.adapters.hl7v2.outbound import DeliveryWorker, OutboundQueue, RetryPolicy
from radcds_reporting.adapters.hl7v2.received import SqlReceivedMessageLog
from radcds_reporting.adapters.repository import FhirRepository
from radcds_reporting.db.tables import hl7_outbound_messages
from radcds_reporting.domain.orders import OrderNumber, PatientIdentifier, PersonName, Practitioner
from radcds_reporting.domain.results import ImagingResult, NumericResult, ReportSection, ReportSectionKind, ResultStatus
from radcds_reporting.use_cases.hl7_orders import OrderStore
from radcds_reporting.use_cases.orders import find_order
from radcds_reporting.use_cases.oru import ResultOutbox

from ..conformance.hl7v2_hapi_harness import HapiHl7v2, decode, missing

pytestmark = [
    pytest.mark.integration,
    pytest.mark.validators,
    pytest.mark.skipif(missing() is not None, reason=str(missing())),
]

HAPI_PORT = 26200
LISTENER_PORT = 26201
DEST = f"127.0.0.1:{HAPI_PORT}"
NOW = datetime(2026, 1, 2, 12, 30, tzinfo=UTC)
FAST = RetryPolicy(initial_delay=0.1, max_delay=0.5, max_attempts=3)
HEADER = MessageHeader(sending_facility="HOSP", receiving_application="HAPI", receiving_facility="HOSP")
CPT = "http://www.ama-assn.org/go/cpt"
MEASUREMENT = "https://radcds.example.org/fhir/CodeSystem/image-measurement"
#: Written for this test (HL7 v2.5.1 4.4.1 ORM^O01, IHE RAD-2 with ZDS): a new chest X-ray order with
#: the patient's demographics in PID-3 (assigning authority HOSP), PID-5, PID-7 and PID-8. Invented values.
ORM = "\r".join(
    [
        "MSH|^~\\&|EHR|HOSP|RADCDS|HOSP|20260102090000+0100||ORM^O01^ORM_O01|HAPI-ORM-1|P|2.5.1",
        "PID|1||HAPI-77^^^HOSP^MR||DOE^JANE^Q||19700101|F",
        "ORC|NW|PLC-H1^EPIC|FIL-H1^RIS||SC||||20260102085500+0100|||1234^SMITH^JOHN",
        "OBR|1|PLC-H1^EPIC|FIL-H1^RIS|71046^XR CHEST 2 VIEWS^C4||||||||||||1234^SMITH^JOHN||ACC-H1",
        "ZDS|1.2.826.0.1.3680043.8.498.4242^100^Application^DICOM",
    ]
)


JANE = PersonName("DOE", "JANE")


def _result(status: ResultStatus, key: str, name: PersonName | None = JANE) -> ImagingResult:
    return ImagingResult(
        status=status,
        patient=PatientIdentifier("123456", "HOSP"),
        patient_name=name,
        patient_birth_date="19700101",
        patient_sex="F",
        procedure_code=Coding(CPT, "71046", "XR CHEST 2 VIEWS"),
        observation_time=NOW,
        status_changed_at=NOW,
        placer_order_number=OrderNumber(f"PLC-{key}", "EPIC"),
        filler_order_number=OrderNumber(f"FIL-{key}", "RIS"),
        accession_number=f"ACC-{key}",
        sections=(
            ReportSection(ReportSectionKind.FINDINGS, ("Cardiothoracic ratio: 0.58 {ratio} | ^ & ~", "Lungs clear.")),
            ReportSection(ReportSectionKind.IMPRESSION, ("Cardiomegaly.",)),
            ReportSection(ReportSectionKind.AI_DISCLAIMER, ("AI-generated, preliminary, not for diagnostic use.",)),
        ),
        measurements=(NumericResult(Coding(MEASUREMENT, "cardiothoracic-ratio", "CTR"), 0.58, "{ratio}"),),
        conclusion=Coding(SNOMED_CT, "8186001", "Cardiomegaly"),
        principal_result_interpreter=Practitioner("5678", PersonName("RADIOLOGIST", "RAY")),
        ordering_provider=Practitioner("1234", PersonName("SMITH", "JOHN")),
    )


@pytest.fixture(scope="module")
def hapi_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HapiHl7v2]:
    """HAPI's HL7Service listening on HAPI_PORT for the module."""
    log = tmp_path_factory.mktemp("hapi") / "server.log"
    server = HapiHl7v2("server", str(HAPI_PORT), log=log)
    assert server.read() == {"ready": HAPI_PORT}
    # HAPI's SimpleServer reports started even when its acceptor could not bind the port: check it listens.
    try:
        socket.create_connection(("127.0.0.1", HAPI_PORT), timeout=5).close()
    except OSError as e:
        server.close()
        pytest.fail(f"HAPI's HL7Service said ready but nothing listens on {HAPI_PORT} ({e}); see {log}")
    yield server
    server.close()


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    """A migrated SQLite reporting database (outbound queue, received-message log, FHIR store)."""
    e = make_engine(sqlite_url(tmp_path / "reporting.db"))
    migrate(e, chain="radcds_reporting.db")
    yield e
    e.dispose()


def _received(server: HapiHl7v2, control_ids: list[str]) -> list[dict[str, Any]]:
    """HAPI's reports on the messages with these MSH-10s (in arrival order; a retried one counts once)."""
    found: dict[str, dict[str, Any]] = {}
    while set(found) != set(control_ids):
        item = server.read()
        item["text"] = decode(item.pop("received"))
        control_id = str(hl7.parse(item["text"]).segment("MSH")[10])
        if control_id in control_ids:
            found.setdefault(control_id, item)
    return list(found.values())


async def _deliver(queue: OutboundQueue, until: dict[str, int]) -> None:
    worker = DeliveryWorker(queue, MLLPSender("127.0.0.1", HAPI_PORT, ack_timeout=20), destination=DEST, policy=FAST)
    deadline = time.monotonic() + 120
    try:
        while True:
            counts = await asyncio.to_thread(queue.counts, DEST)
            if all(counts[k] >= v for k, v in until.items()):
                return
            assert time.monotonic() < deadline, f"queue did not reach {until}: {queue.counts(DEST)}"
            if await worker.run_once() is None:
                await asyncio.sleep(0.05)
    finally:
        await worker.stop()


def test_hapi_server_receives_every_oru_layout_and_status_from_our_worker_with_no_error(
    engine: Engine, hapi_server: HapiHl7v2
) -> None:
    queue = OutboundQueue(engine)
    sent = []
    for layout in TextLayout:
        for status in (ResultStatus.PRELIMINARY, ResultStatus.FINAL, ResultStatus.CORRECTED):
            control_id = f"H-{layout.value[:3]}-{status.obr25}"
            payload = build_oru_r01(
                _result(status, layout.value[:6]), header=HEADER, control_id=control_id, created_at=NOW, layout=layout
            )
            queue.enqueue(destination=DEST, order_key=layout.value, payload=payload, result_status=status.obr25)
            sent.append(control_id)

    asyncio.run(_deliver(queue, {"delivered": len(sent)}))
    received = _received(hapi_server, sent)

    assert queue.counts(DEST)["delivered"] == len(sent) and queue.counts(DEST)["parked"] == 0
    assert sorted(str(hl7.parse(r["text"]).segment("MSH")[10]) for r in received) == sorted(sent)
    for r in received:
        assert r["report"]["errors"] == [], r["report"]["errors"]
        assert r["report"]["structure"] == "ORU_R01" and r["report"]["version"] == "2.5.1"


def test_hapi_server_answers_ae_to_an_oru_without_pid5_and_our_worker_parks_it(
    engine: Engine, hapi_server: HapiHl7v2
) -> None:
    # Negative control: the receiving HAPI really validates (and we really act on its answer).
    queue = OutboundQueue(engine)
    good = build_oru_r01(_result(ResultStatus.FINAL, "NEG"), header=HEADER, control_id="H-NEG-1", created_at=NOW)
    broken = good.replace("|DOE^JANE^^^^^L|", "||")
    queue.enqueue(destination=DEST, order_key="neg", payload=broken, result_status="F")

    asyncio.run(_deliver(queue, {"parked": 1}))
    [received] = _received(hapi_server, ["H-NEG-1"])

    assert "PID-5: required field missing" in received["report"]["errors"]
    assert [m.control_id for m in queue.parked(DEST)] == ["H-NEG-1"]


def test_hapi_client_orm_gets_a_valid_ack_stores_order_and_patient_and_the_oru_carries_the_demographics(
    engine: Engine, hapi_server: HapiHl7v2, tmp_path: Path
) -> None:
    store = OrderStore(engine=engine, log=SqlReceivedMessageLog(engine))
    inbox = OrderInbox(store, log=SqlReceivedMessageLog(engine))

    async def order_in() -> dict[str, Any]:
        async with MLLPServer(inbox, host="127.0.0.1", port=LISTENER_PORT):
            client = HapiHl7v2("send", "127.0.0.1", str(LISTENER_PORT), log=tmp_path / "client.log")
            try:
                client.send_line(ORM)
                return await asyncio.to_thread(client.read)
            finally:
                await asyncio.to_thread(client.close)

    answer = asyncio.run(order_in())

    assert "error" not in answer, answer
    assert answer["report"]["errors"] == [] and answer["report"]["msh9"] == "ACK^O01^ACK"
    ack = parse_ack(decode(answer["ack"]))
    assert ack.code is AckCode.AA and ack.acknowledged_control_id == "HAPI-ORM-1"
    with engine.connect() as conn:
        order = find_order(conn, accession_number="ACC-H1", study_instance_uid="")
        patient = FhirRepository(conn).read(
            "Patient", patient_id_for(StudyContext(patient_id="HAPI-77", issuer_of_patient_id="HOSP"))
        )
    assert pending_count(engine) == 1  # the ImagingOrderReceived event waits in the outbox
    assert order is not None and order["status"] == "active"
    assert patient is not None and order["subject"] == {"reference": f"Patient/{patient['id']}"}
    assert patient["name"] == [{"use": "official", "family": "DOE", "given": ["JANE", "Q"]}]
    assert (patient["gender"], patient["birthDate"]) == ("female", "1970-01-01")
    assert patient["identifier"][0]["assigner"] == {"display": "HOSP"}

    # The final report on that order (subject: the Patient the DICOM header gave, no issuer) goes to HAPI.
    dicom_patient = patient_id_for(StudyContext(patient_id="HAPI-77"))
    report = {
        "resourceType": "DiagnosticReport",
        "id": "dr-hapi-1",
        "status": "final",
        "code": {"coding": [{"system": LOINC, "code": "36643-5", "display": "XR Chest 2 Views"}]},
        "subject": {"reference": f"Patient/{dicom_patient}"},
        "basedOn": [{"reference": f"ServiceRequest/{order['id']}"}],
        "effectiveDateTime": "2026-01-02T10:15:00Z",
        "issued": "2026-01-02T12:00:00.000Z",
        "conclusion": "Cardiomegaly.",
    }
    outbox = ResultOutbox(engine=engine, destinations=[MLLPDestination(host="127.0.0.1", port=HAPI_PORT)])
    with engine.begin() as conn:
        stored = FhirRepository(conn).upsert(report, now=NOW)
        [queue_id] = outbox.enqueue_in(conn, report=stored)
    asyncio.run(_deliver(outbox.queue, {"delivered": 1}))
    with engine.connect() as conn:
        [control_id] = conn.execute(select(hl7_outbound_messages.c.control_id)).scalars().all()
    [received] = _received(hapi_server, [control_id])

    assert received["report"]["errors"] == [], received["report"]["errors"]
    pid = hl7.parse(received["text"]).segment("PID")
    assert str(pid[3]) == "HAPI-77^^^HOSP^MR" and str(pid[5]) == "DOE^JANE^Q^^^^L"
    assert (str(pid[7]), str(pid[8])) == ("19700101", "F")
    assert ["OBR-4.3", "C4"] in received["report"]["coded"]
    assert queue_id > 0
