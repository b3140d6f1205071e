"""Use case: store an imaging order as a FHIR ServiceRequest (HL7 v2-to-FHIR ORC/OBR -> ServiceRequest).

The HL7 v2 listener (ORM^O01 NW/XO/CA, OMI^O23) builds an
:class:`~radcds_reporting.domain.service_request.OrderDetails` and calls :func:`store_order`. The
ServiceRequest is keyed by the placer order number (else filler, else accession), so a change
(XO) or cancel (CA) of the same order updates it (status ``revoked`` on cancel) and keeps the
history. Reports that follow find it by accession number (``DiagnosticReport.basedOn``).

A FHIR ``PUT ServiceRequest/{id}`` (FHIR R4 3.1.0.4 update) re-prioritises a stored order
(:class:`OrderUpdates`): only ``priority`` (request-priority routine | urgent | asap | stat) may change.
A change writes a new version and, in the same transaction, an ``ImagingOrderReceived`` event (order
control XO, the new priority) to the transactional outbox, so the worklist re-sorts.
"""

from __future__ import annotations

import copy
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, Engine

from radcds.adapters.db.outbox import enqueue
from radcds.adapters.fhir import report
from radcds.domain.events import ORDER_RECEIVED
from radcds.domain.findings import StudyContext
from radcds_reporting.adapters.fhir import reporting as fhir_reporting
from radcds_reporting.adapters.fhir.search import Criterion, TokenValue
from radcds_reporting.adapters.repository import FhirRepository, VersionConflict
from radcds_reporting.domain.orders import REQUEST_PRIORITIES, OrderControl, PatientDemographics
from radcds_reporting.domain.ports import OutboxNotifier
from radcds_reporting.domain.service_request import OrderDetails


def store_order(
    *,
    engine: Engine,
    order: OrderDetails,
    demographics: PatientDemographics | None = None,
    now: datetime | None = None,
) -> dict[str, Any]:
    """Create or update the order's ServiceRequest (and its Patient); return the stored ServiceRequest."""
    with engine.begin() as conn:
        return store_order_in(conn, order=order, demographics=demographics, now=now)


def store_order_in(
    conn: Connection,
    *,
    order: OrderDetails,
    demographics: PatientDemographics | None = None,
    now: datetime | None = None,
) -> dict[str, Any]:
    """:func:`store_order` inside the caller's transaction (for callers that also record idempotency).

    With ``demographics`` (an HL7 v2 order's PID) the Patient is created or updated with them:
    EHR order demographics are authoritative (:func:`radcds_reporting.adapters.fhir.reporting.order_patient`).
    Without, a missing Patient is created with the identifier only.
    """
    repo = FhirRepository(conn)
    context = StudyContext(patient_id=order.patient_id, issuer_of_patient_id=order.issuer_of_patient_id)
    patient = report.patient(context)
    existing = repo.read("Patient", patient["id"])
    if demographics is not None:
        repo.upsert(fhir_reporting.order_patient(demographics, existing), now=now)  # no new version if unchanged
    elif existing is None:
        repo.upsert(patient, now=now)
    sr = fhir_reporting.service_request(order, patient_reference=f"Patient/{patient['id']}")
    return repo.upsert(sr, study_instance_uid=order.study_instance_uid, now=now)


def find_order(conn: Connection, *, accession_number: str, study_instance_uid: str) -> dict[str, Any] | None:
    """The ServiceRequest with this accession number (else with this Study Instance UID), newest first."""
    repo = FhirRepository(conn)
    keys = []
    if accession_number:
        keys.append(TokenValue(None, accession_number))
    if study_instance_uid:
        keys.append(TokenValue("urn:dicom:uid", f"urn:oid:{study_instance_uid}"))
    for key in keys:
        _, found = repo.search("ServiceRequest", criteria=[Criterion("identifier", "token", (key,))], count=5)
        active = [sr for sr in found if sr.get("status") != "revoked"] or found
        if active:
            return active[0]
    return None


#: Namespace of the ids of the events a FHIR update writes: one per (ServiceRequest, version).
ORDER_UPDATE_EVENT_NAMESPACE = uuid.UUID("0b6f3c55-8f0e-4d7a-9a44-6e1f2d8c7b20")
#: What a client may change in a stored ServiceRequest; ``meta`` and ``text`` are the server's.
UPDATABLE = frozenset({"priority"})


class OrderNotFound(LookupError):
    """No ServiceRequest with that id (HTTP 404; an update never creates one: ``updateCreate`` false)."""


class InvalidOrderChange(ValueError):
    """The PUT body is not this ServiceRequest, or changes more than its priority (HTTP 422)."""


class OrderUpdates:
    """FHIR R4 update of a stored ServiceRequest: its priority (request-priority), nothing else."""

    def __init__(
        self,
        *,
        engine: Engine,
        relay: OutboxNotifier | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._engine = engine
        self._relay = relay
        self._clock = clock

    def update(
        self, *, service_request_id: str, resource: dict[str, Any], if_match: str | None = None
    ) -> tuple[dict[str, Any], bool]:
        """Store the new priority; return (stored ServiceRequest, whether a new version was written).

        Raises :class:`OrderNotFound`, :class:`InvalidOrderChange`, and
        :class:`~radcds_reporting.adapters.repository.VersionConflict` when ``If-Match`` names an older version.
        """
        with self._engine.begin() as conn:
            repo = FhirRepository(conn)
            current = repo.read("ServiceRequest", service_request_id)
            if current is None:
                raise OrderNotFound(f"ServiceRequest/{service_request_id} is not known")
            if if_match is not None and current.get("meta", {}).get("versionId") != if_match:
                raise VersionConflict(f"ServiceRequest/{service_request_id} is not at version {if_match}")
            if resource.get("resourceType") != "ServiceRequest" or resource.get("id") != service_request_id:
                raise InvalidOrderChange("the body must be this ServiceRequest (resourceType and id)")
            priority = resource.get("priority")
            if priority not in REQUEST_PRIORITIES:
                raise InvalidOrderChange(f"priority must be one of {', '.join(REQUEST_PRIORITIES)} (request-priority)")
            changed = sorted(
                key
                for key in (set(resource) | set(current)) - UPDATABLE - {"meta", "text"}
                if resource.get(key) != current.get(key)
            )
            if changed:
                raise InvalidOrderChange(f"only priority of a ServiceRequest can change, not {', '.join(changed)}")
            if priority == current.get("priority"):
                return current, False
            new = copy.deepcopy(current)
            new["priority"] = priority
            new.pop("meta", None)
            stored = repo.upsert(new, if_match=if_match, now=self._clock())
            event = fhir_reporting.order_received_event(stored, order_control=OrderControl.CHANGE.value)
            event_id = str(uuid.uuid5(ORDER_UPDATE_EVENT_NAMESPACE, f"{stored['id']}|{stored['meta']['versionId']}"))
            enqueue(conn, ORDER_RECEIVED, [(event.to_payload(), event_id, stored["id"])])
        if self._relay is not None:
            self._relay.notify()
        return stored, True
