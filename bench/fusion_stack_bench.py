"""What fusion adds to a study through the running services: Kafka (KRaft), reporting and fusion as processes, the
EHR a loopback FHIR server (canned answers; each MRN its own EHR Patient, so the first study of a patient reads
the EHR cold and the second finds fusion's cache warm).

Per study, from the Kafka record timestamps (CreateTime, ms): a findings event is published (t0); reporting stores
the preliminary DiagnosticReport (t1, the first ``diagnostic-report.stored``); fusion publishes the assessment
(t2); reporting stores the report version whose sections carry it (t3, the first stored version whose conclusion
says "Comparison:", read back with vread). Baseline, same run: t1 - t0, the study path without fusion (the
report goes out without waiting for fusion). Studies are sent one at a time (latency, not throughput).

Run: ``.venv/bin/python bench/fusion_stack_bench.py [studies per cache state]`` (also part of ``make bench``).
"""

from __future__ import annotations

import json
import shutil
import sys
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))

from run import HEADER, ROOT, row, service_cpu


def _patient(mrn: str) -> dict[str, Any]:
    return {"resourceType": "Patient", "id": f"ehr-{mrn}", "gender": "male", "birthDate": "1958-03-04"}


class _Ehr(BaseHTTPRequestHandler):
    """Patient search by identifier answers one Patient per MRN (and reads it); every other search an empty
    Bundle."""

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        query = parse_qs(url.query)
        resource: dict[str, Any] = {"resourceType": "Bundle", "type": "searchset", "entry": []}
        if url.path.endswith("/Patient") and "identifier" in query:
            resource["entry"] = [{"resource": _patient(query["identifier"][0].rsplit("|", 1)[-1])}]
        elif "/Patient/ehr-" in url.path:
            resource = _patient(url.path.rsplit("/Patient/ehr-", 1)[-1])
        body = json.dumps(resource).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/fhir+json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


def _findings(mrn: str, study_date: str) -> tuple[str, Any]:
    from radcds.adapters.kafka.codec import encode
    from radcds.domain import codes
    from radcds.domain.events import FINDINGS_PRODUCED, ImagingFindingsProduced
    from radcds.domain.findings import ImageAnalysis, InstanceReference, Measurement, ModelIdentity, StudyContext

    study = "2.25." + str(uuid.uuid4().int)
    analysis = ImageAnalysis(
        instance=InstanceReference(study, study + ".1", study + ".1.1", "1.2.840.10008.5.1.4.1.1.1"),
        context=StudyContext(patient_id=mrn, modality="CR", study_date=study_date, accession_number=mrn[-8:]),
        model=ModelIdentity("chest_ctr", "1"),
        measurements=(Measurement(codes.CARDIOTHORACIC_RATIO, 0.467, codes.UNIT_RATIO),),
    )
    payload = ImagingFindingsProduced(analysis).to_payload()
    return study, encode(FINDINGS_PRODUCED, payload, event_id=str(uuid.uuid4()), source="/bench", subject=study)


class _EhrServer(ThreadingHTTPServer):
    #: fusion reads the EHR's sources concurrently: http.server's default backlog of 5 drops connections (the
    #: client's SYN is retried after 1 s), which no real FHIR server does.
    request_queue_size = 128
    daemon_threads = True


class _Recorder:
    """Every report-stored and assessment record, with its timestamp (ms), by study."""

    def __init__(self, bootstrap: str) -> None:
        from kafka import KafkaConsumer

        from radcds.domain.events import ASSESSMENT_PRODUCED, REPORT_STORED

        self._types = {REPORT_STORED.topic: "report", ASSESSMENT_PRODUCED.topic: "assessment"}
        self._consumer = KafkaConsumer(
            *self._types, bootstrap_servers=[bootstrap], auto_offset_reset="latest", group_id=None
        )
        while not self._consumer.assignment():
            self._consumer.poll(timeout_ms=200)
        self.seen: dict[str, list[tuple[str, int, dict[str, Any]]]] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            for tp, records in self._consumer.poll(timeout_ms=200).items():
                for r in records:
                    payload = json.loads(r.value)
                    with self._lock:
                        self.seen.setdefault(payload["studyInstanceUid"], []).append(
                            (self._types[tp.topic], r.timestamp, payload)
                        )

    def of(self, study: str) -> list[tuple[str, int, dict[str, Any]]]:
        with self._lock:
            return list(self.seen.get(study, []))

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self._consumer.close()


