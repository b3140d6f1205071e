"""An imaging order as the reporting service stores it: a FHIR R4 ServiceRequest (section 12.14).

:class:`OrderDetails` is what an order message carries (HL7 v2 ORC/OBR of ORM^O01 or OMI^O23,
or a CDS Hooks draft order), reduced to the fields a ServiceRequest needs. The HL7 v2 layer
builds it; the reporting service stores it with ``store_order``.
"""

from __future__ import annotations

from dataclasses import dataclass

from radcds.domain.codes import Coding
from radcds_reporting.domain.orders import REQUEST_PRIORITIES, OrderControl


@dataclass(frozen=True, slots=True)
class OrderDetails:
    """One imaging order (HL7 v2 ORC + OBR, v2-to-FHIR ORC/OBR -> ServiceRequest).

    At least one of ``placer_order_number``, ``filler_order_number`` or ``accession_number``
    must be given: the ServiceRequest is keyed by the first one present.
    """

    patient_id: str
    placer_order_number: str = ""  # ORC-2 / OBR-2 (EI.1)
    placer_assigning_authority: str = ""  # ORC-2 EI.2 namespace, the identifier system
    filler_order_number: str = ""  # ORC-3 / OBR-3
    filler_assigning_authority: str = ""
    accession_number: str = ""  # OBR-18 / IPC-1 (DICOM Accession Number)
    study_instance_uid: str = ""  # ZDS-1 or IPC-3
    issuer_of_patient_id: str = ""  # PID-3 CX.4
    control: OrderControl = OrderControl.NEW
    code: Coding | None = None  # OBR-4 universal service identifier
    code_text: str = ""
    #: FHIR reference of the ordering provider (ORC-12), e.g. "Practitioner/123".
    requester: str = ""
    requester_display: str = ""
    #: FHIR references of the care team to notify (e.g. "CareTeam/ed-team", "PractitionerRole/7").
    performers: tuple[str, ...] = ()
    encounter: str = ""  # "Encounter/..." (PV1-19 visit number)
    authored_on: str = ""  # FHIR dateTime (ORC-9)
    priority: str = "routine"  # FHIR request-priority: routine | urgent | asap | stat
    reason_text: str = ""  # OBR-31

    def __post_init__(self) -> None:
        if not self.patient_id:
            raise ValueError("an order needs the patient's identifier")
        if not (self.placer_order_number or self.filler_order_number or self.accession_number):
            raise ValueError("an order needs a placer order number, a filler order number or an accession number")
        if self.priority not in REQUEST_PRIORITIES:
            raise ValueError(f"priority {self.priority!r} is not a FHIR request-priority")

    @property
    def status(self) -> str:
        """FHIR ServiceRequest.status: ``revoked`` for a cancelled order, else ``active``."""
        return "revoked" if self.control is OrderControl.CANCEL else "active"
