"""Scenario 1 of the fault suite (issue #15): SIGKILL of each service a study passes through (imaging, inference,
fusion, reporting) in the middle of a stream of studies, then a restart; the count at the end finds every study's
DiagnosticReport and ORU^R01 exactly once.

What makes it hold: imaging's transactional outbox and deterministic announcement ids, the at-least-once
consumers (offsets committed after the handler) with idempotent handlers (processed-event ids), and reporting's
persisted ORU queue with a fixed MSH-10 per report version (docs/architecture.md).
"""

from __future__ import annotations

import time

import pytest

from .conftest import ORU_PEER_PORT
from .stream import Stream, count, eventually, make_studies, report_counts, restart_service, settle, sigkill

pytestmark = [pytest.mark.faults, pytest.mark.integration, pytest.mark.kafka, pytest.mark.triton, pytest.mark.postgres]

STUDIES = 24
DESTINATION = f"127.0.0.1:{ORU_PEER_PORT}"


@pytest.mark.parametrize("service", ["imaging", "inference", "fusion", "reporting"])
def test_sigkill_mid_stream_then_restart_loses_and_duplicates_no_report_or_oru(
    fault_stack, oru_peer, record_fault, service
):
    studies = make_studies(STUDIES, label=f"kill-{service}")
    started = time.monotonic()
    with Stream(fault_stack, studies) as stream:
        stream.wait_sent(STUDIES // 3)
        eventually(lambda: report_counts(fault_stack, studies), what="the first reports of the stream")
        sigkill(fault_stack, service)
        restart_service(fault_stack, service)
    stream.join()
    settle(fault_stack, oru_peer, studies, destination=DESTINATION)
    tally = count(
        f"sigkill-{service}",
        fault_stack,
        oru_peer,
        studies,
        destination=DESTINATION,
        started=started,
        stow_resends=stream.resends,
    )
    record_fault(tally)
    tally.assert_nothing_lost_or_duplicated()
