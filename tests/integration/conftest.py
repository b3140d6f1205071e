"""Session fixtures: one real stack (Apache Kafka KRaft, Triton, PostgreSQL, the services) for all tests.

The stack starts what the session's tests are marked to need: Triton (and with it the inference service) only
when a selected test is marked ``triton``, PostgreSQL only when one is marked ``postgres`` (the services keep
SQLite files otherwise); so ``pytest -m "kafka and not triton and not postgres"`` starts Kafka and the services
alone. Ports differ from `make up`'s defaults so a developer's running stack is not disturbed.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from radcds_devstack.stack import SERVICES, LocalStack, Ports

from .helpers import HOSPITAL_MRN_SYSTEM
from .log_scan import scan
from .peers import Hapi, IntegrationEngine, run_hapi

ROOT = Path(__file__).resolve().parents[2]
#: Port of the ORU receiver the test stack's reporting service delivers to.
ORU_PEER_PORT = 22576
#: Port of the EHR the test stack's fusion reads: a loopback gateway in front of the test HAPI server that
#: test_fusion_report_flow.py runs (and can slow or stop). Elsewhere nothing listens: the EHR is down.
EHR_GATEWAY_PORT = 28092
#: The test stack fusion's EHR read timeout (its budget is twice that).
EHR_READ_TIMEOUT_S = 6.0
TEST_PORTS = Ports(
    kafka=29092,
    kafka_controller=29093,
    triton_http=28000,
    triton_grpc=28001,
    triton_metrics=28002,
    imaging=28082,
    inference=28083,
    inference_grpc=28051,
    dimse=21112,
    reporting=28085,
    reporting_mllp=22575,
    referral=28081,
    fusion=28084,
    worklist=28086,
    oidc=28090,
    postgres=25432,
)


def session_needs(session: pytest.Session, marker: str) -> bool:
    """True when a test selected in this session carries ``marker``."""
    return any(item.get_closest_marker(marker) is not None for item in session.items)


@pytest.fixture(scope="session")
def stack(request: pytest.FixtureRequest) -> Iterator[LocalStack]:
    run_dir = ROOT / ".run" / f"itest-{os.getpid()}"
    extra: dict[str, str] = {}
    for service in SERVICES:
        p = f"RADCDS_{service.upper()}_"
        extra |= {
            f"{p}ENVIRONMENT": "test",
            f"{p}CONSUMER_MAX_RETRIES": "2",
            f"{p}CONSUMER_BACKOFF_INITIAL_S": "0.05",
            f"{p}CONSUMER_BACKOFF_MAX_S": "1",
        }
    extra["RADCDS_IMAGING_STUDY_QUIET_PERIOD_S"] = "1.0"
    # The integration engine that receives ORU^R01: a python-hl7 asyncio server that
    # test_order_to_final_oru.py starts on this port (other tests leave it closed: ORUs retry).
    extra["RADCDS_REPORTING_MLLP_DESTINATIONS"] = f"127.0.0.1:{ORU_PEER_PORT}"
    extra["RADCDS_REPORTING_MLLP_OPTIONS_FILE"] = str(ROOT / "tests" / "integration" / "hl7" / "oru_destinations.toml")
    extra["RADCDS_FUSION_EHR_FHIR_BASE_URL"] = f"http://127.0.0.1:{EHR_GATEWAY_PORT}/fhir"
    extra["RADCDS_FUSION_EHR_AUTH"] = "none"  # SMART Backend Services is tested in test_fusion_ehr.py
    # Timeouts with room for HAPI on 2 busy cores (test_fusion_report_flow.py slows its gateway past them).
    extra["RADCDS_FUSION_EHR_READ_TIMEOUT_S"] = str(EHR_READ_TIMEOUT_S)
    extra["RADCDS_FUSION_EHR_BUDGET_S"] = str(2 * EHR_READ_TIMEOUT_S)
    # The MRN system of the test EHR's Patients and of those the tests send in CDS Hooks calls: fusion looks the
    # patient up in the EHR and matches order-sign by it.
    extra["RADCDS_FUSION_EHR_PATIENT_IDENTIFIER_SYSTEM"] = HOSPITAL_MRN_SYSTEM
    s = LocalStack(
        root=ROOT,
        run_dir=run_dir,
        ports=TEST_PORTS,
        postgres=session_needs(request.session, "postgres"),
        triton=session_needs(request.session, "triton"),
        extra_env=extra,
    )
    s.up()
    try:
        yield s
    finally:
        s.down()
        s.discard_postgres_data()
        leaks = scan(
            [
                run_dir / "logs" / f"{service}.log"
                for service in SERVICES
                if (run_dir / "logs" / f"{service}.log").exists()
            ]
        )
        if not os.environ.get("RADCDS_KEEP_TEST_RUN"):  # keep logs and traces to read after a failure
            shutil.rmtree(run_dir, ignore_errors=True)
    # Every log the session's stack wrote: no PHI of the fixtures, no token (log_scan.py; issue #15).
    assert leaks == [], "PHI or tokens in the stack's logs: " + ", ".join(f"{f.file}:{f.line} {f.kind}" for f in leaks)


@pytest.fixture(scope="session")
def hapi() -> Iterator[Hapi]:
    """The test EHR, HAPI FHIR JPA 8.8.0 with the test patients: started once, by the first test that needs it."""
    with run_hapi() as server:
        yield server


@pytest.fixture(scope="module")
def engine_peer() -> Iterator[IntegrationEngine]:
    """The integration engine receiving the stack's ORU^R01 on ORU_PEER_PORT, for one module at a time."""
    peer = IntegrationEngine(ORU_PEER_PORT)
    peer.start()
    yield peer
    peer.stop()
