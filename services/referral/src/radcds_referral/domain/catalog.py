"""The CDS Services this server offers (CDS Hooks 2.0 "Discovery")."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

#: Prefetch templates (CDS Hooks 2.0 "Prefetch Template"): what our rules read.
ORDER_PREFETCH = {
    "patient": "Patient/{{context.patientId}}",
    "conditions": "Condition?patient={{context.patientId}}&clinical-status=active",
    "observations": "Observation?patient={{context.patientId}}&_sort=-date&_count=200",
    "allergies": "AllergyIntolerance?patient={{context.patientId}}",
}
PATIENT_VIEW_PREFETCH = {
    "patient": "Patient/{{context.patientId}}",
    "conditions": "Condition?patient={{context.patientId}}&clinical-status=active",
    "observations": "Observation?patient={{context.patientId}}&_sort=-date&_count=200",
    "serviceRequests": "ServiceRequest?patient={{context.patientId}}&_count=100",
    "imagingStudies": "ImagingStudy?patient={{context.patientId}}&_count=100",
}


@dataclass(frozen=True, slots=True)
class CdsService:
    """One CDS Service: hook, id, texts and prefetch templates."""

    id: str
    hook: str
    title: str
    description: str
    prefetch: dict[str, str] = field(default_factory=dict)
    usage_requirements: str = ""

    def discovery(self) -> dict[str, Any]:
        """The service's entry in ``GET /cds-services`` (optional fields omitted when empty)."""
        entry: dict[str, Any] = {"hook": self.hook, "title": self.title, "description": self.description, "id": self.id}
        if self.prefetch:
            entry["prefetch"] = dict(self.prefetch)
        if self.usage_requirements:
            entry["usageRequirements"] = self.usage_requirements
        return entry


USAGE = (
    "Sends a Bearer JWT (ES384 or RS384) from a trusted issuer. Works best with every prefetch key "
    "filled; otherwise needs fhirServer and fhirAuthorization to query the missing data."
)

SERVICES: tuple[CdsService, ...] = (
    CdsService(
        id="radcds-imaging-order-select",
        hook="order-select",
        title="radcds imaging appropriateness (order select)",
        description="Rates the selected draft imaging orders against published decision rules (Canadian CT Head, "
        "PECARN, NEXUS, Canadian C-Spine, Ottawa, Wells/PERC, low back pain, contrast and pregnancy safety).",
        prefetch=ORDER_PREFETCH,
        usage_requirements=USAGE,
    ),
    CdsService(
        id="radcds-imaging-order-sign",
        hook="order-sign",
        title="radcds imaging appropriateness (order sign)",
        description="Rates every draft imaging order before signing and attaches the Argonaut PAMA rating.",
        prefetch=ORDER_PREFETCH,
        usage_requirements=USAGE,
    ),
    CdsService(
        id="radcds-imaging-patient-view",
        hook="patient-view",
        title="radcds imaging follow-up and screening",
        description="Flags USPSTF 2021 lung cancer screening eligibility and overdue follow-up of a prior "
        "pulmonary nodule recommendation.",
        prefetch=PATIENT_VIEW_PREFETCH,
        usage_requirements=USAGE,
    ),
)


def by_id(service_id: str) -> CdsService | None:
    """The service with ``service_id``, or None."""
    return next((s for s in SERVICES if s.id == service_id), None)
