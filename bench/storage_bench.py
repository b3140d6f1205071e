"""Bytes per study: each service database (PostgreSQL), imaging's storage folder and the Kafka topics.

The whole stack runs (Kafka KRaft, Triton on CPU, PostgreSQL, every service, the worklist's OpenID Provider) in its
own run folder on its own ports, with an ACK-on-receipt MLLP peer taking reporting's ORUs. Per study, as a hospital
would send it:

1. an HL7 v2 ORM^O01 new order (accession, Study Instance UID in ZDS-1) over MLLP to reporting;
2. a CDS Hooks ``order-sign`` call, signed by the development EHR key, to referral;
3. the images over STOW-RS to imaging, carrying the order's accession number and Study Instance UID.

Then the stack runs the study as in production: imaging's quiet period, ``study.available``, inference on Triton,
findings, reporting's FHIR resources and preliminary ORU, fusion's assessment, the worklist's row. Two rounds:
``RADCDS_BENCH_STORAGE_CR`` chest radiographs (RG1_UNCI.dcm, one instance each), then ``RADCDS_BENCH_STORAGE_CT``
head CTs of ``RADCDS_BENCH_STORAGE_SLICES`` slices each (693_UNCI.dcm, fresh SOP Instance UIDs, one series).
A warm-up of ``WARM_UP`` chest radiographs runs first. Sizes are measured before and after each round, once every
study has its assessment and its ORU is delivered: ``pg_total_relation_size`` summed over each database's tables
(heap, indexes, TOAST, as autovacuum left them), the files under imaging's storage folder, key + value + header
bytes of every record on each topic, and the time each consumer spent in its handler
(``radcds_event_handler_seconds`` at ``/metrics``: wall time, on cores shared with everything else).

Run: ``flock /tmp/radcds-it.lock .venv/bin/python bench/storage_bench.py`` (a few minutes on 2 cores).
"""

from __future__ import annotations

import asyncio
import io
import os
import shutil
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import psycopg
from hl7.client import MLLPClient
from hl7.mllp import start_hl7_server
from kafka import KafkaConsumer
from kafka.structs import TopicPartition
from prometheus_client.parser import text_string_to_metric_families

ROOT = Path(__file__).resolve().parents[1]
CR_STUDIES = int(os.environ.get("RADCDS_BENCH_STORAGE_CR", "60"))
CT_STUDIES = int(os.environ.get("RADCDS_BENCH_STORAGE_CT", "10"))
CT_SLICES = int(os.environ.get("RADCDS_BENCH_STORAGE_SLICES", "20"))
DATABASES = ("imaging", "reporting", "referral", "fusion", "worklist")
#: Ports apart from `make up` (1xxxx, 8xxx) and the integration tests (2xxxx).
PORT_BASE = 36000
#: Studies sent before the first measurement, so that empty tables' first pages are not counted per study.
WARM_UP = 5


