"""Scenario 9 of the fault suite (issue #15): the wall clock of the services' host jumps 400 days forward in the
middle of a stream (tests/faults/clock.py: libfaketime under running processes; Kafka and PostgreSQL keep the
true time).

What must hold afterwards:

- the count: every study's DiagnosticReport and ORU^R01 exactly once (no event refused for its timestamp, no
  idempotency record taken for expired, no ORU retry lost);
- recommendations: a Fleischner follow-up proposed before the jump (due within 12 months) is ``overdue`` at
  fusion's FHIR API (R4 ServiceRequest, ``status`` active with the ``overdue`` tag), not closed or cancelled;
- escalations: a critical result left unacknowledged is escalated once (ACR Practice Parameter for Communication
  of Diagnostic Imaging Findings), however many escalation checks run after the jump;
- JWT expiry (CDS Hooks 2.0 "Trusting CDS Clients", RFC 7519 4.1.4): a CDS Client token issued by the EHR just
  before the jump has expired for referral; a token issued at the new time is accepted.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import httpx
import pytest

from radcds.adapters.fhir.report import patient_id_for
from radcds.domain.findings import StudyContext
from radcds_devstack import processes, scenarios
from radcds_devstack.demo import event_trail, stow
from radcds_devstack.samples import chest_ct, head_ct_with_hyperdense_disc, nodule_measurement_sr, part10
from radcds_devstack.stack import LocalStack

from .clock import JumpingClock
from .conftest import FAULT_SERVICES
from .edges import cds_client_token, eventually
from .stream import mid_stream

pytestmark = [pytest.mark.faults, pytest.mark.integration, pytest.mark.kafka, pytest.mark.triton, pytest.mark.postgres]

JUMP_S = 400 * 86400
#: The step back of the second scenario (NTP stepping a fast clock back, a VM restored from a snapshot).
STEP_BACK_S = 2 * 3600
#: The services whose host clock jumps (referral is started for the JWT check and stopped afterwards).
JUMPED = (*FAULT_SERVICES, "referral")
ORDER_SIGN = "radcds-imaging-order-sign"
T = TypeVar("T")


def _restart(stack: LocalStack, services: tuple[str, ...]) -> None:
    for service in services:
        processes.stop(service, stack.run_dir)
        stack.start_service(service)
    for service in services:
        stack.wait_service(service, timeout_s=120)


@pytest.fixture(scope="module")
def clock(fault_stack: LocalStack) -> Iterator[JumpingClock]:
    """The fault stack's services restarted on a clock that can jump (short sweep intervals, so that the
    overdue and escalation checks run several times after the jump); afterwards they are restarted on the
    true clock and referral is stopped."""
    jumping = JumpingClock(fault_stack.run_dir)
    saved = dict(fault_stack.extra_env)
    fault_stack.extra_env.update(jumping.env())
    fault_stack.extra_env["RADCDS_FUSION_OVERDUE_SWEEP_INTERVAL_S"] = "2"
    fault_stack.extra_env["RADCDS_REPORTING_CRITICAL_CHECK_INTERVAL_S"] = "2"
    fault_stack.extra_env["RADCDS_REFERRAL_ENVIRONMENT"] = "test"
    _restart(fault_stack, JUMPED)
    try:
        yield jumping
    finally:
        fault_stack.extra_env.clear()
        fault_stack.extra_env.update(saved)
        processes.stop("referral", fault_stack.run_dir)
        _restart(fault_stack, FAULT_SERVICES)


def _subject(patient_id: str, ds: Any) -> str:
    return patient_id_for(StudyContext(patient_id=patient_id, issuer_of_patient_id=ds.get("IssuerOfPatientID", "")))


def _fusion_recommendations(stack: LocalStack, subject: str) -> list[dict[str, Any]]:
    base = f"http://{stack.host}:{stack.ports.fusion}/fhir"
    bundle = httpx.get(f"{base}/ServiceRequest", params={"patient": f"Patient/{subject}"}, timeout=10).json()
    return [e["resource"] for e in bundle.get("entry", [])]


def _communications(stack: LocalStack, subject: str) -> list[dict[str, Any]]:
    base = f"http://{stack.host}:{stack.ports.reporting}/fhir"
    bundle = httpx.get(f"{base}/Communication", params={"patient": f"Patient/{subject}"}, timeout=10).json()
    return [e["resource"] for e in bundle.get("entry", [])]


def _tags(resource: dict[str, Any]) -> set[str]:
    return {t.get("code", "") for t in resource.get("meta", {}).get("tag", [])}


def _diagnosed(stack: LocalStack, study_uid: str, wait: Callable[[], T]) -> T:
    """``wait()``; when it fails, the failure names the events of the study on Kafka (which service stopped)."""
    try:
        return wait()
    except AssertionError as exc:
        trail = event_trail(stack, study_uid, until_types={"(all)"}, timeout_s=15, partial=True)
        seen = [f"{e['topic']}: {e['type']}{' (' + e['error'] + ')' if 'error' in e else ''}" for e in trail]
        raise AssertionError(f"{exc}; the study's events on Kafka: {seen or 'none'}") from exc


def _order_sign(stack: LocalStack, token: str) -> httpx.Response:
    url = f"http://{stack.host}:{stack.ports.referral}/cds-services/{ORDER_SIGN}"
    call = scenarios.low_risk_minor_head_injury()
    call["hookInstance"] = str(uuid.uuid4())
    return httpx.post(url, json=call, headers={"Authorization": f"Bearer {token}"}, timeout=30)


def test_clock_jumped_400_days_mid_stream_loses_nothing_and_recommendations_escalations_and_jwts_follow(
    fault_stack, run_fault, clock
):
    stack = fault_stack
    # Before the jump: a measured 8 mm solid nodule (a Fleischner follow-up within 12 months) and a critical
    # head CT nobody acknowledges.
    nodule_patient = f"CLK-{uuid.uuid4().hex[:8]}"
    ct = chest_ct(patient_id=nodule_patient, study_date=time.strftime("%Y%m%d", time.gmtime()))
    stow(stack, [part10(nodule_measurement_sr(ct, long_axis_mm=8.2, short_axis_mm=7.8))])
    critical, _ = head_ct_with_hyperdense_disc()
    critical.PatientID = critical_patient = f"CLK-{uuid.uuid4().hex[:8]}"
    stow(stack, [part10(critical)])
    nodule_subject, critical_subject = _subject(nodule_patient, ct), _subject(critical_patient, critical)
    (rec,) = _diagnosed(
        stack,
        ct.StudyInstanceUID,
        lambda: eventually(lambda: _fusion_recommendations(stack, nodule_subject), timeout_s=180, what="the follow-up"),
    )
    assert rec["status"] == "active" and "overdue" not in _tags(rec)
    (alert,) = _diagnosed(
        stack,
        critical.StudyInstanceUID,
        lambda: eventually(lambda: _communications(stack, critical_subject), timeout_s=180, what="the alert"),
    )
    assert alert["status"] == "in-progress"
    url = f"http://{stack.host}:{stack.ports.referral}/cds-services/{ORDER_SIGN}"
    assert _order_sign(stack, cds_client_token(stack, url)).status_code == 200
    issued_before = cds_client_token(stack, url)  # unused until after the jump (a jti is accepted once)

    def fault(stream, studies) -> None:  # type: ignore[no-untyped-def]
        mid_stream(stack, stream, studies)
        clock.set(JUMP_S)

    tally = run_fault("clock-jump-400d", fault)
    tally.assert_nothing_lost_or_duplicated()

    # The overdue sweep ran (every 2 s) on the new date: the follow-up is overdue, still open.
    def overdue() -> dict[str, Any] | None:
        (now,) = _fusion_recommendations(stack, nodule_subject)
        return now if "overdue" in _tags(now) else None

    rec_after = eventually(overdue, timeout_s=60, what="the follow-up marked overdue")
    assert rec_after["id"] == rec["id"] and rec_after["status"] == "active"

    # The escalation check ran (every 2 s): the alert is escalated once, however often it ran since.
    eventually(lambda: len(_communications(stack, critical_subject)) >= 2, timeout_s=60, what="the escalation")
    time.sleep(6)  # three more escalation checks (a fault's length, not a timing assertion)
    communications = _communications(stack, critical_subject)
    assert len(communications) == 2, [c.get("status") for c in communications]
    escalation = next(c for c in communications if c["id"] != alert["id"])
    assert [ref["reference"] for ref in escalation.get("partOf", [])] == [f"Communication/{alert['id']}"]

    # JWT expiry on the new clock: the token issued 5 minutes before is long expired; a fresh one is accepted.
    expired = _order_sign(stack, issued_before)
    assert expired.status_code == 401, expired.text
    fresh = cds_client_token(stack, url, issued_at=time.time() + JUMP_S)
    assert _order_sign(stack, fresh).status_code == 200


def test_clock_stepped_back_two_hours_mid_stream_loses_nothing_and_no_study_waits_for_the_clock(
    fault_stack, run_fault, clock
):
    """Scenario 10: the services' wall clock steps back 2 hours mid-stream (NTP stepping a fast clock back, a
    virtual machine restored from a snapshot), from wherever the scenario before left it. Rows written before the
    step carry times the clock reaches again only 2 hours later: the studies stored just before the step must
    still be announced after their quiet period, their events relayed and their ORUs sent, so every study's
    DiagnosticReport and ORU^R01 arrives exactly once within the fault suite's settle time (4 minutes)."""
    before = clock.offset_s

    def fault(stream, studies) -> None:  # type: ignore[no-untyped-def]
        mid_stream(fault_stack, stream, studies)
        clock.set(before - STEP_BACK_S)

    tally = run_fault("clock-step-back-2h", fault)
    tally.assert_nothing_lost_or_duplicated()