def _timings(stack: Any, recorder: _Recorder, study: str, t0: int, timeout_s: float = 60.0) -> tuple[int, int, int]:
    """(t1, t2, t3) of one study (ms)."""
    base = f"http://127.0.0.1:{stack.ports.reporting}/fhir/DiagnosticReport"
    checked: set[str] = set()
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        seen = recorder.of(study)
        reports = [(ts, p) for kind, ts, p in seen if kind == "report"]
        assessed = [ts for kind, ts, _ in seen if kind == "assessment"]
        for ts, p in reports:
            version = str(p.get("versionId", ""))
            if version in checked:
                continue
            answer = httpx.get(f"{base}/{p['diagnosticReportId']}/_history/{version}", timeout=10).json()
            checked.add(version)
            if "Comparison: " in answer.get("conclusion", "") and assessed:
                return reports[0][0] - t0, assessed[0] - t0, ts - t0
        time.sleep(0.05)
    raise AssertionError(f"study {study}: no report with the assessment's sections within {timeout_s:.0f} s")


def run(studies: int = 25) -> str:
    from kafka import KafkaProducer

    from radcds.domain.events import FINDINGS_PRODUCED
    from radcds_devstack.stack import LocalStack, Ports

    server = _EhrServer(("127.0.0.1", 0), _Ehr)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    run_dir = ROOT / ".run" / "bench-fusion-stack"
    shutil.rmtree(run_dir, ignore_errors=True)
    env = {
        "RADCDS_FUSION_ENVIRONMENT": "test",
        "RADCDS_REPORTING_ENVIRONMENT": "test",
        "RADCDS_FUSION_EHR_FHIR_BASE_URL": f"http://127.0.0.1:{server.server_port}/fhir",
        "RADCDS_FUSION_EHR_AUTH": "none",
        "RADCDS_FUSION_EHR_PATIENT_IDENTIFIER_SYSTEM": "urn:oid:2.16.840.1.113883.3.999",
        "RADCDS_FUSION_LOG_LEVEL": "WARNING",
        "RADCDS_REPORTING_LOG_LEVEL": "WARNING",
    }
    stack = LocalStack(
        root=ROOT,
        run_dir=run_dir,
        ports=Ports(kafka=39192, kafka_controller=39193, reporting=38185, reporting_mllp=32575, fusion=38184),
        extra_env=env,
    )
    with service_cpu():  # Kafka, reporting and fusion on the service CPU; this process (EHR, generator) unpinned
        stack.kafka_broker.start()
    recorder = None
    try:
        stack.kafka_broker.wait()
        with service_cpu():
            for service in ("reporting", "fusion"):
                stack.start_service(service)
        for service in ("reporting", "fusion"):
            stack.wait_service(service)
        recorder = _Recorder(stack.bootstrap)
        producer = KafkaProducer(bootstrap_servers=[stack.bootstrap], acks="all")
        samples: dict[str, list[tuple[int, int, int]]] = {"cold": [], "warm": []}
        for i in range(studies + 2):  # the first two patients warm the services up and are not counted
            mrn = f"BENCH-{uuid.uuid4().hex[:10]}"
            for state, day in (("cold", "20260601"), ("warm", "20261201")):
                study, message = _findings(mrn, day)
                meta = producer.send(
                    FINDINGS_PRODUCED.topic,
                    key=study.encode(),
                    value=message.value,
                    headers=list(message.headers.items()),
                ).get(30)
                timing = _timings(stack, recorder, study, meta.timestamp)
                if i >= 2:
                    samples[state].append(timing)
        producer.close()
    finally:
        if recorder is not None:
            recorder.close()
        stack.down()
        server.shutdown()
        shutil.rmtree(run_dir, ignore_errors=True)

    def col(state: str, i: int) -> list[float]:
        return [t[i] / 1e3 for t in samples[state]]

    baseline = col("cold", 0) + col("warm", 0)
    rows = []
    for state in ("cold", "warm"):
        rows.append(row(f"findings → assessment published, EHR cache {state}", col(state, 1), baseline))
        rows.append(row(f"findings → report with the sections, EHR cache {state}", col(state, 2), baseline))
        # 0 when the assessment came first and the first report carried it: floored at 1 ms for the ratio
        added = [max(t[2] - t[0], 1) / 1e3 for t in samples[state]]
        rows.append(row(f"added by fusion after the preliminary report (t3 - t1), cache {state}", added, baseline))
    return "\n".join(
        [
            f"### fusion through the stack: {studies} patients, a cold then a warm study each (Kafka record times)",
            "",
            HEADER,
            *rows,
            f"| baseline: findings → preliminary report stored (no waiting for fusion) | "
            f"{sorted(baseline)[len(baseline) // 2] * 1e3:.1f} | | | | |",
            "",
            "t3 - t1 is floored at 1 ms: 0 means the assessment came first and the first report carried it.",
        ]
    )


if __name__ == "__main__":
    print(run(int(sys.argv[1]) if len(sys.argv) > 1 else 25))
