"""Critical results: a FHIR Communication per critical finding, acknowledgement, escalation.

ACR Practice Parameter for Communication of Diagnostic Imaging Findings: a critical result is
communicated to the ordering clinician's team in a way that makes receipt known; when receipt is
not confirmed in time it goes to another responsible clinician. Here:

- each critical Observation of a report gets one Communication (status ``in-progress``, priority
  ``stat``, ``about`` the DiagnosticReport and the Observation) to the ServiceRequest's requester
  and performers, or to the configured default recipient when the order is unknown;
- ``acknowledge`` records who confirmed receipt and when (status ``completed``, ``received``, a
  ``note`` by the acknowledging practitioner) and, the first time a critical result (its message or
  its escalation) is acknowledged, writes ``CriticalResultAcknowledged`` to the transactional outbox
  in the same transaction;
- ``escalate_overdue`` (run periodically) sends a new Communication to the escalation recipient for
  every one not acknowledged within the configured time, notes the escalation on the original and
  publishes ``CriticalResultEscalated``.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Engine, insert, or_, select, update

from radcds.adapters.db.outbox import enqueue
from radcds.domain.events import (
    CRITICAL_RESULT_ACKNOWLEDGED,
    CRITICAL_RESULT_ESCALATED,
    CriticalResultAcknowledged,
    CriticalResultEscalated,
)
from radcds_reporting.adapters.fhir import reporting as fhir_reporting
from radcds_reporting.adapters.narrative import is_critical
from radcds_reporting.adapters.repository import FhirRepository, fhir_instant
from radcds_reporting.db.tables import critical_result_alerts
from radcds_reporting.domain.ports import OutboxNotifier

log = logging.getLogger(__name__)
ESCALATION_EVENT_NAMESPACE = uuid.UUID("5f1c2d3e-4b5a-4c6d-8e7f-9a0b1c2d3e4f")
#: Namespace of the acknowledgement events' ids: one per critical result (its first acknowledgement).
ACKNOWLEDGEMENT_EVENT_NAMESPACE = uuid.UUID("9c4e1a7b-2f3d-4b8e-a6c5-1d0e7f9b3a42")
_TEAM_TYPES = ("Practitioner/", "PractitionerRole/", "CareTeam/", "Organization/")


class NotACriticalResult(LookupError):
    """The Communication is not a critical-result message of this service (HTTP 404)."""


def recipients_for(service_request: dict[str, Any] | None, default: str) -> list[dict[str, Any]]:
    """The ordering clinician's team: the order's requester and performers, else ``default``."""
    out: list[dict[str, Any]] = []
    if service_request is not None:
        refs = [service_request.get("requester", {}), *list(service_request.get("performer", []))]
        for ref in refs:
            if str(ref.get("reference", "")).startswith(_TEAM_TYPES):
                out.append({k: v for k, v in ref.items() if k in {"reference", "display"}})
    return out or [fhir_reporting.recipient_reference(default)]


def communicate(
    conn: Connection,
    *,
    dr: dict[str, Any],
    observations: list[dict[str, Any]],
    service_request: dict[str, Any] | None,
    study_instance_uid: str,
    default_recipient: str,
    now: datetime,
) -> list[str]:
    """Create the Communications of the report's critical Observations not yet communicated; return all ids."""
    repo = FhirRepository(conn)
    ids = []
    for obs in observations:
        if not is_critical(obs):
            continue
        comm = fhir_reporting.critical_communication(
            dr=dr,
            observation=obs,
            recipients=recipients_for(service_request, default_recipient),
            sent=fhir_instant(now),
        )
        ids.append(comm["id"])
        known = conn.execute(
            select(critical_result_alerts.c.communication_id).where(
                critical_result_alerts.c.communication_id == comm["id"]
            )
        ).first()
        if known is not None:
            continue
        repo.upsert(comm, study_instance_uid=study_instance_uid, now=now)
        conn.execute(
            insert(critical_result_alerts).values(
                communication_id=comm["id"],
                diagnostic_report_id=dr["id"],
                study_instance_uid=study_instance_uid,
                sent_at=now,
            )
        )
        log.info("critical result communicated", extra={"communication_id": comm["id"], "report_id": dr["id"]})
    return ids


@dataclass(frozen=True, slots=True)
class Escalation:
    """One escalation done by :meth:`CriticalResults.escalate_overdue`."""

    communication_id: str
    escalation_communication_id: str


