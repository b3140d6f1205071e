"""The load generator of the end-to-end benchmark (bench/e2e_bench.py), in its own process.

It plays everything outside radcds: the RIS sending each study's ORM^O01 over MLLP, the modality sending the
images over STOW-RS (open loop: each study starts at its scheduled time, whether or not the ones before it have
finished), the EHR fusion reads (bench/fusion_stack_bench.py's canned FHIR server: one Patient per MRN), and the
integration engine that takes reporting's ORU^R01 (python-hl7's asyncio MLLP server, answering AA). Its clock is
``time.monotonic()``, the same CLOCK_MONOTONIC the orchestrator reads, so both sides' times compare.

Protocol (stdin/stdout, one JSON object per line): it prints ``{"ready": true}`` once its peers listen, reads one
line ``{"phases": [...]}`` (each ``{"name", "rate_per_min", "seconds", "drain_s"}``), runs the phases one after
the other (after each, it waits up to ``drain_s`` for the phase's studies to finish) and prints
``{"studies": [...], "phases": [...]}``: per study its phase, kind, instances, STOW start and end, STOW status,
the first ORU's ACK time and the ACK time of the first ORU carrying fusion's comparison section.

Run by bench/e2e_bench.py (pinned with ``taskset -c 0``); not meant to be started by hand.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import itertools
import json
import os
import sys
import threading
import time
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import httpx
import pydicom
from hl7.mllp import open_hl7_connection, start_hl7_server

sys.path.insert(0, str(Path(__file__).resolve().parent))

from fusion_stack_bench import _Ehr, _EhrServer  # the same canned EHR as the fusion benchmark
from storage_bench import _orm  # the same ORM^O01 as the storage benchmark

from radcds.adapters.dicomweb.multipart import build_related
from radcds_devstack.samples import chest_cr, head_ct, part10

#: A folder to write every ORU received into (debugging the benchmark itself).
DUMP = os.environ.get("RADCDS_BENCH_E2E_DUMP")


@dataclass
class Study:
    """One study of the run and what happened to it (monotonic seconds)."""

    phase: str
    kind: str
    instances: int
    accession: str
    scheduled: float = 0.0
    stow_start: float = 0.0
    stow_end: float = 0.0
    stow_status: int = 0
    first_oru_acked: float | None = None
    fusion_oru_acked: float | None = None
    orus: int = 0


#: OBX-3 of the report's "Comparison with priors" section (LOINC 18834-2), which fusion's assessment fills.
COMPARISON_SECTION = "18834-2"


def _carries_assessment(message: Any) -> bool:
    """True when the comparison section holds fusion's text, not the preliminary's "Pending: ..." line."""
    for obx in message.segments("OBX"):
        if str(obx[3]).startswith(COMPARISON_SECTION) and not str(obx[5]).startswith("Pending"):
            return True
    return False


class Engine:
    """The integration engine: ACKs every ORU^R01 (AA) and notes, per accession (OBR-18), when it ACKed the
    first one and the first one carrying fusion's "Comparison" section."""

    def __init__(self) -> None:
        self.by_accession: dict[str, Study] = {}
        self.unknown = 0

    async def handle(self, reader: Any, writer: Any) -> None:
        try:
            while not writer.is_closing():
                message = await reader.readmessage()
                writer.writemessage(message.create_ack())
                await writer.drain()
                acked = time.monotonic()
                if DUMP:
                    (Path(DUMP) / f"{time.monotonic_ns()}.hl7").write_text(str(message))
                try:
                    accession = str(message.segment("OBR")[18])
                except (KeyError, IndexError):
                    accession = ""
                study = self.by_accession.get(accession)
                if study is None:
                    self.unknown += 1
                    continue
                study.orus += 1
                if study.first_oru_acked is None:
                    study.first_oru_acked = acked
                if study.fusion_oru_acked is None and _carries_assessment(message):
                    study.fusion_oru_acked = acked
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()


def _instances(kind: str, patient_id: str, accession: str, ct_slices: int) -> tuple[str, list[bytes]]:
    ds = chest_cr() if kind == "CR" else head_ct()
    ds.PatientID = patient_id
    ds.AccessionNumber = accession
    first = part10(ds)
    out = [first]
    for s in range(1, 1 if kind == "CR" else ct_slices):
        copy = pydicom.dcmread(io.BytesIO(first))
        copy.SOPInstanceUID = pydicom.uid.generate_uid()
        copy.file_meta.MediaStorageSOPInstanceUID = copy.SOPInstanceUID
        copy.InstanceNumber = s + 1
        out.append(part10(copy))
    return str(ds.StudyInstanceUID), out


