"""Scenario 6 of the fault suite (issue #15): slowed and cut connections between services, with Toxiproxy on
loopback (tests/faults/toxiproxy.py): reporting's MLLP connection to the integration engine, and inference's gRPC
connection to Triton. Each gets a ``latency`` toxic, then ``reset_peer`` (connections reset, TCP RST), then
``timeout`` (data stops, the connection is closed after a while) while a stream flows; no report and no ORU^R01 is
lost or duplicated.

Kafka is not proxied (see tests/faults/toxiproxy.py: its clients follow the advertised listeners)."""

from __future__ import annotations

import time

import pytest

from .stream import mid_stream

pytestmark = [pytest.mark.faults, pytest.mark.integration, pytest.mark.kafka, pytest.mark.triton, pytest.mark.postgres]

STUDIES = 16


@pytest.mark.parametrize(
    ("proxy", "latency_ms"),
    [("oru", 500), ("triton", 200)],
)
def test_latency_then_reset_then_timeout_between_services_loses_and_duplicates_nothing(
    fault_stack, toxiproxy, run_fault, proxy, latency_ms
):
    def fault(stream, studies) -> None:  # type: ignore[no-untyped-def]
        with toxiproxy.toxic(proxy, "latency", latency=latency_ms, jitter=latency_ms // 5):
            mid_stream(fault_stack, stream, studies)
        with toxiproxy.toxic(proxy, "reset_peer", stream="upstream", timeout=0):
            time.sleep(4)  # the fault's length, not an assertion
        with toxiproxy.toxic(proxy, "timeout", stream="upstream", timeout=3000):
            time.sleep(6)

    run_fault(f"toxiproxy-{proxy}", fault, studies=STUDIES).assert_nothing_lost_or_duplicated()
