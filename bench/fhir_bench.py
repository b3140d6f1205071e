"""FHIR read and search latency of the reporting service (p50/p99) against baselines from the same run.

A populated database (SQLite in a temp folder, or ``RADCDS_BENCH_FHIR_DATABASE_URL`` for
PostgreSQL) holds ``RADCDS_BENCH_FHIR_STUDIES`` studies (default 400), each with a
DiagnosticReport, two Observations, an ImagingStudy, a Patient and Provenance, written by the real
findings handler. The reporting app runs in a real uvicorn on a free port; one keep-alive httpx
client sends requests one at a time. Baselines: the same row read with raw SQL (SQLAlchemy Core
``SELECT content ... WHERE resource_type = ? AND id = ?`` plus ``json.loads``) and ``GET /healthz``
over the same HTTP connection (the cost of uvicorn + FastAPI + the client itself).

Run: ``.venv/bin/python bench/fhir_bench.py`` (prints a markdown table).
"""

from __future__ import annotations

import json
import os
import random
import socket
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import uvicorn
from sqlalchemy import Engine, select

ROOT = Path(__file__).resolve().parents[1]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _pct(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _populate(engine: Engine, studies: int) -> list[tuple[str, str, str]]:
    """Write ``studies`` studies through the findings handler; return (report id, patient id, accession)."""
    from radcds.adapters.db.outbox import OutboxRelay
    from radcds.adapters.fhir import report
    from radcds.adapters.kafka.codec import decode, encode
    from radcds.domain import codes
    from radcds.domain.events import FINDINGS_PRODUCED, ImagingFindingsProduced
    from radcds.domain.findings import ImageAnalysis, InstanceReference, Measurement, ModelIdentity, StudyContext
    from radcds_reporting.handlers import ReportingService

    class _Discard:
        def publish(self, *args: object, **kwargs: object) -> None:
            return None

    service = ReportingService(
        engine=engine, relay=OutboxRelay(engine, _Discard(), name="reporting-outbox"), consumer_group="bench"
    )
    out = []
    for n in range(studies):
        study = f"1.2.826.0.1.3680043.2.1125.9.{n}"
        ctx = StudyContext(
            patient_id=f"PID-{n % (studies // 4 or 1)}",
            accession_number=f"ACC-{n}",
            modality="CT",
            study_date=f"2025{1 + n % 12:02d}{1 + n % 28:02d}",
            study_description="CT HEAD",
        )
        analysis = ImageAnalysis(
            InstanceReference(study, study + ".1", study + ".1.1", "1.2.840.10008.5.1.4.1.1.2"),
            ctx,
            ModelIdentity("pixel_statistics", "1"),
            measurements=(
                Measurement(codes.MEAN_PIXEL_VALUE, 40.0 + n % 7, codes.UNIT_HOUNSFIELD),
                Measurement(codes.PIXEL_VALUE_SD, 10.0, codes.UNIT_HOUNSFIELD),
            ),
        )
        msg = encode(
            FINDINGS_PRODUCED,
            ImagingFindingsProduced(analysis).to_payload(),
            event_id=f"bench-{n}",
            source="/radcds/inference",
            subject=study,
        )
        service.handle(decode(list(msg.headers.items()), None, msg.value))
        out.append((report.diagnostic_report_id(study), report.patient_id_for(ctx), ctx.accession_number))
    return out


def _measure(fn: Callable[[], object], repeat: int) -> list[float]:
    for _ in range(20):
        fn()
    samples = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - t0)
    return samples