class CriticalResults:
    """Acknowledgement and escalation of critical-result Communications."""

    def __init__(
        self,
        *,
        engine: Engine,
        ack_timeout: timedelta,
        escalation_recipient: str,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        relay: OutboxNotifier | None = None,
    ) -> None:
        self._engine = engine
        #: Publishes escalation events after the commit (the app's one relay; None: they wait in the outbox).
        self._relay = relay
        self._timeout = ack_timeout
        self._recipient = escalation_recipient
        self._clock = clock

    def acknowledge(self, *, communication_id: str, who: str) -> dict[str, Any]:
        """Record that ``who`` (a Practitioner reference) received the critical result; idempotent.

        The first acknowledgement of the critical result enqueues ``CriticalResultAcknowledged`` (event id
        UUIDv5 of its Communication id, key the Study Instance UID) with the acknowledgement; repeats publish nothing.
        """
        now = self._clock()
        with self._engine.begin() as conn:
            alert = conn.execute(
                select(critical_result_alerts).where(
                    or_(
                        critical_result_alerts.c.communication_id == communication_id,
                        critical_result_alerts.c.escalation_communication_id == communication_id,
                    )
                )
            ).first()
            repo = FhirRepository(conn)
            comm = repo.read("Communication", communication_id)
            if alert is None or comm is None:
                raise NotACriticalResult(f"Communication/{communication_id} is not a critical-result message")
            if comm["status"] == "completed":
                return comm
            comm["status"] = "completed"
            comm["received"] = fhir_instant(now)
            comm.setdefault("note", []).append(
                {
                    "authorReference": {"reference": who},
                    "time": fhir_instant(now),
                    "text": "Critical result acknowledged",
                }
            )
            stored = repo.upsert(comm, now=now)
            first = alert.acknowledged_at is None
            if first:
                conn.execute(
                    update(critical_result_alerts)
                    .where(critical_result_alerts.c.communication_id == alert.communication_id)
                    .values(acknowledged_at=now, acknowledged_by=who[:256])
                )
                if self._relay is not None:
                    event = CriticalResultAcknowledged(
                        communication_id=alert.communication_id,
                        diagnostic_report_id=alert.diagnostic_report_id,
                        study_instance_uid=alert.study_instance_uid,
                        acknowledged_by=who[:256],
                        acknowledged_at=fhir_instant(now),
                    )
                    event_id = str(uuid.uuid5(ACKNOWLEDGEMENT_EVENT_NAMESPACE, alert.communication_id))
                    enqueue(
                        conn, CRITICAL_RESULT_ACKNOWLEDGED, [(event.to_payload(), event_id, alert.study_instance_uid)]
                    )
            log.info("critical result acknowledged", extra={"communication_id": communication_id})
        if first and self._relay is not None:
            self._relay.notify()
        return stored

    def escalate_overdue(self) -> list[Escalation]:
        """Escalate every critical result not acknowledged within the timeout; return what was escalated."""
        now = self._clock()
        deadline = now - self._timeout
        done = []
        with self._engine.begin() as conn:
            overdue = conn.execute(
                select(critical_result_alerts)
                .where(
                    critical_result_alerts.c.acknowledged_at.is_(None),
                    critical_result_alerts.c.escalated_at.is_(None),
                    # sent more than the timeout after now: the clock stepped back since (NTP, a restored
                    # virtual machine); escalated now rather than hours late, once the clock is back
                    or_(
                        critical_result_alerts.c.sent_at <= deadline,
                        critical_result_alerts.c.sent_at > now + self._timeout,
                    ),
                )
                .order_by(critical_result_alerts.c.sent_at)
                .limit(100)
            ).all()
            repo = FhirRepository(conn)
            for alert in overdue:
                original = repo.read("Communication", alert.communication_id)
                if original is None:
                    continue
                recipient = fhir_reporting.recipient_reference(self._recipient)
                escalation = fhir_reporting.escalation_communication(
                    original, recipient=recipient, sent=fhir_instant(now), waited=_duration(self._timeout)
                )
                repo.upsert(escalation, study_instance_uid=alert.study_instance_uid, now=now)
                original.setdefault("note", []).append(
                    {"time": fhir_instant(now), "text": f"Not acknowledged in time; escalated ({escalation['id']})"}
                )
                repo.upsert(original, now=now)
                conn.execute(
                    update(critical_result_alerts)
                    .where(critical_result_alerts.c.communication_id == alert.communication_id)
                    .values(escalated_at=now, escalation_communication_id=escalation["id"])
                )
                event = CriticalResultEscalated(
                    communication_id=alert.communication_id,
                    escalation_communication_id=escalation["id"],
                    diagnostic_report_id=alert.diagnostic_report_id,
                    study_instance_uid=alert.study_instance_uid,
                    recipient=recipient.get("reference") or recipient["display"],
                    sent_at=fhir_instant(alert.sent_at.replace(tzinfo=alert.sent_at.tzinfo or UTC)),
                    escalated_at=fhir_instant(now),
                )
                if self._relay is not None:
                    event_id = str(uuid.uuid5(ESCALATION_EVENT_NAMESPACE, alert.communication_id))
                    enqueue(conn, CRITICAL_RESULT_ESCALATED, [(event.to_payload(), event_id, alert.study_instance_uid)])
                log.warning(
                    "critical result escalated",
                    extra={"communication_id": alert.communication_id, "escalation_id": escalation["id"]},
                )
                done.append(Escalation(alert.communication_id, escalation["id"]))
        if done and self._relay is not None:
            self._relay.notify()
        return done


def _duration(delta: timedelta) -> str:
    minutes = int(delta.total_seconds() // 60)
    return f"{minutes} minute(s)" if minutes else f"{int(delta.total_seconds())} second(s)"
