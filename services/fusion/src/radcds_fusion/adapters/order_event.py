"""referral's consultation events (``imaging-order-evaluated.v1``) as the signed imaging orders that may close a
follow-up recommendation.

Only ``order-sign`` is an order (CDS Hooks 2.0 hook catalogue: ``order-sign`` fires when the clinician is ready to
sign; ``order-select`` fires while a draft is being chosen and edited, and the draft may still change or be dropped).
An order rated ``not-appropriate`` came with a card that suggests removing or replacing it, so whether it was signed
as it stands is unknown: it closes nothing, and the HL7 v2 order or the study that follows does. Only CPT codings
count: the recommendations' order codes are CPT (``RequestedProcedure.codes``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Any

from radcds.adapters.fhir.datatypes import parse_date
from radcds_fusion.adapters.fhir import CPT
from radcds_fusion.domain.recommendations import EhrPatient

ORDER_SIGN = "order-sign"
#: The rating whose card asks the clinician to remove or replace the order (docs/referral.md, Responses).
NOT_APPROPRIATE = "not-appropriate"


@dataclass(frozen=True, slots=True)
class SignedImagingOrder:
    """A draft imaging order the clinician was about to sign (CDS Hooks ``order-sign``), as fusion matches it."""

    order_id: str  # the EHR's draft ServiceRequest id
    patient: EhrPatient
    codes: tuple[str, ...]  # CPT codes of ServiceRequest.code
    signed_on: date

    @property
    def reference(self) -> str:
        """What a closed recommendation names as the order that fulfilled it."""
        return f"ServiceRequest/{self.order_id}"


def signed_order(payload: dict[str, Any], *, today: date) -> SignedImagingOrder | None:
    """The signed order of an ``imaging-order-evaluated.v1`` payload; ``None`` when it is no order that can close a
    recommendation (``order-select``, rated ``not-appropriate``, no CPT code)."""
    if payload.get("hook") != ORDER_SIGN or payload.get("rating") == NOT_APPROPRIATE:
        return None
    codes = tuple(c["code"] for c in payload.get("orderCodes", []) if c.get("system") == CPT and c.get("code"))
    if not codes:
        return None
    identifiers = frozenset((i["system"], i["value"]) for i in payload.get("patientIdentifiers", []))
    return SignedImagingOrder(
        order_id=payload["orderId"],
        patient=EhrPatient(payload["patientId"], identifiers),
        codes=codes,
        signed_on=parse_date(payload.get("evaluatedAt")) or today,
    )
