"""CDS Hooks 2.0 request parsing (cds-hooks.hl7.org/2.0, "Calling a CDS Service").

Parsing is strict about what the spec requires and tolerant of everything else: unknown fields
are ignored. Every problem becomes :class:`BadRequest` with a message that names the field.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

HOOKS_WITH_ORDERS = ("order-select", "order-sign")


class BadRequest(ValueError):
    """The call breaks CDS Hooks 2.0; answered with 400 and an OperationOutcome."""


@dataclass(frozen=True, slots=True)
class FhirAuthorization:
    """``fhirAuthorization``: an OAuth 2.0 bearer token for the EHR's FHIR server."""

    access_token: str
    scope: str = ""
    subject: str = ""

    def __repr__(self) -> str:  # never show the token
        return f"FhirAuthorization(scope={self.scope!r}, subject={self.subject!r})"


@dataclass(frozen=True, slots=True)
class CdsRequest:
    """One hook call."""

    hook: str
    hook_instance: str
    context: dict[str, Any]
    prefetch: dict[str, Any] = field(default_factory=dict)
    fhir_server: str | None = None
    fhir_authorization: FhirAuthorization | None = None

    @property
    def patient_id(self) -> str:
        """``context.patientId`` (validated present)."""
        return str(self.context["patientId"])


def _require_str(obj: dict[str, Any], key: str, where: str) -> str:
    value = obj.get(key)
    if not isinstance(value, str) or not value.strip():
        raise BadRequest(f"{where}{key} is required and must be a non-empty string")
    return value


def parse_request(body: bytes, *, expected_hook: str) -> CdsRequest:
    """Parse and check a hook call for a service that answers ``expected_hook``."""
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadRequest(f"request body is not valid JSON: {exc}") from None
    except RecursionError:
        # Thousands of nested arrays exhaust the decoder's recursion (found by the property tests): a 400, not a 500.
        raise BadRequest("request body is nested too deeply") from None
    if not isinstance(data, dict):
        raise BadRequest("request body must be a JSON object")
    hook = _require_str(data, "hook", "")
    if hook != expected_hook:
        raise BadRequest(f"hook {hook!r} is not the hook of this service ({expected_hook})")
    hook_instance = _require_str(data, "hookInstance", "")
    if len(hook_instance) > 128:
        raise BadRequest("hookInstance is longer than 128 characters")
    context = data.get("context")
    if not isinstance(context, dict):
        raise BadRequest("context is required and must be an object")
    _require_str(context, "patientId", "context.")
    _require_str(context, "userId", "context.")
    if hook in HOOKS_WITH_ORDERS:
        orders = context.get("draftOrders")
        if not isinstance(orders, dict) or orders.get("resourceType") != "Bundle":
            raise BadRequest("context.draftOrders is required and must be a FHIR Bundle")
        if not isinstance(orders.get("entry", []), list):
            raise BadRequest("context.draftOrders.entry must be an array")
        if hook == "order-select":
            selections = context.get("selections")
            if not isinstance(selections, list) or not all(isinstance(s, str) for s in selections):
                raise BadRequest("context.selections is required for order-select and must be an array of strings")
    prefetch = data.get("prefetch", {})
    if prefetch is None:
        prefetch = {}
    if not isinstance(prefetch, dict):
        raise BadRequest("prefetch must be an object")
    fhir_server = data.get("fhirServer")
    if fhir_server is not None and (
        not isinstance(fhir_server, str) or not fhir_server.startswith(("http://", "https://"))
    ):
        raise BadRequest("fhirServer must be an absolute http(s) URL")
    auth = data.get("fhirAuthorization")
    fhir_authorization = None
    if auth is not None:
        if fhir_server is None:
            raise BadRequest("fhirServer is required when fhirAuthorization is sent")
        if not isinstance(auth, dict):
            raise BadRequest("fhirAuthorization must be an object")
        token = _require_str(auth, "access_token", "fhirAuthorization.")
        if str(auth.get("token_type", "")).lower() != "bearer":
            raise BadRequest("fhirAuthorization.token_type must be Bearer")
        fhir_authorization = FhirAuthorization(token, str(auth.get("scope", "")), str(auth.get("subject", "")))
    return CdsRequest(hook, hook_instance, context, prefetch, fhir_server, fhir_authorization)


def draft_orders(request: CdsRequest) -> list[dict[str, Any]]:
    """Imaging ServiceRequests of ``context.draftOrders``; for order-select only the selected ones."""
    bundle = request.context.get("draftOrders") or {}
    orders = [
        e["resource"]
        for e in bundle.get("entry", [])
        if isinstance(e, dict)
        and isinstance(e.get("resource"), dict)
        and e["resource"].get("resourceType") == "ServiceRequest"
        and isinstance(e["resource"].get("id"), str)
    ]
    if request.hook == "order-select":
        selected = {
            s.split("/", 1)[-1] for s in request.context.get("selections", []) if s.startswith("ServiceRequest/")
        }
        orders = [o for o in orders if o["id"] in selected]
    return orders
