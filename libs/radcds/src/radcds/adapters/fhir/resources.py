"""Validation of FHIR R4 resources with ``fhir.resources.R4B`` (R4 on the wire; R5 is the package default)."""

from __future__ import annotations

import json
from typing import Any

from fhir.resources.R4B import get_fhir_model_class

#: Resource types radcds stores and serves.
SUPPORTED_TYPES = frozenset(
    {"DiagnosticReport", "Observation", "ImagingStudy", "ServiceRequest", "Provenance", "Patient", "Communication"}
)


class InvalidResource(ValueError):
    """A resource that does not validate against the R4 structure definitions."""


def validate_resource(resource: dict[str, Any]) -> dict[str, Any]:
    """Validate a resource as R4 and return its canonical JSON form (no nulls, no empties)."""
    resource_type = resource.get("resourceType")
    if not isinstance(resource_type, str):
        raise InvalidResource("resourceType is missing")
    try:
        model = get_fhir_model_class(resource_type).model_validate(resource)
    except (KeyError, ValueError) as exc:
        raise InvalidResource(f"{resource_type} is not valid FHIR R4: {exc}") from exc
    return json.loads(model.model_dump_json(exclude_none=True))  # type: ignore[no-any-return]
