"""HL7 v2: ORU^R01 throughput over MLLP with ACKs, and parse speed python-hl7 vs hl7apy.

Throughput: one ORU in flight at a time, each waiting for its ACK, to python-hl7's asyncio MLLP
server (``start_hl7_server``, ``encoding="utf-8"``, answering ``message.create_ack()``) running in
a separate process. The radcds path is :class:`radcds_reporting.adapters.hl7v2.mllp.MLLPSender` (encode,
frame, wait, parse and classify the ACK); the baseline is python-hl7's own client
(``hl7.mllp.open_hl7_connection``: ``writeblock`` of the same bytes, ``readmessage`` of the ACK)
against the same server in the same run.

Parse speed: the same generated ORU read by ``hl7.parse`` (python-hl7) and by hl7apy's
``parse_message`` (tolerant, and STRICT with ``find_groups=True``), in messages per second.

``main()`` prints the tables; ``run()`` returns them as markdown for ``bench/run.py``.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import socket
import sys
import time
from datetime import UTC, datetime

import hl7
from hl7.mllp import open_hl7_connection, start_hl7_server
from hl7apy.consts import VALIDATION_LEVEL
from hl7apy.parser import parse_message

from radcds.domain.codes import LOINC, SNOMED_CT, Coding
from radcds_reporting.adapters.hl7v2.mllp import Delivery, MLLPSender
from radcds_reporting.adapters.hl7v2.oru import MessageHeader, TextLayout, build_oru_r01
from radcds_reporting.domain.orders import OrderNumber, PatientIdentifier, PersonName, Practitioner
from radcds_reporting.domain.results import ImagingResult, NumericResult, ReportSection, ReportSectionKind, ResultStatus

MESSAGES = 3000
PARSES = 2000


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _serve(port: int, ready: multiprocessing.synchronize.Event) -> None:  # type: ignore[name-defined]
    async def handle(reader, writer) -> None:  # type: ignore[no-untyped-def]
        try:
            while True:
                message = await reader.readmessage()
                writer.writemessage(message.create_ack())
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()

    async def main() -> None:
        server = await start_hl7_server(handle, "127.0.0.1", port, encoding="utf-8")
        ready.set()
        async with server:
            await server.serve_forever()

    asyncio.run(main())


def _serve_fast(port: int, ready: multiprocessing.synchronize.Event) -> None:  # type: ignore[name-defined]
    """An engine-like receiver that ACKs on receipt: reads each MLLP block, echoes MSH-10 in an AA,
    parses nothing else (how Mirth or Rhapsody answer in "ACK on receive" mode)."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                block = await reader.readuntil(b"\x1c\x0d")
                msh = block.lstrip(b"\x0b").split(b"\r", 1)[0].split(b"|")
                ack = (
                    b"MSH|^~\\&|RIS|HOSP|RADCDS||20260101120000||ACK^R01^ACK|A" + msh[9] + b"|P|2.5.1\r"
                    b"MSA|AA|" + msh[9] + b"\r"
                )
                writer.write(b"\x0b" + ack + b"\x1c\x0d")
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()

    async def main() -> None:
        server = await asyncio.start_server(handle, "127.0.0.1", port)
        ready.set()
        async with server:
            await server.serve_forever()

    asyncio.run(main())


def sample_oru(control_id: str) -> str:
    """A realistic preliminary chest X-ray ORU (text, two measurements, a coded conclusion)."""
    moment = datetime(2026, 1, 1, 12, tzinfo=UTC)
    result = ImagingResult(
        status=ResultStatus.PRELIMINARY,
        patient=PatientIdentifier("123456", "HOSP"),
        patient_name=PersonName("DOE", "JANE"),
        procedure_code=Coding("http://www.ama-assn.org/go/cpt", "71046", "XR CHEST 2 VIEWS"),
        observation_time=moment,
        status_changed_at=moment,
        placer_order_number=OrderNumber("PLC123", "EPIC"),
        filler_order_number=OrderNumber("FIL456", "RIS"),
        accession_number="ACC789",
        sections=(
            ReportSection(ReportSectionKind.FINDINGS, ("Cardiothoracic ratio 0.58.", "Lungs are clear.")),
            ReportSection(ReportSectionKind.IMPRESSION, ("Cardiomegaly.",)),
            ReportSection(ReportSectionKind.AI_DISCLAIMER, ("AI-generated preliminary report.",)),
        ),
        measurements=(NumericResult(Coding(LOINC, "x-ctr", "Cardiothoracic ratio"), 0.58, "{ratio}"),),
        conclusion=Coding(SNOMED_CT, "8186001", "Cardiomegaly"),
        principal_result_interpreter=Practitioner("5678", PersonName("RADIOLOGIST", "RAY")),
    )
    return build_oru_r01(
        result,
        header=MessageHeader(receiving_application="RIS"),
        control_id=control_id,
        created_at=moment,
        layout=TextLayout.OBX_PER_LINE,
    )


async def _radcds_sender(port: int, messages: list[str]) -> float:
    sender = MLLPSender("127.0.0.1", port, ack_timeout=30)
    t0 = time.perf_counter()
    for text in messages:
        if (await sender.send(text)).delivery is not Delivery.DELIVERED:
            raise SystemExit("radcds sender: a message was not acknowledged AA")
    elapsed = time.perf_counter() - t0
    await sender.close()
    return elapsed


async def _python_hl7_client(port: int, messages: list[str]) -> float:
    reader, writer = await open_hl7_connection("127.0.0.1", port, encoding="utf-8")
    blocks = [m.encode("utf-8") for m in messages]
    t0 = time.perf_counter()
    for block in blocks:
        writer.writeblock(block)
        await writer.drain()
        ack = await reader.readmessage()
        if str(ack.segment("MSA")[1]) != "AA":
            raise SystemExit("python-hl7 client: a message was not acknowledged AA")
    elapsed = time.perf_counter() - t0
    writer.close()
    return elapsed


