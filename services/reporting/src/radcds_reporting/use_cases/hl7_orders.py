"""Use case: an HL7 v2 order arrives over MLLP; store it as a ServiceRequest and announce it.

The MLLP listener (:class:`~radcds_reporting.adapters.hl7v2.inbound.OrderInbox`) hands each accepted
ORM^O01 / OMI^O23 (HL7 v2.5.1 4.4.1, 4.4.10; IHE RAD-2/RAD-4) to :class:`OrderStore`. In one
database transaction it records the message as received (sender MSH-3/MSH-4 and MSH-10, so a
duplicate is acknowledged again but never stored twice), creates or updates the ServiceRequest
(HL7 v2-to-FHIR ORC/OBR -> ServiceRequest) with its Patient, whose demographics (PID-3 with
its assigning authority, PID-5, PID-7, PID-8) the order sets (EHR order demographics are
authoritative), and writes an ``ImagingOrderReceived`` event (with the ServiceRequest's priority) to the
transactional outbox. A cancel (ORC-1 CA) of an order radcds does not know is refused with AE
and ERR-3 204 "Unknown key identifier" at ORC-2.
"""

from __future__ import annotations

import asyncio
import logging
import re
import uuid
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, Engine

from radcds.adapters.db.outbox import enqueue
from radcds.adapters.fhir.report import resource_id
from radcds.domain.events import ORDER_RECEIVED, ImagingOrderReceived
from radcds_reporting.adapters.fhir import reporting as fhir_reporting
from radcds_reporting.adapters.fhir.search import Criterion, TokenValue
from radcds_reporting.adapters.hl7v2.ack import ErrorCode, ErrorLocation, HL7MessageError
from radcds_reporting.adapters.hl7v2.orders import ParsedOrderMessage
from radcds_reporting.adapters.hl7v2.received import SqlReceivedMessageLog
from radcds_reporting.adapters.repository import FhirRepository, fhir_instant
from radcds_reporting.domain.orders import (
    REQUEST_PRIORITIES,
    OrderControl,
    PersonName,
    PlacedImagingOrder,
    Practitioner,
)
from radcds_reporting.domain.ports import OutboxNotifier
from radcds_reporting.domain.service_request import OrderDetails
from radcds_reporting.use_cases.orders import store_order_in

log = logging.getLogger(__name__)
#: Namespace of the order events' ids: one event per accepted message (sender + MSH-10).
ORDER_EVENT_NAMESPACE = uuid.UUID("5d0c2a7e-93b4-4f6e-8a1d-2c7b9e4f6a13")
#: FHIR R4 ``id`` (2.24.0.1): a Practitioner id taken from ORC-12 must fit it.
_FHIR_ID = re.compile(r"^[A-Za-z0-9\-.]{1,64}$")


def practitioner_reference(person: Practitioner) -> str:
    """``Practitioner/<id>`` for an XCN (ORC-12): the id itself when it is a FHIR id, else a stable digest."""
    if person.identifier and _FHIR_ID.match(person.identifier):
        return f"Practitioner/{person.identifier}"
    return f"Practitioner/{resource_id('Practitioner', person.identifier, person.name.family, person.name.given)}"


def person_display(name: PersonName) -> str:
    """``FAMILY, GIVEN MIDDLE`` (read back by :func:`radcds_reporting.use_cases.oru.person_name`)."""
    given = " ".join(p for p in (name.given, name.middle) if p)
    return f"{name.family}, {given}" if given else name.family


def order_details(order: PlacedImagingOrder) -> OrderDetails:
    """The ServiceRequest content of an HL7 v2 order (HL7 v2-to-FHIR: ORC/OBR -> ServiceRequest).

    ORC-2/ORC-3 placer and filler numbers with their namespaces, OBR-18/IPC-1 accession,
    ZDS-1/IPC-3 Study Instance UID, PID-3 identifier and its assigning authority, ORC-1 order
    control, OBR-4 procedure, ORC-12 (else OBR-16) ordering provider as ``requester``, OBR-31
    (else OBR-13) reason, ORC-9 transaction time as ``authoredOn``, TQ1-9 / ORC-7.6 / OBR-27.6 priority
    (table 0027, :func:`~radcds_reporting.domain.orders.order_priority`) as ``priority``, ``routine`` when
    the message names none (:meth:`OrderStore.store` then keeps a stored order's priority).
    """
    placer, filler = order.placer_order_number, order.filler_order_number
    provider = order.ordering_provider
    return OrderDetails(
        patient_id=order.patient.value,
        issuer_of_patient_id=order.patient.issuer,
        placer_order_number=placer.number if placer else "",
        placer_assigning_authority=placer.namespace if placer else "",
        filler_order_number=filler.number if filler else "",
        filler_assigning_authority=filler.namespace if filler else "",
        accession_number=order.accession_number,
        study_instance_uid=order.study_instance_uid,
        control=order.control,
        code=order.procedure_code,
        code_text=order.procedure_code.display if order.procedure_code else "",
        requester=practitioner_reference(provider) if provider else "",
        requester_display=person_display(provider.name) if provider and provider.name.family else "",
        authored_on=fhir_instant(order.ordered_at) if order.ordered_at else "",
        reason_text=order.reason,
        priority=order.priority or "routine",
    )


