"""The worklist page with 5,000 studies, in headless Chromium (Debian's, driven by playwright), against a static
page of the same size served by the same server in the same run; and how soon a new study shows in an open page
after its report.

Setup: a fresh SQLite worklist database with 5,000 studies (20 critical, 5 % STAT, each with one AI
finding), the worklist app in uvicorn in a process of its own on loopback (bench/worklist_app.py: development
sign-in, no Kafka: the bench hands events to the worklist's handler on the same database, as the consumer
would), one signed-in Chromium page.

1. First screen: ``page.goto`` of the list (its first screen of rows, most urgent first, out of 5,000) until the
   ``load`` event (wall clock), and the browser's own navigation timing to DOMContentLoaded; 40 loads.
   Baseline: the same HTML, saved once, served as a static response by the same server.
2. Live: with the list open, a new study arrives (study available: routine, so below the first screen), then its
   report with a critical result communicated; the time from the report's handling until the study's row is in
   the open page, at the top (SSE, then the rows fragment); 20 studies.
   Baseline: the same wait done by reloading the page (what a list without live updates would need).

Nothing here asserts a time.
"""

from __future__ import annotations

import os
import random
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from run import ROOT, load_cpu, service_cpu

STUDIES = 5_000
LOADS = 40
LIVE = 20


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _seed(engine: Any) -> None:
    from sqlalchemy import insert

    from radcds_worklist.db.tables import worklist_findings, worklist_studies

    rng = random.Random(13)
    now = datetime.now(UTC)
    studies, findings = [], []
    for i in range(STUDIES):
        uid = f"1.2.826.0.1.3680043.10.13.{i}"
        critical = i % 250 == 0
        received = now - timedelta(minutes=rng.randrange(1, 3000))
        studies.append(
            {
                "study_uid": uid,
                "accession_number": f"ACC{i:06d}",
                "patient_id": f"MRN{i:07d}",
                "patient_name": f"Patient^{i}",
                "modality": "CT" if i % 2 else "CR",
                "body_part": "HEAD" if i % 2 else "CHEST",
                "study_description": "CT HEAD WO" if i % 2 else "XR CHEST PA",
                "study_date": now.strftime("%Y%m%d"),
                "received_at": received,
                "order_priority": "stat" if i % 20 == 5 else "routine",
                "report_id": f"dr-{i}",
                "report_status": "preliminary",
                "report_version": "1",
                "results_interpreter": "",
                "critical": critical,
                "critical_since": received + timedelta(minutes=1) if critical else None,
                "critical_state": "notified" if critical else "",
                "updated_at": now,
            }
        )
        findings.append(
            {
                "finding_id": f"f-{i}",
                "study_uid": uid,
                "series_uid": uid + ".1",
                "sop_instance_uid": uid + ".1.1",
                "model_name": "head_ct_hyperdensity" if i % 2 else "chest_ctr",
                "model_version": "1",
                "critical": critical,
                "not_analysed_reason": "",
                "data": {"findings": [{"code": "1386000", "display": "Intracranial hemorrhage"}] if critical else []},
                "produced_at": received,
            }
        )
    with engine.begin() as conn:
        conn.execute(insert(worklist_studies), studies)
        conn.execute(insert(worklist_findings), findings)


def _percentile(samples: list[float], q: float) -> float:
    return sorted(samples)[min(len(samples) - 1, int(q * (len(samples) - 1) + 0.5))]


def _row(name: str, samples: list[float], baseline: list[float]) -> str:
    med, base = statistics.median(samples), statistics.median(baseline)
    return (
        f"| {name} | {med * 1e3:.0f} | {_percentile(samples, 0.95) * 1e3:.0f} | {base * 1e3:.0f} | "
        f"{_percentile(baseline, 0.95) * 1e3:.0f} | {med / base:.2f}x |"
    )


