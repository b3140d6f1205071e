"""Use case: store an imaging order as a FHIR ServiceRequest (HL7 v2-to-FHIR ORC/OBR -> ServiceRequest).

The HL7 v2 listener (ORM^O01 NW/XO/CA, OMI^O23) builds an
:class:`~radcds_reporting.domain.service_request.OrderDetails` and calls :func:`store_order`. The
ServiceRequest is keyed by the placer order number (else filler, else accession), so a change
(XO) or cancel (CA) of the same order updates it (status ``revoked`` on cancel) and keeps the
history. Reports that follow find it by accession number (``DiagnosticReport.basedOn``).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Engine

from radcds.adapters.fhir import report
from radcds.domain.findings import StudyContext
from radcds_reporting.adapters.fhir import reporting as fhir_reporting
from radcds_reporting.adapters.fhir.search import Criterion, TokenValue
from radcds_reporting.adapters.repository import FhirRepository
from radcds_reporting.domain.orders import PatientDemographics
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
