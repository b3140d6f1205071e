"""HL7 v2 over MLLP against independent peers (issue #6).

* python-hl7's ``mllp_send`` CLI sends ORM^O01/OMI^O23 (``hl7/orders_for_mllp_send.hl7``, written
  for this test: a new ORM with ZDS and a trailing Z segment, an OMI with IPC, a repeat of the
  first MSH-10, a bad ORC-1 and an unsupported version) to OUR server;
* OUR sender delivers ORUs to python-hl7's asyncio server (``encoding="utf-8"``);
* OUR delivery worker drains the persisted queue into the npm ``simple-hl7`` 3.3.0 server
  (``deploy/local/hl7peer/server.js``), told to answer AA, AE, AR or nothing.

Ports are free loopback ports picked when each test starts (a fixed port in the ephemeral range collided with
outgoing connections of other processes).
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import hl7
import pytest
from hl7.mllp import start_hl7_server
from sqlalchemy import Engine

from radcds.adapters.db.engine import make_engine, migrate, sqlite_url
from radcds.domain.codes import Coding
from radcds_devstack.testing import InMemoryReceivedMessageLog, free_port
from radcds_reporting.adapters.hl7v2.ack import AckCode, parse_ack
from radcds_reporting.adapters.hl7v2.inbound import OrderInbox
from radcds_reporting.adapters.hl7v2.mllp import Delivery, MLLPSender, MLLPServer
from radcds_reporting.adapters.hl7v2.orders import ParsedOrderMessage
from radcds_reporting.adapters.hl7v2.oru import MessageHeader, TextLayout, build_oru_r01
from radcds_reporting.adapters.hl7v2.outbound import DeliveryWorker, OutboundQueue, QueueState, RetryPolicy
from radcds_reporting.domain.orders import OrderNumber, PatientIdentifier, PersonName
from radcds_reporting.domain.results import ImagingResult, ReportSection, ReportSectionKind, ResultStatus

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
PEER_DIR = ROOT / "deploy" / "local" / "hl7peer"
PEER_CACHE = ROOT / ".cache" / "hl7peer"
VENV_BIN = Path(sys.executable).parent


def _wait_for_port(port: int, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listens on {port}")


# ---------------------------------------------------------------- python-hl7 mllp_send -> our server


class _Sink:
    """Collects accepted orders (the reporting service stores ServiceRequests here)."""

    def __init__(self) -> None:
        self.orders: list[ParsedOrderMessage] = []

    async def accept(self, message: ParsedOrderMessage) -> None:
        self.orders.append(message)


def test_mllp_send_cli_orders_get_the_right_acks_from_our_server() -> None:
    port = free_port()

    async def scenario() -> tuple[str, _Sink]:
        sink = _Sink()
        async with MLLPServer(OrderInbox(sink, log=InMemoryReceivedMessageLog()), port=port):
            proc = await asyncio.create_subprocess_exec(
                str(VENV_BIN / "mllp_send"),
                "--loose",
                "-p",
                str(port),
                "-f",
                str(HERE / "hl7" / "orders_for_mllp_send.hl7"),
                "127.0.0.1",
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
            )
            out, err = await asyncio.wait_for(proc.communicate(), timeout=60)
            assert proc.returncode == 0, err.decode()
        return out.decode(), sink

    output, sink = asyncio.run(scenario())
    acks = [parse_ack("MSH|" + chunk) for chunk in output.split("MSH|")[1:]]
    assert [(a.code, a.acknowledged_control_id) for a in acks] == [
        (AckCode.AA, "IT-ORM-1"),
        (AckCode.AA, "IT-OMI-1"),
        (AckCode.AA, "IT-ORM-1"),  # the repeat: acknowledged again ...
        (AckCode.AE, "IT-ORM-BAD"),
        (AckCode.AR, "IT-ORM-V29"),
    ]
    assert acks[3].error_location.startswith("ORC")
    assert len(sink.orders) == 2  # ... but processed once
    orm, omi = sink.orders
    assert orm.order.study_instance_uid == "1.2.826.0.1.3680043.8.498.100"
    assert orm.z_segments[-1] == "ZXY|trailing site segment"
    assert omi.order.scheduled_station_ae_title == "CTSCANNER01"


# ---------------------------------------------------------------- our sender -> python-hl7 asyncio server


def _result(order: str, status: ResultStatus, text: str = "Heart size normal.") -> ImagingResult:
    moment = datetime(2026, 1, 1, 12, tzinfo=UTC)
    return ImagingResult(
        status=status,
        patient=PatientIdentifier("123456", "HOSP"),
        patient_name=PersonName("M\u00dcLLER", "J\u00dcRGEN"),
        procedure_code=Coding("http://www.ama-assn.org/go/cpt", "71046", "XR CHEST 2 VIEWS"),
        observation_time=moment,
        status_changed_at=moment,
        placer_order_number=OrderNumber(order, "EPIC"),
        filler_order_number=OrderNumber("F" + order, "RIS"),
        accession_number="A" + order[-10:],
        sections=(ReportSection(ReportSectionKind.FINDINGS, (text,)),),
    )


def _oru(order: str, status: ResultStatus, control_id: str, **kw: object) -> str:
    return build_oru_r01(
        _result(order, status, **kw),  # type: ignore[arg-type]
        header=MessageHeader(receiving_application="RIS", receiving_facility="HOSP"),
        control_id=control_id,
        created_at=datetime(2026, 1, 1, 12, 5, tzinfo=UTC),
        layout=TextLayout.OBX_PER_LINE,
    )


def test_our_sender_delivers_utf8_orus_to_python_hl7_asyncio_server_on_one_connection() -> None:
    received: list[str] = []

    async def handle(reader, writer) -> None:  # type: ignore[no-untyped-def]
        try:
            while not writer.is_closing():
                message = await reader.readmessage()
                received.append(str(message))
                writer.writemessage(message.create_ack())
                await writer.drain()
        except asyncio.IncompleteReadError:
            writer.close()

    port = free_port()

    async def scenario() -> list[Delivery]:
        server = await start_hl7_server(handle, "127.0.0.1", port, encoding="utf-8")
        sender = MLLPSender("127.0.0.1", port, ack_timeout=10)
        try:
            outcomes = [
                await sender.send(_oru("PY1", ResultStatus.PRELIMINARY, "PY-P1", text="\u00d6dem | none ^ \\ &")),
                await sender.send(_oru("PY1", ResultStatus.FINAL, "PY-F1")),
            ]
        finally:
            await sender.close()
            server.close()
            await server.wait_closed()
        return [o.delivery for o in outcomes]

    assert asyncio.run(scenario()) == [Delivery.DELIVERED, Delivery.DELIVERED]
    first = hl7.parse(received[0])
    assert first.unescape(str(first.segment("OBX")[5])) == "\u00d6dem | none ^ \\ &"
    assert [str(hl7.parse(m).segment("OBR")[25]) for m in received] == ["P", "F"]


# ---------------------------------------------------------------- our queue + worker -> npm simple-hl7


@pytest.fixture(scope="module")
def simple_hl7_modules() -> Path:
    """``npm ci`` of deploy/local/hl7peer into .cache/hl7peer (once)."""
    if shutil.which("node") is None or shutil.which("npm") is None:
        pytest.skip("node/npm not installed")
    modules = PEER_CACHE / "node_modules"
    if not (modules / "simple-hl7").exists():
        PEER_CACHE.mkdir(parents=True, exist_ok=True)
        for name in ("package.json", "package-lock.json"):
            shutil.copy(PEER_DIR / name, PEER_CACHE / name)
        subprocess.run(["npm", "ci", "--no-audit", "--no-fund"], cwd=PEER_CACHE, check=True, timeout=300)
    return modules


class SimpleHl7Peer:
    """The node peer process; ``answer`` switches its behaviour while it runs."""

    def __init__(self, modules: Path, port: int, workdir: Path) -> None:
        self.port = port
        self.behaviour = workdir / f"behaviour-{port}"
        self.log = workdir / f"received-{port}.jsonl"
        self.behaviour.write_text("AA")
        env = dict(os.environ, NODE_PATH=str(modules))
        self.proc = subprocess.Popen(
            ["node", str(PEER_DIR / "server.js"), str(port), str(self.behaviour), str(self.log)],
            env=env,
            stdout=subprocess.DEVNULL,
        )
        _wait_for_port(port)

    def answer(self, code: str) -> None:
        self.behaviour.write_text(code)

    def received(self) -> list[dict[str, str]]:
        if not self.log.exists():
            return []
        return [json.loads(line) for line in self.log.read_text().splitlines() if line.strip()]

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=10)


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    eng = make_engine(sqlite_url(tmp_path / "queue.db"))
    migrate(eng, chain="radcds_reporting.db")
    yield eng
    eng.dispose()


@pytest.fixture
def peer(simple_hl7_modules: Path, tmp_path: Path) -> Iterator[SimpleHl7Peer]:
    p = SimpleHl7Peer(simple_hl7_modules, free_port(), tmp_path)
    yield p
    p.stop()


FAST = RetryPolicy(initial_delay=0.1, max_delay=0.5, max_attempts=50)


async def _drain(worker: DeliveryWorker, queue: OutboundQueue, dest: str, until: dict[str, int]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        counts = await asyncio.to_thread(queue.counts, dest)
        if all(counts[k] >= v for k, v in until.items()):
            return
        if await worker.run_once() is None:
            await asyncio.sleep(0.05)
    raise AssertionError(f"queue did not reach {until}: {queue.counts(dest)}")


def test_peer_answering_ae_parks_the_message(engine: Engine, peer: SimpleHl7Peer) -> None:
    peer.answer("AE")
    queue = OutboundQueue(engine)
    dest = f"127.0.0.1:{peer.port}"
    queue.enqueue(destination=dest, order_key="o1", payload=_oru("AE1", ResultStatus.PRELIMINARY, "AE-P1"))

    async def scenario() -> None:
        worker = DeliveryWorker(queue, MLLPSender("127.0.0.1", peer.port, ack_timeout=5), destination=dest, policy=FAST)
        await _drain(worker, queue, dest, {"parked": 1})
        await worker.stop()

    asyncio.run(scenario())
    assert [m.control_id for m in queue.parked(dest)] == ["AE-P1"]
    assert [r["control_id"] for r in peer.received()] == ["AE-P1"]  # not resent


def test_peer_answering_ar_gets_the_same_msh10_again_until_it_accepts(engine: Engine, peer: SimpleHl7Peer) -> None:
    peer.answer("AR")
    queue = OutboundQueue(engine)
    dest = f"127.0.0.1:{peer.port}"
    queue.enqueue(destination=dest, order_key="o1", payload=_oru("AR1", ResultStatus.PRELIMINARY, "AR-P1"))

    async def scenario() -> None:
        worker = DeliveryWorker(queue, MLLPSender("127.0.0.1", peer.port, ack_timeout=5), destination=dest, policy=FAST)
        while len(peer.received()) < 2:
            if await worker.run_once() is None:
                await asyncio.sleep(0.05)
        peer.answer("AA")
        await _drain(worker, queue, dest, {"delivered": 1})
        await worker.stop()

    asyncio.run(scenario())
    received = peer.received()
    assert {r["control_id"] for r in received} == {"AR-P1"}
    assert [r["answer"] for r in received][-1] == "AA" and received[0]["answer"] == "AR"


def test_peer_that_never_answers_times_out_and_is_retried(engine: Engine, peer: SimpleHl7Peer) -> None:
    peer.answer("NONE")
    queue = OutboundQueue(engine)
    dest = f"127.0.0.1:{peer.port}"
    queue.enqueue(destination=dest, order_key="o1", payload=_oru("TO1", ResultStatus.PRELIMINARY, "TO-P1"))

    async def scenario() -> QueueState | None:
        sender = MLLPSender("127.0.0.1", peer.port, ack_timeout=0.5)
        worker = DeliveryWorker(queue, sender, destination=dest, policy=FAST)
        first = await worker.run_once()
        peer.answer("AA")
        await _drain(worker, queue, dest, {"delivered": 1})
        await worker.stop()
        return first

    assert asyncio.run(scenario()) is QueueState.RETRYING
    assert [r["control_id"] for r in peer.received()][-1] == "TO-P1"
    assert len(peer.received()) >= 2


def test_restart_of_the_worker_mid_queue_loses_nothing_and_keeps_p_before_f(
    engine: Engine, peer: SimpleHl7Peer
) -> None:
    dest = f"127.0.0.1:{peer.port}"
    queue = OutboundQueue(engine)
    expected = []
    for n in range(1, 4):
        for status, letter in ((ResultStatus.PRELIMINARY, "P"), (ResultStatus.FINAL, "F")):
            cid = f"RS-{letter}{n}"
            queue.enqueue(destination=dest, order_key=f"order-{n}", payload=_oru(f"RS{n}", status, cid))
            expected.append(cid)

    async def first_run() -> None:
        worker = DeliveryWorker(queue, MLLPSender("127.0.0.1", peer.port, ack_timeout=5), destination=dest, policy=FAST)
        worker.start()
        deadline = time.monotonic() + 60
        while (await asyncio.to_thread(queue.counts, dest))["delivered"] < 2:
            assert time.monotonic() < deadline, "the first worker delivered nothing"
            await asyncio.sleep(0.01)
        await worker.stop()  # the "crash": a new process would start from the database alone

    async def second_run() -> None:
        fresh = OutboundQueue(make_engine(str(engine.url)))
        worker = DeliveryWorker(fresh, MLLPSender("127.0.0.1", peer.port, ack_timeout=5), destination=dest, policy=FAST)
        await _drain(worker, fresh, dest, {"delivered": len(expected)})
        await worker.stop()

    asyncio.run(first_run())
    assert queue.counts(dest)["delivered"] >= 2
    asyncio.run(second_run())
    received = [r["control_id"] for r in peer.received()]
    assert set(received) == set(expected)  # nothing lost (a repeat after the stop is allowed: same MSH-10)
    for n in range(1, 4):
        firsts = {cid: received.index(cid) for cid in (f"RS-P{n}", f"RS-F{n}")}
        assert firsts[f"RS-P{n}"] < firsts[f"RS-F{n}"]
    assert next(r["obr25"] for r in peer.received() if r["control_id"] == "RS-F1") == "F"