def _queue_throughput(messages: int) -> float:
    """msg/s of the service path: a persisted SQLite outbound queue drained by one DeliveryWorker
    (select the next due message, send, await the ACK, record the outcome) into the ACK-on-receipt engine."""
    import tempfile
    from pathlib import Path

    from radcds.adapters.db.engine import make_engine, migrate, sqlite_url
    from radcds_reporting.adapters.hl7v2.outbound import DeliveryWorker, OutboundQueue

    port = _free_port()
    ctx = multiprocessing.get_context("spawn")
    ready = ctx.Event()
    server = ctx.Process(target=_serve_fast, args=(port, ready), daemon=True)
    server.start()
    try:
        if not ready.wait(30):
            raise SystemExit("receiver did not start")
        with tempfile.TemporaryDirectory() as tmp:
            engine = make_engine(sqlite_url(Path(tmp) / "queue.db"))
            migrate(engine, chain="radcds_reporting.db")
            queue = OutboundQueue(engine)
            for i in range(messages):
                queue.enqueue(destination="engine", order_key=f"order-{i % 50}", payload=sample_oru(f"Q{i:08d}"))

            async def drain() -> float:
                worker = DeliveryWorker(queue, MLLPSender("127.0.0.1", port, ack_timeout=30), destination="engine")
                t0 = time.perf_counter()
                while await worker.run_once() is not None:
                    pass
                elapsed = time.perf_counter() - t0
                await worker.stop()
                return elapsed

            elapsed = asyncio.run(drain())
            delivered = queue.counts("engine")["delivered"]
            engine.dispose()
        if delivered != messages:
            raise SystemExit(f"queue: {delivered} of {messages} delivered")
    finally:
        server.terminate()
        server.join(10)
    return messages / elapsed


def _rate(count: int, fn) -> float:  # type: ignore[no-untyped-def]
    fn()  # warm-up
    t0 = time.perf_counter()
    for _ in range(count):
        fn()
    return count / (time.perf_counter() - t0)


def _throughput(serve, messages: int) -> tuple[float, float]:  # type: ignore[no-untyped-def]
    """(radcds msg/s, python-hl7 client msg/s) against one receiver process started with ``serve``."""
    port = _free_port()
    ctx = multiprocessing.get_context("spawn")
    ready = ctx.Event()
    server = ctx.Process(target=serve, args=(port, ready), daemon=True)
    server.start()
    try:
        if not ready.wait(30):
            raise SystemExit("receiver did not start")
        ours_msgs = [sample_oru(f"R{i:08d}") for i in range(messages)]
        base_msgs = [sample_oru(f"B{i:08d}") for i in range(messages)]
        asyncio.run(_radcds_sender(port, ours_msgs[:100]))  # warm-up of both paths and the server
        asyncio.run(_python_hl7_client(port, base_msgs[:100]))
        ours = messages / asyncio.run(_radcds_sender(port, ours_msgs))
        base = messages / asyncio.run(_python_hl7_client(port, base_msgs))
    finally:
        server.terminate()
        server.join(10)
    return ours, base


def run(messages: int = MESSAGES, parses: int = PARSES) -> str:
    """Run both measurements and return the markdown tables."""
    ours, base = _throughput(_serve, messages)
    fast_ours, fast_base = _throughput(_serve_fast, messages)
    queued = _queue_throughput(messages // 3)

    text = sample_oru("PARSE0001")
    py_hl7 = _rate(parses, lambda: hl7.parse(text))
    apy_tolerant = _rate(parses // 4, lambda: parse_message(text))
    apy_strict = _rate(
        parses // 4, lambda: parse_message(text, validation_level=VALIDATION_LEVEL.STRICT, find_groups=True)
    )
    lines = [
        f"ORU^R01 over MLLP, one in flight, ACK awaited ({messages} messages, {len(text)} bytes each; "
        "each receiver in another process)",
        "",
        "| path | msg/s | baseline msg/s | ratio |",
        "| --- | ---: | ---: | ---: |",
        f"| radcds MLLPSender vs python-hl7 open_hl7_connection; receiver: python-hl7 server (parses each message) "
        f"| {ours:,.0f} | {base:,.0f} | {ours / base:.2f} |",
        f"| the same two senders; receiver: ACK-on-receipt engine (reads MSH-10 only) "
        f"| {fast_ours:,.0f} | {fast_base:,.0f} | {fast_ours / fast_base:.2f} |",
        f"| service path: persisted SQLite queue + DeliveryWorker (outcomes recorded per batch); "
        f"receiver: ACK-on-receipt "
        f"engine | {queued:,.0f} | {fast_base:,.0f} | {queued / fast_base:.2f} |",
        "",
        "Parsing the same ORU (messages per second)",
        "",
        "| parser | msg/s | ratio to python-hl7 |",
        "| --- | ---: | ---: |",
        f"| python-hl7 `hl7.parse` | {py_hl7:,.0f} | 1.00 |",
        f"| hl7apy `parse_message` (tolerant) | {apy_tolerant:,.0f} | {apy_tolerant / py_hl7:.3f} |",
        f"| hl7apy `parse_message` (STRICT, find_groups) | {apy_strict:,.0f} | {apy_strict / py_hl7:.3f} |",
    ]
    return "\n".join(lines)


def main() -> int:
    """Print the HL7 tables (the integrator calls this from bench/run.py)."""
    print("\nHL7 v2 (ORU over MLLP with ACKs; parse speed)\n", flush=True)
    print(run(), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
