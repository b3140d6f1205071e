"""Stopping Triton mid-stream loses no study: events wait unacknowledged, nothing is dead-lettered,
and the backlog drains once Triton is back (circuit breaker, RetryableError, at-least-once consumer).

Uses the session stack's own Triton (radcds_devstack.stack.LocalStack): stops it, sends studies,
starts it again. Studies: the real head CT slice 693_UNCI.dcm (pydicom-data) with fresh UIDs.
"""

from __future__ import annotations

import pytest

from radcds.domain.events import EVENT_KINDS, FINDINGS_PRODUCED, STUDY_AVAILABLE, dead_letter_topic
from radcds_devstack import processes
from radcds_devstack.demo import stow, wait_for_event
from radcds_devstack.samples import head_ct, part10
from radcds_imaging.domain.assembly import announcement_event_id

from .helpers import eventually, read_topic

pytestmark = [pytest.mark.integration, pytest.mark.kafka, pytest.mark.triton, pytest.mark.postgres]


def _subjects(stack, topic: str) -> set[str]:
    return {dict(r.headers).get("ce_subject", b"").decode() for r in read_topic(stack, topic, idle_ms=1500)}


def test_studies_sent_while_triton_is_down_are_analysed_after_it_returns_and_none_is_dead_lettered(stack):
    studies = [head_ct() for _ in range(3)]
    uids = {ds.StudyInstanceUID for ds in studies}
    processes.stop("triton", stack.run_dir)
    try:
        for ds in studies:
            stow(stack, [part10(ds)])
        for ds in studies:  # announced while Triton is down: inference receives them and must wait
            wait_for_event(stack, STUDY_AVAILABLE.topic, announcement_event_id(ds.StudyInstanceUID, 1), timeout_s=60)

        def retried_while_down() -> bool:
            import httpx

            text = httpx.get(f"http://{stack.host}:{stack.ports.inference}/metrics", timeout=5).text
            return any(
                line.startswith("radcds_events_consumed_total")
                and 'outcome="retry"' in line
                and STUDY_AVAILABLE.topic in line
                for line in text.splitlines()
            )

        eventually(retried_while_down, timeout_s=60, what="inference retrying the study while Triton is down")
        assert not uids & _subjects(stack, FINDINGS_PRODUCED.topic)
    finally:
        stack.triton_server.start()
        stack.triton_server.wait(timeout_s=180)

    eventually(
        lambda: uids <= _subjects(stack, FINDINGS_PRODUCED.topic),
        timeout_s=240,
        interval_s=2,
        what="findings for every study sent during the outage",
    )
    for kind in EVENT_KINDS.values():
        assert not uids & _subjects(stack, dead_letter_topic(kind.topic)), f"dead-lettered on {kind.topic}"
