"""The EHR's FHIR server down and hanging (issue #15 "Fault suite"): fusion degrades, reports still go out.

Fusion reads the patient's context from the EHR (docs/fusion.md, "EHR context"); the fault stack points it at
``EHR_DOWN_PORT``. Down: nothing listens there (connection refused), as in every other scenario of the suite.
Hanging: a TCP server accepts every connection and never answers, so each read waits for fusion's read timeout
(``RADCDS_FUSION_EHR_READ_TIMEOUT_S``, 3 s by default). Either way fusion logs the source it could not read,
the assessment names what is missing, and every study still gets its one DiagnosticReport and one ORU^R01."""

from __future__ import annotations

import pytest

from .conftest import EHR_DOWN_PORT
from .edges import BlackHole, log_entries
from .stream import mid_stream

pytestmark = [pytest.mark.faults, pytest.mark.integration, pytest.mark.kafka, pytest.mark.triton, pytest.mark.postgres]


def _ehr_warnings(fault_stack) -> int:  # type: ignore[no-untyped-def]
    return sum(1 for e in log_entries(fault_stack, "fusion") if str(e.get("message", "")).startswith("EHR source"))


def test_ehr_down_reports_and_orus_still_go_out_once_each(fault_stack, run_fault):
    before = _ehr_warnings(fault_stack)

    def fault(stream, studies) -> None:  # type: ignore[no-untyped-def]
        mid_stream(fault_stack, stream, studies)

    run_fault("ehr-down", fault, studies=8).assert_nothing_lost_or_duplicated()
    assert _ehr_warnings(fault_stack) > before  # fusion tried the EHR and said it could not read it


def test_ehr_hanging_past_the_read_timeout_reports_and_orus_still_go_out_once_each(fault_stack, run_fault):
    before = _ehr_warnings(fault_stack)
    with BlackHole("127.0.0.1", EHR_DOWN_PORT) as hole:

        def fault(stream, studies) -> None:  # type: ignore[no-untyped-def]
            mid_stream(fault_stack, stream, studies)

        tally = run_fault("ehr-hanging", fault, studies=8)
        accepted = hole.accepted
    tally.assert_nothing_lost_or_duplicated()
    assert accepted > 0  # fusion did connect to the hanging EHR
    assert _ehr_warnings(fault_stack) > before
