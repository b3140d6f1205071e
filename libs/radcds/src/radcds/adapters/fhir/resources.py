"""Validation of FHIR R4 resources with ``fhir.resources.R4B`` (R4 on the wire; R5 is the package default),
and the generated narrative every stored resource carries (R4 2.1.0.4 Narrative, dom-6)."""

from __future__ import annotations

import html
import json
from typing import Any

from fhir.resources.R4B import get_fhir_model_class

#: Resource types radcds stores and serves.
SUPPORTED_TYPES = frozenset(
    {
        "DiagnosticReport",
        "Observation",
        "ImagingStudy",
        "ServiceRequest",
        "Provenance",
        "Patient",
        "Communication",
        "Device",
        "Organization",
    }
)
_US_CORE = "http://hl7.org/fhir/us/core/StructureDefinition/"
#: The US Core profile each type conforms to (CapabilityStatement ``supportedProfile``), checked by the
#: HAPI FHIR validator against US Core 6.1.0 and 8.0.0 (tests/conformance/test_fhir_hapi_validator.py).
#: ImagingStudy, Communication and Device have no US Core profile: base R4.
US_CORE_PROFILES = {
    "Patient": _US_CORE + "us-core-patient",
    "DiagnosticReport": _US_CORE + "us-core-diagnosticreport-note",
    "Observation": _US_CORE + "us-core-observation-clinical-result",
    "ServiceRequest": _US_CORE + "us-core-servicerequest",
    "Provenance": _US_CORE + "us-core-provenance",
    "Organization": _US_CORE + "us-core-organization",
}
XHTML_NAMESPACE = "http://www.w3.org/1999/xhtml"
#: Elements the narrative leaves out: bookkeeping, the narrative itself, and large or binary content
#: (presentedForm keeps its title and type, see :func:`_value`).
_SKIPPED = frozenset({"resourceType", "id", "meta", "text", "contained", "extension", "modifierExtension"})
_MAX_ITEMS = 10
_MAX_DEPTH = 3


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


def _label(key: str) -> str:
    """``effectiveDateTime`` -> ``Effective date time``."""
    words = "".join(f" {c.lower()}" if c.isupper() else c for c in key).strip()
    return words[:1].upper() + words[1:]


def _summary(value: Any) -> str | None:
    """A one-line text for common FHIR datatypes (CodeableConcept, Coding, Reference, Quantity, ...)."""
    if not isinstance(value, dict):
        return None
    if "reference" in value or ("display" in value and "code" not in value):
        return " ".join(str(value[k]) for k in ("display", "reference") if value.get(k))
    if "coding" in value or ("text" in value and len(value) == 1):
        codings = [c for c in value.get("coding", []) if isinstance(c, dict)]
        coded = ", ".join(
            f"{c.get('display') or c.get('code', '')} ({c.get('system', '')}#{c.get('code', '')})" for c in codings
        )
        return "; ".join(t for t in (value.get("text"), coded) if t)
    if "code" in value and "system" in value and "value" not in value:
        return f"{value.get('display') or value['code']} ({value['system']}#{value['code']})"
    if "value" in value and ("unit" in value or "code" in value):
        return f"{value['value']} {value.get('unit') or value.get('code', '')}".strip()
    if "contentType" in value:
        return " ".join(str(value[k]) for k in ("title", "contentType", "size") if value.get(k))
    return None


def _value(value: Any, depth: int) -> str:
    """XHTML for one element value (escaped; nested elements as lists, at most a few levels deep)."""
    if isinstance(value, list):
        items = [f"<li>{_value(v, depth)}</li>" for v in value[:_MAX_ITEMS]]
        if len(value) > _MAX_ITEMS:
            items.append(f"<li>... and {len(value) - _MAX_ITEMS} more</li>")
        return f"<ul>{''.join(items)}</ul>"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if not isinstance(value, dict):
        return html.escape(str(value))
    summary = _summary(value)
    if summary is not None:
        return html.escape(summary)
    if depth >= _MAX_DEPTH:
        return "(details in the resource)"
    rows = [
        f"<li>{html.escape(_label(k))}: {_value(v, depth + 1)}</li>"
        for k, v in value.items()
        if k not in _SKIPPED and k != "data"
    ]
    return f"<ul>{''.join(rows)}</ul>" if rows else "(no details)"


def narrative_div(resource: dict[str, Any]) -> str:
    """The generated XHTML ``div``: the resource type and id, then each element's value in words.

    Only what the resource itself holds is shown, escaped (R4 2.1.0.4: ``div`` in the XHTML
    namespace, no scripts, forms or external content).
    """
    title = html.escape(f"{resource['resourceType']} {resource.get('id', '')}".strip())
    rows = "".join(
        f"<tr><th>{html.escape(_label(k))}</th><td>{_value(v, 1)}</td></tr>"
        for k, v in resource.items()
        if k not in _SKIPPED
    )
    return f'<div xmlns="{XHTML_NAMESPACE}"><p><b>{title}</b></p><table>{rows}</table></div>'


def with_narrative(resource: dict[str, Any]) -> dict[str, Any]:
    """The resource with ``text`` (status ``generated``) rebuilt from its current content."""
    out = {k: v for k, v in resource.items() if k != "text"}
    generated = {"status": "generated", "div": narrative_div(out)}
    # Narrative comes right after id and meta, as R4 orders DomainResource elements.
    ordered: dict[str, Any] = {}
    for key, value in out.items():
        ordered[key] = value
        if key == "id":
            ordered["text"] = generated
    ordered.setdefault("text", generated)
    return ordered
