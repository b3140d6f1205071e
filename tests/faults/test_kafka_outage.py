"""Scenario 2 of the fault suite (issue #15): the Kafka broker restarted in the middle of a stream, and Kafka
unreachable for longer than the consumers' session timeout (``session_timeout_ms=10_000`` in
radcds.adapters.kafka.consumer.build_consumer: the group coordinator then drops every member, and the consumers
rejoin and resume from their committed offsets). No report and no ORU^R01 may be lost or duplicated.

While the broker is away, imaging keeps accepting studies (its transactional outbox holds their events) and the
producers' sends wait for the broker (``max_block_ms``/``request_timeout_ms``)."""

from __future__ import annotations

import time

import pytest

from .stream import mid_stream, stopped

pytestmark = [pytest.mark.faults, pytest.mark.integration, pytest.mark.kafka, pytest.mark.triton, pytest.mark.postgres]

#: The consumers' session timeout (radcds.adapters.kafka.consumer.build_consumer), in seconds.
SESSION_TIMEOUT_S = 10.0


def test_kafka_broker_restart_mid_stream_loses_and_duplicates_no_report_or_oru(fault_stack, run_fault):
    def fault(stream, studies) -> None:  # type: ignore[no-untyped-def]
        mid_stream(fault_stack, stream, studies)
        with stopped(fault_stack, "kafka"):
            pass  # stopped, then started again on the same data: a broker restart

    run_fault("kafka-restart", fault).assert_nothing_lost_or_duplicated()


def test_kafka_unreachable_past_the_session_timeout_loses_and_duplicates_no_report_or_oru(fault_stack, run_fault):
    def fault(stream, studies) -> None:  # type: ignore[no-untyped-def]
        mid_stream(fault_stack, stream, studies)
        with stopped(fault_stack, "kafka"):
            time.sleep(1.5 * SESSION_TIMEOUT_S)  # the outage (a fault's length, not an assertion)

    run_fault("kafka-down-past-session-timeout", fault).assert_nothing_lost_or_duplicated()