def run() -> str:
    """Both measurements; a markdown table."""
    import httpx
    from playwright.sync_api import sync_playwright

    from radcds.adapters.db.engine import make_engine, migrate
    from radcds.adapters.kafka.codec import decode, encode
    from radcds.domain.events import REPORT_STORED, STUDY_AVAILABLE, DiagnosticReportStored
    from radcds_worklist.app import MIGRATION_CHAIN
    from radcds_worklist.handlers import WorklistService
    from radcds_worklist.settings import WorklistSettings

    scratch = Path(tempfile.mkdtemp(prefix="radcds-worklist-bench-"))
    port = _free_port()
    settings = WorklistSettings(
        environment="test",
        auth_mode="development",
        database_url=f"sqlite:///{scratch / 'worklist.db'}",
        public_base_url=f"http://127.0.0.1:{port}",
        imaging_dicomweb_url="http://127.0.0.1:9/dicom-web",
        model_manifest=ROOT / "models" / "manifest.json",
    )
    engine = make_engine(settings.resolved_database_url())
    migrate(engine, chain=MIGRATION_CHAIN)
    _seed(engine)
    static_file = scratch / "static.html"
    with service_cpu():  # the worklist on the service CPU; Chromium (started below) on the other
        server = subprocess.Popen(
            [sys.executable, str(ROOT / "bench" / "worklist_app.py"), settings.resolved_database_url(), str(port),
             str(static_file)],
        )  # fmt: skip
    service = WorklistService(engine=engine, consumer_group="bench")
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            if httpx.get(base + "/healthz", timeout=2).status_code == 200:
                break
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline or server.poll() is not None:
            raise RuntimeError("the worklist did not start")
        time.sleep(0.2)

    def kafka_event(kind: Any, payload: dict[str, Any], event_id: str, subject: str) -> Any:
        message = encode(kind, payload, event_id=event_id, source="/bench", subject=subject)
        return decode(list(message.headers.items()), None, message.value)

    try:
        with load_cpu(), sync_playwright() as p:
            browser = p.chromium.launch(
                executable_path="/usr/bin/chromium", args=["--headless", "--no-sandbox", "--disable-gpu"]
            )
            context = browser.new_context(viewport={"width": 1600, "height": 1000})
            page = context.new_page()
            page.goto(base + "/login")
            page.locator("form", has=page.locator('input[name=login][value="dr-ada"]')).locator("button").click()
            page.wait_for_url(base + "/")
            cookies = {c["name"]: c["value"] for c in context.cookies()}
            page_html = httpx.get(base + "/", cookies=cookies).content
            static_file.write_bytes(page_html)
            size = len(page_html)

            def load(path: str) -> tuple[float, float]:
                t0 = time.perf_counter()
                page.goto(base + path, wait_until="load")
                elapsed = time.perf_counter() - t0
                dcl = page.evaluate("() => performance.getEntriesByType('navigation')[0].domContentLoadedEventEnd")
                return elapsed, float(dcl) / 1e3

            for _ in range(3):
                load("/")
                load("/bench/static")
            dynamic, baseline, dynamic_fcp, baseline_fcp = [], [], [], []
            for _ in range(LOADS):
                d = load("/")
                b = load("/bench/static")
                dynamic.append(d[0])
                baseline.append(b[0])
                dynamic_fcp.append(d[1])
                baseline_fcp.append(b[1])
            rows = len(re.findall(rb"<tr data-study=", page_html))

            # live: a new critical study's report, handled in process, until its row is in the open page
            page.goto(base + "/")
            live, reload = [], []
            for i in range(LIVE):
                uid = f"1.2.826.0.1.3680043.10.14.{i}"
                study = {
                    "studyInstanceUid": uid,
                    "version": 1,
                    "isUpdate": False,
                    "numberOfInstances": 1,
                    "imagingStudy": {"resourceType": "ImagingStudy", "id": f"is-{i}", "status": "available",
                                     "subject": {"reference": "Patient/bench"}, "modality": [{"code": "CT"}]},
                }  # fmt: skip
                service.handle(kafka_event(STUDY_AVAILABLE, study, f"s-{uid}", uid))
                report = DiagnosticReportStored(
                    f"dr-live-{i}", uid, "preliminary", (), version_id="1", critical=True, communication_ids=(f"c-{i}",)
                )
                t0 = time.perf_counter()
                service.handle(kafka_event(REPORT_STORED, report.to_payload(), f"r-{uid}", uid))
                page.wait_for_selector(f'#rows tr[data-study="{uid}"]', timeout=30_000)
                live.append(time.perf_counter() - t0)
                t0 = time.perf_counter()
                page.goto(base + "/", wait_until="load")
                page.wait_for_selector(f'#rows tr[data-study="{uid}"]', timeout=30_000)
                reload.append(time.perf_counter() - t0)
            browser.close()
    finally:
        server.terminate()
        server.wait(timeout=20)
    header = (
        f"worklist: {STUDIES:,} studies, first screen of {rows} rows ({size / 1024:.0f} KiB of HTML), headless Chromium"
        " on loopback\n\n"
        "| benchmark | median ms | p95 ms | baseline median ms | baseline p95 ms | ratio (radcds / baseline) |\n"
        "| --- | --- | --- | --- | --- | --- |"
    )
    return "\n".join(
        [
            header,
            _row("worklist page to load event (vs the same HTML served static)", dynamic, baseline),
            _row("worklist page DOMContentLoaded, browser's navigation timing (vs static)", dynamic_fcp, baseline_fcp),
            _row("new study's row in the open page after its report (vs a reload)", live, reload),
        ]
    )


def main() -> int:
    print(run())
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT / "bench"))
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
