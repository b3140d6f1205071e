"""The full HL7 v2 path on the real stack (issue #6): order in, study, report, preliminary and final ORU.

1. python-hl7's ``mllp_send`` CLI sends an ORM^O01 (written for this test from the skeleton in
   shared/notes/standards.md: ORC-1 NW, OBR-18 accession, ZDS-1 Study Instance UID), twice with the
   same MSH-10, to the reporting service's MLLP port: two AAs, one ServiceRequest, one order event.
2. STOW-RS of pydicom-data's real chest CR (RG1_UNCI.dcm) rewritten with that accession number and
   the order's Study Instance UID (fresh Series/SOP UIDs).
3. A DiagnosticReport for the study appears with ``basedOn`` the ServiceRequest. Nothing here
   depends on which model ran or which measurements it made.
4. A python-hl7 asyncio MLLP server (``start_hl7_server``, ``encoding="utf-8"``) acts as the
   integration engine on the port the test stack's ``RADCDS_REPORTING_MLLP_DESTINATIONS`` names:
   it receives the preliminary ORU^R01 (OBR-25 P, OBR-18 accession, OBR-2 placer).
5. Sign-off by JSON Patch (status final + resultsInterpreter) gives the final ORU (OBR-25 F) under
   the same filler number, after the preliminary one.

Ports: the test stack's (conftest.TEST_PORTS, ORU_PEER_PORT). Run under ``flock /tmp/radcds-it.lock``.
"""

from __future__ import annotations

import io
import random

import httpx
import pydicom
import pytest
from pydicom.uid import generate_uid

from radcds.domain.events import ORDER_RECEIVED
from radcds_devstack.demo import chest_radiograph, stow
from radcds_reporting.adapters.hl7v2.ack import AckCode

from .conftest import ORU_PEER_PORT
from .helpers import eventually, fhir, read_topic
from .peers import IntegrationEngine, mllp_send, orm_o01

pytestmark = [pytest.mark.integration, pytest.mark.kafka, pytest.mark.triton]  # the report needs inference


def _sign(stack, report_id: str, practitioner: str) -> dict:  # type: ignore[no-untyped-def]
    """Sign a report off (JSON Patch: status final + resultsInterpreter); returns the stored report."""
    signed = httpx.patch(
        f"http://{stack.host}:{stack.ports.reporting}/fhir/DiagnosticReport/{report_id}",
        json=[
            {"op": "replace", "path": "/status", "value": "final"},
            {"op": "add", "path": "/resultsInterpreter", "value": [{"reference": practitioner}]},
        ],
        headers={"Content-Type": "application/json-patch+json"},
        timeout=30,
    )
    assert signed.status_code == 200, signed.text
    return signed.json()  # type: ignore[no-any-return]


def _report_for(stack, accession: str) -> dict | None:  # type: ignore[no-untyped-def]
    bundle = fhir(stack, "DiagnosticReport", identifier=accession)
    entries = bundle.get("entry", [])
    return entries[0]["resource"] if entries else None


def test_orm_in_study_report_preliminary_oru_then_sign_off_final_oru(stack, engine_peer, tmp_path):
    n = random.randrange(10**7, 10**8)
    accession, placer, filler, control_id = f"FP{n}", f"FPPLC{n}", f"FPFIL{n}", f"FP-ORM-{n}"
    study_uid = generate_uid()
    source = pydicom.dcmread(chest_radiograph())
    orm = orm_o01(control_id, placer, filler, accession, study_uid, str(source.PatientID))
    orders = tmp_path / "orders.hl7"
    orders.write_text(orm + orm, encoding="ascii")  # the same MSH-10 twice

    # 1. the order in, twice: acknowledged twice, stored once
    acks = mllp_send(stack, orders)
    assert [(a.code, a.acknowledged_control_id) for a in acks] == [(AckCode.AA, control_id)] * 2
    bundle = fhir(stack, "ServiceRequest", identifier=accession)
    assert bundle["total"] == 1
    service_request = bundle["entry"][0]["resource"]
    history = fhir(stack, f"ServiceRequest/{service_request['id']}/_history")
    assert history["total"] == 1

    def order_events() -> list:  # type: ignore[type-arg]
        return [
            r
            for r in read_topic(stack, ORDER_RECEIVED.topic, idle_ms=1500)
            if dict(r.headers).get("ce_subject") == service_request["id"].encode()
        ]

    (event,) = eventually(order_events, timeout_s=60, what="the order event")
    assert dict(event.headers)["ce_type"] == ORDER_RECEIVED.type.encode()
    assert b"DOE" not in event.value

    # 2. the study, carrying the order's accession number and Study Instance UID
    source.AccessionNumber = accession
    source.StudyInstanceUID = study_uid
    source.SeriesInstanceUID = generate_uid()
    source.SOPInstanceUID = generate_uid()
    source.file_meta.MediaStorageSOPInstanceUID = source.SOPInstanceUID
    buffer = io.BytesIO()
    source.save_as(buffer, enforce_file_format=True)
    stow(stack, [buffer.getvalue()])

    # 3. a DiagnosticReport for the study, based on the order
    report = eventually(lambda: _report_for(stack, accession), timeout_s=240, what="the DiagnosticReport")
    assert report["basedOn"] == [{"reference": f"ServiceRequest/{service_request['id']}"}]

    # 4. the preliminary ORU at the integration engine
    preliminary = eventually(
        lambda: [m for m in engine_peer.orus_for(accession) if str(m.segment("OBR")[25]) == "P"],
        timeout_s=120,
        what="the preliminary ORU",
    )[0]
    obr = preliminary.segment("OBR")
    assert str(obr[2]) == f"{placer}^EPIC"
    assert str(obr[3]) == f"{filler}^RIS"
    assert str(preliminary.segment("MSH")[9]) == "ORU^R01^ORU_R01"
    assert "AI-generated, preliminary, not for diagnostic use." in str(preliminary)

    # 5. sign-off -> the final ORU, same filler number, after the preliminary one
    assert _sign(stack, report["id"], "Practitioner/rad-1")["status"] == "final"
    final = eventually(
        lambda: [m for m in engine_peer.orus_for(accession) if str(m.segment("OBR")[25]) == "F"],
        timeout_s=120,
        what="the final ORU",
    )[0]
    assert str(final.segment("OBR")[3]) == f"{filler}^RIS"
    assert str(final.segment("OBR")[2]) == f"{placer}^EPIC"
    assert str(final.segment("OBR")[32]).startswith("rad-1")
    statuses = [str(m.segment("OBR")[25]) for m in engine_peer.orus_for(accession)]
    assert statuses.index("P") < statuses.index("F")
    assert statuses[-1] == "F"