def _identifier_token(system_authority: str, value: str) -> TokenValue:
    system = f"urn:radcds:assigning-authority:{system_authority}" if system_authority else None
    return TokenValue(system, value)


def known_order(conn: Connection, details: OrderDetails) -> dict[str, Any] | None:
    """The stored ServiceRequest of this order: by id, else by placer or filler number."""
    repo = FhirRepository(conn)
    found = repo.read("ServiceRequest", fhir_reporting.service_request_id(details))
    if found is not None:
        return found
    keys = []
    if details.placer_order_number:
        keys.append(_identifier_token(details.placer_assigning_authority, details.placer_order_number))
    if details.filler_order_number:
        keys.append(_identifier_token(details.filler_assigning_authority, details.filler_order_number))
    for key in keys:
        _, hits = repo.search("ServiceRequest", criteria=[Criterion("identifier", "token", (key,))], count=1)
        if hits:
            return hits[0]
    return None


class OrderStore:
    """The reporting service's :class:`~radcds_reporting.adapters.hl7v2.inbound.OrderSink`."""

    def __init__(
        self,
        *,
        engine: Engine,
        log: SqlReceivedMessageLog,
        relay: OutboxNotifier | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._engine = engine
        self._log = log
        self._relay = relay
        self._clock = clock

    async def accept(self, message: ParsedOrderMessage) -> None:
        """Store the order (in a worker thread: the database must not block the MLLP loop)."""
        await asyncio.to_thread(self.store, message)

    def store(self, message: ParsedOrderMessage) -> dict[str, Any] | None:
        """Store one order message exactly once; returns the ServiceRequest, or None for a duplicate.

        Raises :class:`HL7MessageError` (AE 204 at ORC-2) for a cancel of an unknown order.
        """
        order = message.order
        details = order_details(order)
        header = message.header
        now = self._clock()
        with self._engine.begin() as conn:
            if not self._log.record_accepted_in(conn, sender=header.sender_key, control_id=header.control_id):
                log.info("hl7 order already stored", extra={"control_id": header.control_id})
                return None
            existing = known_order(conn, details)
            if not order.priority and existing is not None and existing.get("priority") in REQUEST_PRIORITIES:
                # A change or cancel that names no priority keeps the order's.
                details = replace(details, priority=existing["priority"])
            if order.control is OrderControl.CANCEL and existing is None:
                raise HL7MessageError(
                    ErrorCode.UNKNOWN_KEY_IDENTIFIER,
                    "cancel of an order that is not known",
                    location=ErrorLocation("ORC", 2),
                )
            if existing is not None and existing["id"] != fhir_reporting.service_request_id(details):
                # The same order under another key (e.g. a cancel that names only the filler number).
                stored = FhirRepository(conn).upsert({**existing, "status": details.status}, now=now)
            else:
                stored = store_order_in(conn, order=details, demographics=order.demographics, now=now)
            event = ImagingOrderReceived(
                service_request_id=stored["id"],
                status=stored["status"],
                order_control=order.control.value,
                placer_order_number=details.placer_order_number,
                placer_assigning_authority=details.placer_assigning_authority,
                filler_order_number=details.filler_order_number,
                filler_assigning_authority=details.filler_assigning_authority,
                accession_number=details.accession_number,
                study_instance_uid=details.study_instance_uid,
                patient_id=str(stored.get("subject", {}).get("reference", "")).removeprefix("Patient/"),
                procedure_code=details.code,
                priority=stored.get("priority", ""),
            )
            event_id = str(uuid.uuid5(ORDER_EVENT_NAMESPACE, f"{header.sender_key}|{header.control_id}"))
            enqueue(conn, ORDER_RECEIVED, [(event.to_payload(), event_id, stored["id"])])
        if self._relay is not None:
            self._relay.notify()
        log.info("order stored", extra={"service_request_id": stored["id"], **order.log_fields()})
        return stored