def main() -> None:
    """Populate, serve, measure, print the table."""
    from radcds.adapters.db.engine import make_engine, migrate, sqlite_url
    from radcds_reporting.app import build_components, create_app
    from radcds_reporting.db.tables import fhir_resources
    from radcds_reporting.settings import ReportingSettings

    studies = int(os.environ.get("RADCDS_BENCH_FHIR_STUDIES", "400"))
    repeat = int(os.environ.get("RADCDS_BENCH_FHIR_REPEAT", "500"))
    with tempfile.TemporaryDirectory() as tmp:
        url = os.environ.get("RADCDS_BENCH_FHIR_DATABASE_URL") or sqlite_url(Path(tmp) / "reporting.db")
        engine = make_engine(url)
        migrate(engine, chain="radcds_reporting.db")
        t0 = time.perf_counter()
        reports = _populate(engine, studies)
        populate_s = time.perf_counter() - t0
        port = _free_port()
        settings = ReportingSettings(
            data_dir=Path(tmp), fhir_base_url=f"http://127.0.0.1:{port}/fhir", mllp_enabled=False
        )
        app = create_app(settings, components=build_components(settings, engine=engine, consume=False))
        server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        base = f"http://127.0.0.1:{port}"
        with httpx.Client(base_url=base, timeout=30) as client:
            deadline = time.monotonic() + 30
            while not server.started and time.monotonic() < deadline:
                time.sleep(0.05)
            rng = random.Random(7)

            def pick() -> tuple[str, str, str]:
                return reports[rng.randrange(len(reports))]

            def get(path: str, **params: str) -> None:
                r = client.get(path, params=params)
                if r.status_code != 200:
                    raise RuntimeError(f"{path} {params}: {r.status_code} {r.text[:200]}")

            def raw_sql() -> None:
                rid = pick()[0]
                with engine.connect() as conn:
                    row = conn.execute(
                        select(fhir_resources.c.content).where(
                            fhir_resources.c.resource_type == "DiagnosticReport", fhir_resources.c.id == rid
                        )
                    ).one()
                json.loads(row.content)

            cases: list[tuple[str, Callable[[], object]]] = [
                ("baseline: raw SQL read of the row + json.loads", raw_sql),
                ("baseline: GET /healthz (HTTP stack)", lambda: get("/healthz")),
                ("read DiagnosticReport/{id}", lambda: get(f"/fhir/DiagnosticReport/{pick()[0]}")),
                ("search DiagnosticReport?identifier=ACC", lambda: get("/fhir/DiagnosticReport", identifier=pick()[2])),
                (
                    "search DiagnosticReport?patient&status&date=ge",
                    lambda: get("/fhir/DiagnosticReport", patient=pick()[1], status="preliminary", date="ge2025-03-01"),
                ),
                (
                    "search Observation?patient&code=system\\|code&_count=10",
                    lambda: get(
                        "/fhir/Observation",
                        patient=pick()[1],
                        code="https://radcds.example.org/fhir/CodeSystem/image-measurement|mean-pixel-value",
                        _count="10",
                    ),
                ),
                (
                    "search DiagnosticReport?identifier&_include=result,subject",
                    lambda: client.get(
                        f"/fhir/DiagnosticReport?identifier={pick()[2]}"
                        "&_include=DiagnosticReport:result&_include=DiagnosticReport:subject"
                    ).raise_for_status(),
                ),
            ]
            results = [(name, _measure(fn, repeat)) for name, fn in cases]
        server.should_exit = True
        thread.join(timeout=10)
        engine.dispose()
    sql_p50 = statistics_p50(results[0][1])
    http_p50 = statistics_p50(results[1][1])
    db = "PostgreSQL" if "postgresql" in url else "SQLite"
    print(
        f"\n### FHIR read/search latency ({db}, {studies} studies, about {studies * 7} resources, populated in "
        f"{populate_s:.1f} s; {repeat} sequential requests each, one keep-alive connection)\n"
    )
    print("| operation | p50 ms | p99 ms | p50 / raw SQL | p50 / GET /healthz |")
    print("| --- | --- | --- | --- | --- |")
    for name, samples in results:
        p50, p99 = statistics_p50(samples), _pct(samples, 0.99)
        print(f"| {name} | {p50 * 1e3:.2f} | {p99 * 1e3:.2f} | {p50 / sql_p50:.1f}x | {p50 / http_p50:.1f}x |")


def statistics_p50(samples: list[float]) -> float:
    """Median of ``samples``."""
    return _pct(samples, 0.5)


if __name__ == "__main__":
    main()
