"""Scenario 3 of the fault suite (issue #15): Triton stopped in the middle of a stream and started again. Studies
announced meanwhile wait in inference's consumer (Triton unavailable is a RetryableError: retried with backoff,
never dead-lettered) and are analysed once Triton serves again; no report and no ORU^R01 is lost or duplicated."""

from __future__ import annotations

import pytest

from .stream import mid_stream, stopped

pytestmark = [pytest.mark.faults, pytest.mark.integration, pytest.mark.kafka, pytest.mark.triton, pytest.mark.postgres]


def test_triton_stopped_mid_stream_and_restarted_loses_and_duplicates_no_report_or_oru(fault_stack, run_fault):
    def fault(stream, studies) -> None:  # type: ignore[no-untyped-def]
        mid_stream(fault_stack, stream, studies)
        with stopped(fault_stack, "triton"):
            stream.wait_sent(2 * len(studies) // 3)  # a third of the stream arrives while Triton is down

    run_fault("triton-restart", fault).assert_nothing_lost_or_duplicated()
