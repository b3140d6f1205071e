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

import json
import os
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from radcds_devstack.stack import LocalStack, Ports

from .peer import FaultPeer
from .stream import Stream, Study, Tally, count, make_studies, settle
from .toxiproxy import Toxiproxy

ROOT = Path(__file__).resolve().parents[2]
#: The services a study passes on its way to an ORU (referral and worklist are not started: no CDS call and no
#: worklist in these scenarios, so no OpenID Provider either).
FAULT_SERVICES = ("imaging", "inference", "fusion", "reporting")
#: The ORU receiver (tests/faults/peer.py), behind toxiproxy's ``oru`` proxy on ORU_PROXY_PORT, where the fault
#: stack's reporting delivers (its MLLP destination, ``127.0.0.1:24577``, names the proxy).
ORU_PEER_PORT = 24576
ORU_PROXY_PORT = 24577
ORU_DESTINATION = f"127.0.0.1:{ORU_PROXY_PORT}"
#: Toxiproxy's API, and its ``triton`` proxy in front of Triton's gRPC port (inference's TRITON_URL).
TOXIPROXY_PORT = 24474
TRITON_PROXY_PORT = 24003
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
    does), a short study quiet period, ORUs to the fault peer with short ACK timeouts and backoff, and the ORU and
    Triton connections through toxiproxy."""
    extra: dict[str, str] = {}
    for service in FAULT_SERVICES:
        extra[f"RADCDS_{service.upper()}_ENVIRONMENT"] = "test"
    extra["RADCDS_IMAGING_STUDY_QUIET_PERIOD_S"] = "1.0"
    extra["RADCDS_REPORTING_MLLP_DESTINATIONS"] = ORU_DESTINATION
    extra["RADCDS_INFERENCE_TRITON_URL"] = f"127.0.0.1:{TRITON_PROXY_PORT}"
    extra["RADCDS_REPORTING_MLLP_OPTIONS_FILE"] = str(Path(__file__).with_name("oru_destinations.toml"))
    extra["RADCDS_FUSION_EHR_FHIR_BASE_URL"] = f"http://127.0.0.1:{EHR_DOWN_PORT}/fhir"
    extra["RADCDS_FUSION_EHR_AUTH"] = "none"
    return extra


@pytest.fixture(scope="session")
def fault_run_dir() -> Iterator[Path]:
    """The session's run folder (logs, pids, data), removed after the session (kept with RADCDS_KEEP_TEST_RUN)."""
    run_dir = ROOT / ".run" / f"faults-{os.getpid()}"
    yield run_dir
    if not os.environ.get("RADCDS_KEEP_TEST_RUN"):
        shutil.rmtree(run_dir, ignore_errors=True)


@pytest.fixture(scope="session")
def toxiproxy(fault_run_dir: Path) -> Iterator[Toxiproxy]:
    """Toxiproxy with its ``oru`` (reporting -> ORU peer) and ``triton`` (inference -> Triton gRPC) proxies."""
    proxy = Toxiproxy(fault_run_dir, "127.0.0.1", TOXIPROXY_PORT)
    proxy.start()
    try:
        proxy.proxy("oru", listen=ORU_PROXY_PORT, upstream=ORU_PEER_PORT)
        proxy.proxy("triton", listen=TRITON_PROXY_PORT, upstream=FAULT_PORTS.triton_grpc)
        yield proxy
    finally:
        proxy.stop()


@pytest.fixture(scope="session")
def fault_stack(fault_run_dir: Path, toxiproxy: Toxiproxy) -> Iterator[LocalStack]:
    """The fault suite's stack: Kafka, PostgreSQL, Triton, imaging, inference, fusion and reporting (and toxiproxy
    in front of Triton's gRPC and the ORU peer)."""
    stack = LocalStack(
        root=ROOT, run_dir=fault_run_dir, ports=FAULT_PORTS, postgres=True, triton=True, extra_env=fault_env()
    )
    stack.up(services=FAULT_SERVICES)
    try:
        yield stack
    finally:
        stack.down()
        stack.discard_postgres_data()


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


@pytest.fixture
def run_fault(
    fault_stack: LocalStack, oru_peer: FaultPeer, record_fault: Callable[[Tally], None]
) -> Callable[..., Tally]:
    """Run a scenario: a stream of new studies with ``fault(stream, studies)`` applied while it flows, then wait
    for the stack to settle and count end to end; the count is recorded (the caller asserts on it)."""

    def run(
        scenario: str,
        fault: Callable[[Stream, list[Study]], None],
        *,
        studies: int = 24,
        chest_every: int = 5,
        interval_s: float = 0.3,
        settle_timeout_s: float = 240.0,
    ) -> Tally:
        batch = make_studies(studies, label=scenario, chest_every=chest_every)
        started = time.monotonic()
        with Stream(fault_stack, batch, interval_s=interval_s) as stream:
            fault(stream, batch)
        stream.join()
        settle(fault_stack, oru_peer, batch, destination=ORU_DESTINATION, timeout_s=settle_timeout_s)
        tally = count(
            scenario,
            fault_stack,
            oru_peer,
            batch,
            destination=ORU_DESTINATION,
            started=started,
            stow_resends=stream.resends,
            order_resends=stream.order_resends,
        )
        record_fault(tally)
        return tally

    return run


#: How much of each service's log a failed scenario's report carries (CI keeps no run folder).
_LOG_TAIL_LINES = 12
_SLOW_TASK = "It is blocking the event loop"


def _log_digest(log: Path) -> str:
    """The last warnings and errors of a service's JSON log, and its last lines (logger and message only)."""
    lines = log.read_text(errors="replace").splitlines()

    def short(line: str) -> str:
        try:
            record = json.loads(line)
        except ValueError:
            return line[:300]
        extra = {
            k: v
            for k, v in record.items()
            if k not in {"time", "level", "service", "logger", "message", "color_message"}
        }
        return (
            f"{record.get('time', '')} {record.get('level', '')} {record.get('logger', '')}: "
            + (f"{record.get('message', '')} {json.dumps(extra, default=str)[:200] if extra else ''}")[:300]
        )

    warnings = [line for line in lines if '"level": "WARNING"' in line or '"level": "ERROR"' in line]
    # kafka-python's selector warns of every slow task (a loaded machine): counted, not listed.
    slow = [line for line in warnings if _SLOW_TASK in line]
    warnings = [line for line in warnings if _SLOW_TASK not in line]
    return "\n".join(
        [f"-- warnings and errors ({len(warnings)}, and {len(slow)} of kafka-python's slow tasks), the last:"]
        + [short(line) for line in warnings[-_LOG_TAIL_LINES:]]
        + [f"-- the last {_LOG_TAIL_LINES} lines of {len(lines)}:"]
        + [short(line) for line in lines[-_LOG_TAIL_LINES:]]
    )


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """A failed scenario's report carries the tail of each service's log: CI removes the run folder, and the
    failure alone seldom says which service stopped carrying the study."""
    outcome = yield
    report = outcome.get_result()  # type: ignore[attr-defined]
    if report.when != "call" or not report.failed:
        return
    logs = ROOT / ".run" / f"faults-{os.getpid()}" / "logs"
    for log in sorted(logs.glob("*.log")) if logs.is_dir() else []:
        if log.stem in {"kafka", "postgres", "toxiproxy"}:
            continue
        report.sections.append((f"{log.stem} log", _log_digest(log)))


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
