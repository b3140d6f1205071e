"""Imaging orders as the RIS/EHR places them (pure; no HL7 syntax).

A :class:`PlacedImagingOrder` is what radcds keeps from an HL7 v2.5.1 ORM^O01 (chapter 4.4.1) or
OMI^O23 (chapter 4.4.10, IHE RAD TF-2 RAD-4 "Procedure Scheduled") message: the order control
(ORC-1, HL7 table 0119), the placer and filler order numbers (ORC-2/ORC-3), the DICOM keys the
modality worklist carries (Accession Number (0008,0050), Requested Procedure ID (0040,1001),
Scheduled Procedure Step ID (0040,0009), Study Instance UID (0020,000D), Modality (0008,0060),
Scheduled Station AE Title (0040,0001)) and the patient it concerns.

The patient's demographics (PID-5 name, PID-7 birth date, PID-8 sex) are personal data: they
are stored on the FHIR Patient, and excluded from ``repr`` and from
:meth:`PlacedImagingOrder.log_fields`, so they never reach a log line.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum

from radcds.domain.codes import Coding

#: DICOM PS3.5 6.2 UI: digits and dots, components without leading zeros, at most 64 characters.
_UID = re.compile(r"^(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*))+$")
#: DICOM PS3.5 6.2 CS for Modality (0008,0060): upper-case letters, digits, space and underscore.
_MODALITY = re.compile(r"^[A-Z0-9_]{1,16}$")


class InvalidOrderError(ValueError):
    """An order attribute is missing or malformed; ``attribute`` names the :class:`PlacedImagingOrder` field.

    Adapters map ``attribute`` back to where it came from (an HL7 segment and field) to say
    which field was wrong (HL7 v2.5.1 2.15.5 ERR-2).
    """

    def __init__(self, attribute: str, message: str) -> None:
        super().__init__(f"{attribute}: {message}")
        self.attribute = attribute
        self.reason = message


class OrderControl(StrEnum):
    """ORC-1 order control codes radcds accepts and stores (HL7 v2.5.1 table 0119).

    The HL7 v2 order (:class:`PlacedImagingOrder`) carries it, and so does the stored order
    (:class:`radcds_reporting.domain.service_request.OrderDetails`): a cancel (CA) makes the ServiceRequest ``revoked``.
    """

    NEW = "NW"
    CANCEL = "CA"
    CHANGE = "XO"


#: FHIR R4 request-priority codes (ServiceRequest.priority), most to least urgent: stat, asap, urgent, routine.
REQUEST_PRIORITIES = ("routine", "urgent", "asap", "stat")
#: HL7 v2.5.1 table 0027 "Priority" (TQ1-9, TQ.6 of ORC-7 / OBR-27) -> FHIR request-priority.
TABLE_0027_PRIORITY = {"S": "stat", "A": "asap", "R": "routine", "P": "routine", "C": "routine", "T": "routine"}


def order_priority(table_0027_code: str) -> str:
    """The FHIR request-priority of an HL7 table 0027 priority, ``""`` when none is given.

    S (stat) -> ``stat``, A (ASAP) -> ``asap``, R (routine) -> ``routine``. P (pre-op), C (callback) and
    T (timing critical) say *when* or *how* the result is wanted, not that it is more urgent, and FHIR has
    no such codes: they are ``routine``. So is any other value (table 0027 is user-defined; PRN, site codes):
    an order is never refused for its priority. Table 0027 has no code for FHIR ``urgent``.
    """
    code = table_0027_code.strip().upper()
    if not code:
        return ""
    return TABLE_0027_PRIORITY.get(code, "routine")


@dataclass(frozen=True, slots=True)
class OrderNumber:
    """An entity identifier (HL7 EI): the number and the namespace/application that assigned it."""

    number: str
    namespace: str = ""

    def __post_init__(self) -> None:
        if not self.number.strip():
            raise ValueError("an order number cannot be empty")


@dataclass(frozen=True, slots=True)
class PatientIdentifier:
    """The patient id and its assigning authority (PID-3 CX.1 and CX.4; DICOM (0010,0020)/(0010,0021))."""

    value: str
    issuer: str = ""

    def __post_init__(self) -> None:
        if not self.value.strip():
            raise ValueError("a patient identifier cannot be empty")


@dataclass(frozen=True, slots=True)
class PersonName:
    """A person's name (HL7 XPN/XCN family^given^middle). Personal data: never log it."""

    family: str
    given: str = ""
    middle: str = ""

    def __repr__(self) -> str:
        return "PersonName(<redacted>)"


#: HL7 v2.5.1 table 0001 "Administrative Sex" (PID-8).
ADMINISTRATIVE_SEX = frozenset({"F", "M", "O", "U", "A", "N"})


@dataclass(frozen=True, slots=True)
class PatientDemographics:
    """Who an order is for, as the EHR sent it (PID-3 with CX.4, PID-5, PID-7, PID-8). Personal data.

    EHR order demographics are authoritative: the order path creates or updates the FHIR
    Patient with them. ``birth_date`` is ``YYYYMMDD`` (PID-7 to day precision; ``YYYY`` or
    ``YYYYMM`` when only that was sent); ``sex`` is an HL7 table 0001 code or empty.
    """

    identifier: PatientIdentifier
    name: PersonName | None = None
    birth_date: str = ""
    sex: str = ""

    def __post_init__(self) -> None:
        if self.birth_date and not (len(self.birth_date) in (4, 6, 8) and self.birth_date.isdigit()):
            raise InvalidOrderError("patient_birth_date", "birth date must be YYYY[MM[DD]]")
        if self.sex and self.sex not in ADMINISTRATIVE_SEX:
            raise InvalidOrderError("patient_sex", "not an HL7 table 0001 administrative sex code")

    def __repr__(self) -> str:
        return "PatientDemographics(<redacted>)"