class OruPeer:
    """An integration engine that acknowledges every ORU^R01 on receipt (python-hl7's asyncio server)."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.received = 0
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()

    async def _handle(self, reader: Any, writer: Any) -> None:
        try:
            while not writer.is_closing():
                message = await reader.readmessage()
                self.received += 1
                writer.writemessage(message.create_ack())
                await writer.drain()
        except asyncio.IncompleteReadError:
            writer.close()

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.run_until_complete(start_hl7_server(self._handle, "127.0.0.1", self.port, encoding="utf-8"))
        self._ready.set()
        self._loop.run_forever()

    def start(self) -> None:
        threading.Thread(target=self._run, daemon=True).start()
        self._ready.wait(10)


def _orm(n: str, accession: str, study_uid: str, patient_id: str, procedure: str, modality: str) -> str:
    """An ORM^O01 new order (ORC-1 NW, OBR-18 accession, ZDS-1 Study Instance UID; shared/notes/standards.md)."""
    obr = [""] * 25
    obr[:5] = ["OBR", "1", f"PLC{n}^EPIC", f"FIL{n}^RIS", procedure]
    obr[16] = "1234^SMITH^JOHN"
    obr[18], obr[19], obr[20], obr[24] = accession, "RP1", "SPS1", modality
    return "\r".join(
        [
            f"MSH|^~\\&|RIS|HOSP|RADCDS|HOSP|20260101100000||ORM^O01|ORM-{n}|P|2.3.1",
            f"PID|1||{patient_id}^^^HOSP^MR||DOE^JANE||19700101|F",
            f"ORC|NW|PLC{n}^EPIC|FIL{n}^RIS||SC||||20260101100000|||1234^SMITH^JOHN",
            "|".join(obr),
            f"ZDS|{study_uid}^100^Application^DICOM",
        ]
    )


def _database_bytes(stack: Any) -> dict[str, int]:
    out = {}
    for name in DATABASES:
        dsn = f"postgresql://postgres@{stack.host}:{stack.ports.postgres}/radcds_{name}"
        with psycopg.connect(dsn) as conn:
            row = conn.execute(
                "SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0) FROM pg_class c "
                "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'public' AND c.relkind = 'r'"
            ).fetchone()
        out[name] = int(row[0]) if row else 0
    return out


def _folder_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def _topic_bytes(stack: Any) -> dict[str, tuple[int, int]]:
    """Topic → (records, key + value + header bytes)."""
    consumer = KafkaConsumer(
        bootstrap_servers=[stack.bootstrap], group_id=None, enable_auto_commit=False, consumer_timeout_ms=3000
    )
    topics = sorted(t for t in consumer.topics() if t.startswith("radcds."))
    tps = [TopicPartition(t, p) for t in topics for p in sorted(consumer.partitions_for_topic(t))]
    consumer.assign(tps)
    consumer.seek_to_beginning()
    ends = consumer.end_offsets(tps)
    out: dict[str, tuple[int, int]] = {t: (0, 0) for t in topics}
    while any(consumer.position(tp) < ends[tp] for tp in tps):
        for records in consumer.poll(timeout_ms=1000).values():
            for r in records:
                n, size = out[r.topic]
                headers = sum(len(k) + len(v or b"") for k, v in r.headers or [])
                out[r.topic] = (n + 1, size + len(r.key or b"") + len(r.value or b"") + headers)
    consumer.close()
    return out


def _handler_seconds(stack: Any) -> dict[tuple[str, str], tuple[float, float]]:
    """(service, topic) → (events handled, seconds in the handler), from each consumer's ``/metrics``."""
    out: dict[tuple[str, str], tuple[float, float]] = {}
    for service in ("inference", "reporting", "fusion", "worklist"):
        text = httpx.get(f"http://{stack.host}:{stack.ports.http(service)}/metrics", timeout=10).text
        for family in text_string_to_metric_families(text):
            if family.name != "radcds_event_handler_seconds":
                continue
            for sample in family.samples:
                key = (service, sample.labels["topic"])
                n, total = out.get(key, (0.0, 0.0))
                if sample.name.endswith("_count"):
                    out[key] = (sample.value, total)
                elif sample.name.endswith("_sum"):
                    out[key] = (n, sample.value)
    return out


def _snapshot(stack: Any) -> dict[str, Any]:
    return {
        "handlers": _handler_seconds(stack),
        "db": _database_bytes(stack),
        "storage": _folder_bytes(stack.run_dir / "data" / "imaging" / "instances"),
        "topics": _topic_bytes(stack),
    }


