"""Scenario 1 of the fault suite (issue #15): SIGKILL of each service a study passes through (imaging, inference,
fusion, reporting) in the middle of a stream of studies, then a restart; the count at the end finds every study's
DiagnosticReport and ORU^R01 exactly once.

What makes it hold: imaging's transactional outbox and deterministic announcement ids, the at-least-once
consumers (offsets committed after the handler) with idempotent handlers (processed-event ids), and reporting's
persisted ORU queue with a fixed MSH-10 per report version (docs/architecture.md).
"""

from __future__ import annotations

import pytest

from .stream import mid_stream, restart_service, sigkill

pytestmark = [pytest.mark.faults, pytest.mark.integration, pytest.mark.kafka, pytest.mark.triton, pytest.mark.postgres]


@pytest.mark.parametrize("service", ["imaging", "inference", "fusion", "reporting"])
def test_sigkill_mid_stream_then_restart_loses_and_duplicates_no_report_or_oru(fault_stack, run_fault, service):
    def fault(stream, studies) -> None:  # type: ignore[no-untyped-def]
        mid_stream(fault_stack, stream, studies)
        sigkill(fault_stack, service)
        restart_service(fault_stack, service)

    run_fault(f"sigkill-{service}", fault).assert_nothing_lost_or_duplicated()