class Generator:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.engine = Engine()
        self.studies: list[Study] = []
        self.imaging = itertools.cycle(args.imaging)
        self.patients = [f"E2E-{uuid.uuid4().hex[:8]}" for _ in range(args.patients)]
        self.n = itertools.count()

    def _prepare(self, phase: str, count: int) -> list[tuple[Study, str, bytes, str]]:
        """Every study of a phase built before its clock starts (DICOM encoding is not part of the load)."""
        out = []
        for _ in range(count):
            i = next(self.n)
            kind = "CT" if i % 3 == 2 else "CR"  # two chest radiographs for each head CT
            n = uuid.uuid4().hex[:12]
            accession = f"E2E{n}"
            patient = self.patients[i % len(self.patients)]
            study_uid, files = _instances(kind, patient, accession, self.args.ct_slices)
            body, boundary = build_related([("application/dicom", f) for f in files])
            study = Study(phase, kind, len(files), accession)
            self.engine.by_accession[accession] = study
            procedure = "71046^XR CHEST 2 VIEWS^CPT4" if kind == "CR" else "70450^CT HEAD WO CONTRAST^CPT4"
            out.append((study, _orm(n, accession, study_uid, patient, procedure, kind), body, boundary))
        return out

    async def _one(self, client: httpx.AsyncClient, orm_lock: asyncio.Lock, conn: Any, item: Any) -> None:
        study, orm, body, boundary = item
        async with orm_lock:  # one MLLP connection, one message in flight (the RIS's way)
            conn[1].writemessage(orm)
            await conn[1].drain()
            ack = await conn[0].readmessage()
            assert str(ack.segment("MSA")[1]) == "AA", str(ack)
        study.stow_start = time.monotonic()
        response = await client.post(
            f"{next(self.imaging)}/dicom-web/studies",
            content=body,
            headers={
                "Content-Type": f'multipart/related; type="application/dicom"; boundary={boundary}',
                "Accept": "application/dicom+json",
            },
        )
        study.stow_end = time.monotonic()
        study.stow_status = response.status_code

    async def run_phase(self, phase: dict[str, Any], client: httpx.AsyncClient, conn: Any) -> dict[str, Any]:
        count = max(1, round(phase["rate_per_min"] * phase["seconds"] / 60))
        items = self._prepare(phase["name"], count)
        interval = 60.0 / phase["rate_per_min"]
        lock = asyncio.Lock()
        start = time.monotonic() + 0.5
        tasks = []
        for k, item in enumerate(items):
            item[0].scheduled = start + k * interval
            await asyncio.sleep(max(0.0, item[0].scheduled - time.monotonic()))
            tasks.append(asyncio.create_task(self._one(client, lock, conn, item)))
        await asyncio.gather(*tasks)
        sent_end = time.monotonic()
        mine = [i[0] for i in items]
        deadline = time.monotonic() + phase["drain_s"]
        while time.monotonic() < deadline and any(s.fusion_oru_acked is None for s in mine):  # noqa: ASYNC110
            await asyncio.sleep(0.2)
        return {**phase, "start": start, "sent_end": sent_end, "end": time.monotonic(), "studies": count}

    async def main(self) -> None:
        ehr = _EhrServer(("127.0.0.1", self.args.ehr_port), _Ehr)
        threading.Thread(target=ehr.serve_forever, daemon=True).start()
        server = await start_hl7_server(self.engine.handle, "127.0.0.1", self.args.oru_port, encoding="utf-8")
        print(json.dumps({"ready": True}), flush=True)
        line = await asyncio.to_thread(sys.stdin.readline)
        plan = json.loads(line)
        conn = await open_hl7_connection("127.0.0.1", self.args.orm_port, encoding="utf-8")
        phases = []
        limits = httpx.Limits(max_connections=64, max_keepalive_connections=32)
        async with httpx.AsyncClient(timeout=120, limits=limits) as client:
            for phase in plan["phases"]:
                phases.append(await self.run_phase(phase, client, conn))
                print(json.dumps({"phase_done": phase["name"]}), file=sys.stderr, flush=True)
        conn[1].close()
        server.close()
        ehr.shutdown()
        print(json.dumps({"phases": phases, "studies": [asdict(s) for s in self.studies_all()],
                          "unknown_orus": self.engine.unknown}), flush=True)  # fmt: skip

    def studies_all(self) -> list[Study]:
        return list(self.engine.by_accession.values())


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--imaging", action="append", required=True, help="imaging base URL (repeat to balance)")
    parser.add_argument("--orm-port", type=int, required=True)
    parser.add_argument("--oru-port", type=int, required=True)
    parser.add_argument("--ehr-port", type=int, required=True)
    parser.add_argument("--ct-slices", type=int, default=8)
    parser.add_argument("--patients", type=int, default=40)
    asyncio.run(Generator(parser.parse_args()).main())


if __name__ == "__main__":
    main()
