"""The fault suite's own session stack (issue #15 "Fault suite"): real Apache Kafka KRaft, PostgreSQL, Triton and
the services that carry a study to its ORU (imaging, inference, fusion, reporting), on ports 24xxx that no other
test uses, because these tests stop Kafka, PostgreSQL and Triton and kill services, which would break the
integration session's stack.

What a scenario ends with is a count (:mod:`stream`): every study's DiagnosticReport and ORU^R01, lost and
duplicated. Each scenario hands its :class:`stream.Tally` to the ``record_fault`` fixture; the terminal summary
prints one ``FAULT ...`` line per scenario (also without ``-s``) and writes them to ``.run/faults/summary.md``.

Run: ``make test-faults`` (``pytest tests/faults -m faults``), under ``flock /tmp/radcds-it.lock`` on a shared
machine. ``RADCDS_KEEP_TEST_RUN=1`` keeps the run folder (logs, traces) to read after a failure.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from radcds_devstack.stack import LocalStack, Ports

from .peer import FaultPeer
from .stream import Tally

ROOT = Path(__file__).resolve().parents[2]
#: The services a study passes on its way to an ORU (referral and worklist are not started: no CDS call and no
#: worklist in these scenarios, so no OpenID Provider either).
FAULT_SERVICES = ("imaging", "inference", "fusion", "reporting")
#: The ORU receiver (tests/faults/peer.py) the fault stack's reporting delivers to.
ORU_PEER_PORT = 24576
#: Where nothing listens: the fault stack's fusion finds its EHR down (as most integration tests do).
EHR_DOWN_PORT = 24092
FAULT_PORTS = Ports(
    kafka=24192,
    kafka_controller=24193,
    triton_http=24000,
    triton_grpc=24001,
    triton_metrics=24002,
    imaging=24082,
    inference=24083,
    inference_grpc=24051,
    dimse=24112,
    reporting=24085,
    reporting_mllp=24575,
    referral=24081,
    fusion=24084,
    worklist=24086,
    oidc=24090,
    postgres=24432,
)
SUMMARY = ROOT / ".run" / "faults" / "summary.md"
_TALLIES: list[Tally] = []


def fault_env() -> dict[str, str]:
    """The fault stack's environment: the services' own retry defaults (a fault suite measures what production
    does), a short study quiet period, ORUs to the fault peer with short ACK timeouts and backoff."""
    extra: dict[str, str] = {}
    for service in FAULT_SERVICES:
        extra[f"RADCDS_{service.upper()}_ENVIRONMENT"] = "test"
    extra["RADCDS_IMAGING_STUDY_QUIET_PERIOD_S"] = "1.0"
    extra["RADCDS_REPORTING_MLLP_DESTINATIONS"] = f"127.0.0.1:{ORU_PEER_PORT}"
    extra["RADCDS_REPORTING_MLLP_OPTIONS_FILE"] = str(Path(__file__).with_name("oru_destinations.toml"))
    extra["RADCDS_FUSION_EHR_FHIR_BASE_URL"] = f"http://127.0.0.1:{EHR_DOWN_PORT}/fhir"
    extra["RADCDS_FUSION_EHR_AUTH"] = "none"
    return extra


@pytest.fixture(scope="session")
def fault_stack() -> Iterator[LocalStack]:
    """The fault suite's stack: Kafka, PostgreSQL, Triton, imaging, inference, fusion and reporting."""
    run_dir = ROOT / ".run" / f"faults-{os.getpid()}"
    stack = LocalStack(root=ROOT, run_dir=run_dir, ports=FAULT_PORTS, postgres=True, triton=True, extra_env=fault_env())
    stack.up(services=FAULT_SERVICES)
    try:
        yield stack
    finally:
        stack.down()
        stack.discard_postgres_data()
        if not os.environ.get("RADCDS_KEEP_TEST_RUN"):
            shutil.rmtree(run_dir, ignore_errors=True)


@pytest.fixture(scope="session")
def oru_peer() -> Iterator[FaultPeer]:
    """The integration engine receiving the fault stack's ORU^R01 (answers AA unless a scenario says otherwise)."""
    peer = FaultPeer(ORU_PEER_PORT)
    peer.start()
    yield peer
    peer.stop()


@pytest.fixture
def record_fault(record_property: Callable[[str, object], None]) -> Callable[[Tally], None]:
    """Record a scenario's count: a ``record_property`` (JUnit XML) and a line of the terminal summary."""

    def record(tally: Tally) -> None:
        record_property("fault", tally.line())
        _TALLIES.append(tally)

    return record


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """One ``FAULT`` line per scenario that counted, and the same table in ``.run/faults/summary.md``."""
    if not _TALLIES:
        return
    terminalreporter.section("fault suite: end-to-end counts")
    for tally in _TALLIES:
        terminalreporter.write_line(tally.line())
    SUMMARY.parent.mkdir(parents=True, exist_ok=True)
    SUMMARY.write_text(Tally.markdown(_TALLIES))
    terminalreporter.write_line(f"(also in {SUMMARY.relative_to(ROOT)})")