@dataclass(frozen=True, slots=True)
class Practitioner:
    """A clinician by id and name (HL7 XCN, e.g. ORC-12 ordering provider, OBR-32 interpreter)."""

    identifier: str
    name: PersonName = field(default_factory=lambda: PersonName(""))

    def __post_init__(self) -> None:
        if not self.identifier.strip() and not self.name.family.strip():
            raise ValueError("a practitioner needs an identifier or a family name")


@dataclass(frozen=True, slots=True)
class PlacedImagingOrder:
    """One imaging order or an update to it as the placer sent it (HL7 v2 ORC + OBR; ORC-1 NW, CA or XO).

    Not the order being drafted in the EHR that CDS Hooks evaluates: that is
    :class:`radcds_referral.domain.appropriateness.DraftImagingOrder`.

    Validation follows the DICOM value representations of the worklist attributes the order
    feeds (PS3.5 6.2): accession number and requested procedure/step ids are SH/16, the
    Study Instance UID is a UI, the AE title an AE/16 without backslash or control characters.
    A new order (NW) must name the procedure; a cancel (CA) only needs to identify the order.
    """

    control: OrderControl
    patient: PatientIdentifier
    placer_order_number: OrderNumber | None = None
    filler_order_number: OrderNumber | None = None
    accession_number: str = ""
    requested_procedure_id: str = ""
    scheduled_procedure_step_id: str = ""
    study_instance_uid: str = ""
    procedure_code: Coding | None = None
    modality: str = ""
    scheduled_station_ae_title: str = ""
    patient_name: PersonName | None = field(default=None, repr=False, compare=False)
    #: PID-7 (``YYYY[MM[DD]]``) and PID-8 (table 0001); personal data, never logged.
    patient_birth_date: str = field(default="", repr=False, compare=False)
    patient_sex: str = field(default="", repr=False, compare=False)
    ordering_provider: Practitioner | None = None
    reason: str = ""
    ordered_at: datetime | None = None
    scheduled_at: datetime | None = None
    #: FHIR request-priority (:func:`order_priority`); ``""`` when the message names none.
    priority: str = ""

    def __post_init__(self) -> None:
        if self.priority and self.priority not in REQUEST_PRIORITIES:
            raise InvalidOrderError("priority", "not a FHIR request-priority (routine, urgent, asap, stat)")
        if self.placer_order_number is None and self.filler_order_number is None:
            raise InvalidOrderError("placer_order_number", "an order needs a placer or a filler order number")
        _ = self.demographics  # validates birth date and sex
        for name in ("accession_number", "requested_procedure_id", "scheduled_procedure_step_id"):
            value: str = getattr(self, name)
            if len(value) > 16:
                raise InvalidOrderError(name, "longer than 16 characters (DICOM SH)")
            if "\\" in value or any(ord(c) < 0x20 for c in value):
                raise InvalidOrderError(name, "contains a backslash or a control character")
        uid = self.study_instance_uid
        if uid and (len(uid) > 64 or not _UID.match(uid)):
            raise InvalidOrderError("study_instance_uid", "not a DICOM UID (PS3.5 9.1)")
        if self.modality and not _MODALITY.match(self.modality):
            raise InvalidOrderError("modality", "not a DICOM modality code (PS3.3 C.7.3.1.1.1)")
        ae = self.scheduled_station_ae_title
        if ae and (len(ae) > 16 or not ae.strip() or "\\" in ae or any(ord(c) < 0x20 for c in ae)):
            raise InvalidOrderError("scheduled_station_ae_title", "not a DICOM AE title (PS3.5 6.2 AE)")
        if self.control is OrderControl.NEW and self.procedure_code is None:
            raise InvalidOrderError("procedure_code", "a new order must name the requested procedure")
        for name in ("ordered_at", "scheduled_at"):
            moment: datetime | None = getattr(self, name)
            if moment is not None and moment.tzinfo is None:
                raise InvalidOrderError(name, "a timestamp needs a UTC offset")

    @property
    def demographics(self) -> PatientDemographics:
        """The patient as the order describes them (PID-3, PID-5, PID-7, PID-8)."""
        return PatientDemographics(self.patient, self.patient_name, self.patient_birth_date, self.patient_sex)

    @property
    def order_key(self) -> str:
        """The key that ties messages about one order together: the placer number, else the filler number."""
        number = self.placer_order_number or self.filler_order_number
        assert number is not None  # guaranteed by __post_init__
        return f"{number.namespace}|{number.number}"

    def log_fields(self) -> dict[str, str]:
        """Fields safe to log: the order control and a digest of the order key.

        Order and accession numbers identify a patient's episode (HIPAA "any other unique
        identifying number"), so only a one-way digest of the order key is logged.
        """
        digest = hashlib.sha256(self.order_key.encode("utf-8")).hexdigest()[:16]
        return {"order_control": self.control.value, "order_key_digest": digest}
