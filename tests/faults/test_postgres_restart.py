"""Scenario 4 of the fault suite (issue #15): the PostgreSQL server holding every service's database restarted in
the middle of a stream. STOW-RS answered with an error meanwhile is sent again by the stream (as a modality
would); consumers whose handler met the database away retry the record; no report and no ORU^R01 is lost or
duplicated."""

from __future__ import annotations

import time

import pytest

from .stream import mid_stream, stopped

pytestmark = [pytest.mark.faults, pytest.mark.integration, pytest.mark.kafka, pytest.mark.triton, pytest.mark.postgres]


def test_postgres_restart_mid_stream_loses_and_duplicates_no_report_or_oru(fault_stack, run_fault):
    def fault(stream, studies) -> None:  # type: ignore[no-untyped-def]
        mid_stream(fault_stack, stream, studies)
        with stopped(fault_stack, "postgres"):
            time.sleep(3)  # the outage (a fault's length, not an assertion)

    run_fault("postgres-restart", fault).assert_nothing_lost_or_duplicated()
