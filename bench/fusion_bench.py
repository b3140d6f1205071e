"""What fusion adds to a study: its use case per findings event (store the tracked findings, read the EHR context,
compare with priors, apply the guidelines, write the assessment and its events), in process on SQLite, with the
EHR a loopback FHIR server (canned answers, ``http.server``) read cold (no cache) and warm (cached context), and
with no EHR. Baseline, same run: reporting's handler of the same findings event (FHIR resources, DiagnosticReport,
presented form, outbox): the study path that fusion runs beside.

Run: ``.venv/bin/python bench/fusion_bench.py`` (also part of ``make bench``).
"""

from __future__ import annotations

import json
import statistics
import sys
import tempfile
import threading
import uuid
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from run import HEADER, row, timed

PATIENT = {"resourceType": "Patient", "id": "ehr-7", "gender": "male", "birthDate": "1958-03-04"}
COPD = {
    "resourceType": "Condition",
    "id": "copd",
    "code": {"coding": [{"system": "http://snomed.info/sct", "code": "13645005"}]},
    "subject": {"reference": "Patient/ehr-7"},
}


class _Ehr(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        if path.endswith("/Patient"):
            body: dict[str, Any] = {"resourceType": "Bundle", "type": "searchset", "entry": [{"resource": PATIENT}]}
        elif path.endswith("/Patient/ehr-7"):
            body = PATIENT
        elif path.endswith("/Condition"):
            body = {"resourceType": "Bundle", "type": "searchset", "entry": [{"resource": COPD}]}
        else:
            body = {"resourceType": "Bundle", "type": "searchset", "entry": []}
        data = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/fhir+json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: Any) -> None:
        pass


def _event(study_date: str = "20261201") -> Any:
    from radcds.adapters.kafka.codec import DecodedEvent
    from radcds.domain import codes
    from radcds.domain.events import FINDINGS_PRODUCED, ImagingFindingsProduced
    from radcds.domain.findings import ImageAnalysis, InstanceReference, Measurement, ModelIdentity, StudyContext

    study = "2.25." + str(uuid.uuid4().int)
    analysis = ImageAnalysis(
        instance=InstanceReference(study, study + ".1", study + ".1.1", "1.2.840.10008.5.1.4.1.1.1"),
        context=StudyContext(patient_id="MRN-7", modality="CR", study_date=study_date),
        model=ModelIdentity("chest_ctr", "1"),
        measurements=(Measurement(codes.CARDIOTHORACIC_RATIO, 0.467, codes.UNIT_RATIO),),
    )
    payload = ImagingFindingsProduced(analysis).to_payload()
    return DecodedEvent(str(uuid.uuid4()), FINDINGS_PRODUCED.type, "/bench", study, None, FINDINGS_PRODUCED, payload)


def main(repeat: int = 60) -> str:
    from fusion_stack_bench import _EhrServer  # a backlog that does not drop fusion's concurrent reads

    from radcds.adapters.db.engine import make_engine, migrate, sqlite_url
    from radcds.adapters.db.outbox import OutboxRelay
    from radcds_devstack.testing import RecordingPublisher
    from radcds_fusion.app import build_components, no_ehr_context
    from radcds_fusion.settings import FusionSettings
    from radcds_reporting.handlers import ReportingService

    server = _EhrServer(("127.0.0.1", 0), _Ehr)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    ehr = f"http://127.0.0.1:{server.server_port}/fhir"
    scratch = Path(tempfile.mkdtemp(prefix="radcds-fusion-bench-"))

    def fusion(name: str, *, ehr_url: str | None, ttl: float) -> Any:
        settings = FusionSettings(
            environment="test", data_dir=scratch / name, ehr_fhir_base_url=ehr_url, ehr_auth="none", ehr_cache_ttl_s=ttl
        )
        parts = build_components(
            settings,
            engine=make_engine(sqlite_url(scratch / name / "fusion.db")),
            publisher=RecordingPublisher(),
            context=None if ehr_url else no_ehr_context,
        )
        migrate(parts.engine, chain="radcds_fusion.db")
        return parts

    cold, warm, none = (
        fusion("cold", ehr_url=ehr, ttl=0),
        fusion("warm", ehr_url=ehr, ttl=300),
        fusion("none", ehr_url=None, ttl=0),
    )
    reporting_engine = make_engine(sqlite_url(scratch / "reporting" / "reporting.db"))
    migrate(reporting_engine, chain="radcds_reporting.db")
    reporting = ReportingService(
        engine=reporting_engine,
        relay=OutboxRelay(reporting_engine, RecordingPublisher(), name="reporting-outbox"),
        consumer_group="bench",
    )

    baseline = timed(lambda: reporting.handle(_event()), repeat=repeat)
    rows = [
        row(
            "fusion per findings event, EHR on loopback, cache cold",
            timed(lambda: cold.service.handle(_event()), repeat=repeat),
            baseline,
        ),
        row(
            "fusion per findings event, EHR on loopback, cache warm",
            timed(lambda: warm.service.handle(_event()), repeat=repeat),
            baseline,
        ),
        row("fusion per findings event, no EHR", timed(lambda: none.service.handle(_event()), repeat=repeat), baseline),
    ]
    for parts in (cold, warm, none):
        parts.stop()
    server.shutdown()
    table = "\n".join(
        [
            "### fusion: time per study beside the report path (baseline: reporting's handler of the same event)",
            "",
            HEADER,
            *rows,
            f"| baseline: reporting findings handler | {statistics.median(baseline) * 1e3:.3f} | | | | |",
        ]
    )
    print(table)
    return table


if __name__ == "__main__":
    main()
