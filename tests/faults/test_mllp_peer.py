"""Scenario 5 of the fault suite (issue #15): the integration engine that receives ORU^R01 down, then slow, then
answering AE, then AR, each in the middle of its own stream (HL7 v2.5.1 2.9 original acknowledgement mode,
2.10.1 sequence and resends; reporting's delivery worker in radcds_reporting.adapters.hl7v2.outbound).

The rule the count applies (tests/faults/stream.py): every ORU reporting queued is accepted (AA) by the peer
exactly once as a report, or parked after an AE (the peer refused its content: an operator must act) and counted
as ``parked``, not lost. A message the peer answered AA to after the sender had given up waiting comes again with
the same MSH-10: an allowed resend (``resent``), not a duplicate report. AR and connection errors are retried with
the same MSH-10 until accepted.
"""

from __future__ import annotations

from collections import Counter

import pytest

from .conftest import ORU_DESTINATION
from .stream import eventually, mid_stream, queued_orus

pytestmark = [pytest.mark.faults, pytest.mark.integration, pytest.mark.kafka, pytest.mark.triton, pytest.mark.postgres]

#: The sender's ACK timeout for the fault peer (oru_destinations.toml).
ACK_TIMEOUT_S = 2.0
STUDIES = 12


def _accessions(studies) -> set[str]:  # type: ignore[no-untyped-def]
    return {s.accession for s in studies}


def test_oru_peer_down_mid_stream_then_back_gets_every_oru_once(fault_stack, oru_peer, run_fault):
    def fault(stream, studies) -> None:  # type: ignore[no-untyped-def]
        oru_peer.stop()
        try:
            mid_stream(fault_stack, stream, studies)
            eventually(
                lambda: any(
                    q.state == "retrying" and q.accession in _accessions(studies)
                    for q in queued_orus(fault_stack, ORU_DESTINATION)
                ),
                what="an ORU retrying while the peer is down",
            )
        finally:
            oru_peer.start()

    run_fault("mllp-peer-down", fault, studies=STUDIES).assert_nothing_lost_or_duplicated()


def test_oru_peer_slower_than_the_ack_timeout_then_normal_gets_every_oru_once(oru_peer, fault_stack, run_fault):
    def fault(stream, studies) -> None:  # type: ignore[no-untyped-def]
        oru_peer.behave(delay_s=3 * ACK_TIMEOUT_S)
        try:
            mid_stream(fault_stack, stream, studies)

            def resent() -> bool:  # the same MSH-10 received twice: the sender gave up waiting and resent it
                ids = Counter(r.control_id for r in oru_peer.receipts(_accessions(studies)))
                return any(n > 1 for n in ids.values())

            eventually(resent, what="a resend after an ACK timeout")
        finally:
            oru_peer.behave()

    tally = run_fault("mllp-peer-slow", fault, studies=STUDIES)
    tally.assert_nothing_lost_or_duplicated()
    assert tally.resent > 0, tally.line()


@pytest.mark.parametrize("ack", ["AE", "AR"])
def test_oru_peer_answering_an_error_then_aa_loses_and_duplicates_no_oru(oru_peer, fault_stack, run_fault, ack):
    def fault(stream, studies) -> None:  # type: ignore[no-untyped-def]
        oru_peer.behave(ack=ack)
        try:
            mid_stream(fault_stack, stream, studies)
            eventually(
                lambda: any(r.answered == ack for r in oru_peer.receipts(_accessions(studies))),
                what=f"the peer answering {ack}",
            )
        finally:
            oru_peer.behave()

    tally = run_fault(f"mllp-peer-{ack.lower()}", fault, studies=STUDIES)
    tally.assert_nothing_lost_or_duplicated()
    if ack == "AE":  # refused content is parked for an operator, never resent
        assert tally.parked > 0, tally.line()
    else:  # rejected (AR) messages are resent until accepted: none parked
        assert tally.parked == 0, tally.line()