def _eventually(probe: Callable[[], bool], what: str, timeout_s: float = 900.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if probe():
            return
        time.sleep(2)
    raise TimeoutError(what)


def _count(stack: Any, database: str, sql: str) -> int:
    dsn = f"postgresql://postgres@{stack.host}:{stack.ports.postgres}/radcds_{database}"
    with psycopg.connect(dsn) as conn:
        row = conn.execute(sql).fetchone()
    return int(row[0]) if row else 0


def _round(stack: Any, peer: OruPeer, *, kind: str, studies: int, slices: int) -> None:
    import pydicom

    from radcds_devstack.demo import call_referral, stow
    from radcds_devstack.samples import chest_cr, head_ct, part10
    from radcds_devstack.scenarios import low_risk_minor_head_injury

    reports_before = _count(
        stack, "reporting", "SELECT count(*) FROM fhir_resources WHERE resource_type = 'DiagnosticReport'"
    )
    oru_before = peer.received
    client = MLLPClient(stack.host, stack.ports.reporting_mllp)
    for i in range(studies):
        n = uuid.uuid4().hex[:12]
        ds = chest_cr() if kind == "CR" else head_ct()
        accession, study_uid = f"ACC{n}", str(ds.StudyInstanceUID)
        procedure = "71046^XR CHEST 2 VIEWS^CPT4" if kind == "CR" else "70450^CT HEAD WO CONTRAST^CPT4"
        ack = client.send_message(_orm(n, accession, study_uid, str(ds.PatientID), procedure, kind))
        assert b"MSA|AA" in ack, ack
        call_referral(stack, low_risk_minor_head_injury())
        ds.AccessionNumber = accession
        instances = []
        for s in range(slices):
            if s:
                ds = pydicom.dcmread(io.BytesIO(instances[0]))
                ds.SOPInstanceUID = pydicom.uid.generate_uid()
                ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
                ds.InstanceNumber = s + 1
            instances.append(part10(ds))
        stow(stack, instances)
        print(f"  {kind} study {i + 1}/{studies} sent ({slices} instance(s))", flush=True)
    client.close()
    _eventually(
        lambda: (
            _count(stack, "reporting", "SELECT count(*) FROM fhir_resources WHERE resource_type = 'DiagnosticReport'")
            >= reports_before + studies
        ),
        "every report",
    )
    _eventually(lambda: peer.received >= oru_before + studies, "every preliminary ORU")
    _eventually(
        lambda: all(
            _count(stack, db, "SELECT count(*) FROM event_outbox WHERE published_at IS NULL") == 0
            for db in ("imaging", "reporting", "referral", "fusion")
        ),
        "every outbox drained",
    )
    time.sleep(10)  # fusion and the worklist consume beside reporting: let them finish the last study


def _delta(after: dict[str, Any], before: dict[str, Any], studies: int, slices: int) -> list[str]:
    rows = []
    for db in DATABASES:
        d = after["db"][db] - before["db"][db]
        rows.append(f"| {db} database | {d / studies / 1024:.1f} KiB | {d / studies / slices / 1024:.1f} KiB |")
    s = after["storage"] - before["storage"]
    rows.append(
        f"| imaging storage folder (DICOM files) | {s / studies / 1024:.1f} KiB"
        f" | {s / studies / slices / 1024:.1f} KiB |"
    )
    for topic, (n1, b1) in sorted(after["topics"].items()):
        n0, b0 = before["topics"].get(topic, (0, 0))
        if n1 - n0:
            rows.append(
                f"| topic {topic} | {(b1 - b0) / studies / 1024:.2f} KiB ({(n1 - n0) / studies:.1f} records)"
                f" | {(b1 - b0) / (n1 - n0):.0f} B per record |"
            )
    for (service, topic), (n1, t1) in sorted(after["handlers"].items()):
        n0, t0 = before["handlers"].get((service, topic), (0.0, 0.0))
        if n1 - n0:
            rows.append(
                f"| {service} handler of {topic} (wall time) | {(t1 - t0) / studies * 1000:.0f} ms"
                f" ({(n1 - n0) / studies:.1f} events) | {(t1 - t0) / (n1 - n0) * 1000:.0f} ms per event |"
            )
    return rows


def main() -> None:
    """Start the stack, run both rounds, print the table."""
    from radcds_devstack.stack import SERVICES, LocalStack, Ports

    ports = Ports(
        kafka=PORT_BASE + 92, kafka_controller=PORT_BASE + 93, triton_http=PORT_BASE + 100,
        triton_grpc=PORT_BASE + 101, triton_metrics=PORT_BASE + 102, imaging=PORT_BASE + 82,
        inference=PORT_BASE + 83, inference_grpc=PORT_BASE + 51, dimse=PORT_BASE + 12, reporting=PORT_BASE + 85,
        reporting_mllp=PORT_BASE + 75, referral=PORT_BASE + 81, fusion=PORT_BASE + 84, worklist=PORT_BASE + 86,
        oidc=PORT_BASE + 90, postgres=PORT_BASE + 32,
    )  # fmt: skip
    peer = OruPeer(PORT_BASE + 76)
    peer.start()
    extra = {f"RADCDS_{s.upper()}_ENVIRONMENT": "test" for s in SERVICES}
    extra |= {
        "RADCDS_IMAGING_STUDY_QUIET_PERIOD_S": "1.0",
        "RADCDS_REPORTING_MLLP_DESTINATIONS": f"127.0.0.1:{peer.port}",
        "RADCDS_FUSION_EHR_AUTH": "none",
    }
    run_dir = ROOT / ".run" / "storage-bench"
    shutil.rmtree(run_dir, ignore_errors=True)
    stack = LocalStack(root=ROOT, run_dir=run_dir, ports=ports, postgres=True, triton=True, extra_env=extra)
    started = time.perf_counter()
    stack.up()
    try:
        _round(stack, peer, kind="CR", studies=WARM_UP, slices=1)  # every table and index has its first pages
        s0 = _snapshot(stack)
        _round(stack, peer, kind="CR", studies=CR_STUDIES, slices=1)
        s1 = _snapshot(stack)
        _round(stack, peer, kind="CT", studies=CT_STUDIES, slices=CT_SLICES)
        s2 = _snapshot(stack)
    finally:
        stack.down()
        stack.discard_postgres_data()
        shutil.rmtree(run_dir, ignore_errors=True)
    print(f"\nWhole run {time.perf_counter() - started:.0f} s; PostgreSQL, sizes as autovacuum left them.\n")
    print(f"Chest CR, {CR_STUDIES} studies of 1 instance (with one ORM in, one CDS Hooks call, one ORU out each):\n")
    print("| what | per study | per instance / record |\n| --- | --- | --- |")
    print("\n".join(_delta(s1, s0, CR_STUDIES, 1)))
    print(f"\nHead CT, {CT_STUDIES} studies of {CT_SLICES} instances (same extras):\n")
    print("| what | per study | per instance / record |\n| --- | --- | --- |")
    print("\n".join(_delta(s2, s1, CT_STUDIES, CT_SLICES)))


if __name__ == "__main__":
    main()