def _findings(study_uid: str, accession: str):  # type: ignore[no-untyped-def]
    """A findings event as inference publishes it (written for this test; model name is a label only)."""
    import uuid

    from radcds.adapters.kafka.codec import encode
    from radcds.domain import codes
    from radcds.domain.events import FINDINGS_PRODUCED, ImagingFindingsProduced
    from radcds.domain.findings import ImageAnalysis, InstanceReference, Measurement, ModelIdentity, StudyContext

    analysis = ImageAnalysis(
        InstanceReference(study_uid, study_uid + ".1", study_uid + ".1.1", "1.2.840.10008.5.1.4.1.1.1"),
        StudyContext(patient_id="ITEST-ORU", accession_number=accession, modality="CR", study_date="20260101"),
        ModelIdentity("chest_ctr", "1"),
        measurements=(Measurement(codes.CARDIOTHORACIC_RATIO, 0.47, "{ratio}"),),
    )
    return encode(
        FINDINGS_PRODUCED,
        ImagingFindingsProduced(analysis).to_payload(),
        event_id=str(uuid.uuid4()),
        source="/itest",
        subject=study_uid,
    )


def test_reporting_killed_with_orus_queued_delivers_every_one_after_restart_in_order(stack, engine_peer):
    """The engine is down while the preliminary ORUs of 4 reports (one per report version: fusion's assessment
    may add one) and 2 final ORUs queue up; reporting is SIGKILLed and restarted; once the engine is back every
    ORU arrives exactly once, each order's Ps before its F."""
    import signal

    from radcds.domain.events import FINDINGS_PRODUCED
    from radcds_devstack import processes

    from .helpers import producer

    engine_peer.stop()
    n = random.randrange(10**7, 10**8)
    accessions = [f"RS{n}{i}" for i in range(4)]
    p = producer(stack)
    for accession in accessions:
        message = _findings(f"2.25.{random.randrange(10**30, 10**31)}", accession)
        key = message.key.encode() if isinstance(message.key, str) else message.key
        p.send(FINDINGS_PRODUCED.topic, key=key, value=message.value, headers=list(message.headers.items())).get(30)
    p.close()
    reports = {a: eventually(lambda a=a: _report_for(stack, a), timeout_s=120, what=f"report {a}") for a in accessions}
    for accession in accessions[:2]:
        _sign(stack, reports[accession]["id"], "Practitioner/rad-2")

    processes.stop("reporting", stack.run_dir, sig=signal.SIGKILL)
    stack.start_service("reporting")
    stack.wait_service("reporting")
    peer = IntegrationEngine(ORU_PEER_PORT)
    peer.start()
    try:
        signed = set(accessions[:2])

        def delivered() -> dict[str, list[str]] | None:
            got = {a: [str(m.segment("OBR")[25]) for m in peer.orus_for(a)] for a in accessions}
            return got if all(("F" in got[a]) if a in signed else got[a] for a in accessions) else None

        got = eventually(delivered, timeout_s=120, what="every queued ORU after the restart")
        for accession, statuses in got.items():
            # One P per preliminary version (a second when fusion's assessment rewrote the report before
            # sign-off), then the F of a signed report, last.
            final = ["F"] if accession in signed else []
            assert statuses == ["P"] * (len(statuses) - len(final)) + final and "P" in statuses, (accession, statuses)
            controls = [str(m.segment("MSH")[10]) for m in peer.orus_for(accession)]
            assert len(controls) == len(set(controls)), "an ORU arrived twice"
    finally:
        peer.stop()
