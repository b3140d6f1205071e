"""What reporting's OpenAPI document says of the ``/fhir`` routes (FHIR R4 3.1.0 "RESTful API").

The routes read their bodies themselves (FHIR JSON, JSON Patch), so FastAPI cannot derive these schemas. They are
as loose as FHIR's own JSON (R4 2.6.2: a resource is an object with ``resourceType``) and name the statuses each
interaction answers: 200 with a resource or Bundle in ``application/fhir+json``, errors as OperationOutcomes
(3.1.0.4), 401/403 with a ``WWW-Authenticate`` challenge (SMART App Launch 2.2).
"""

from __future__ import annotations

from typing import Any

from radcds.adapters.fhir.outcome import FHIR_JSON
from radcds.adapters.fhir.resources import SUPPORTED_TYPES
from radcds.adapters.openapi import FHIR_BUNDLE, Responses, answer, fhir_resource, outcome_responses, request_body

JSON_PATCH = "application/json-patch+json"


ANY_RESOURCE = fhir_resource(*sorted(SUPPORTED_TYPES))
#: RFC 6902: a JSON Patch document is an array of operations.
PATCH_DOCUMENT = {
    "type": "array",
    "items": {
        "type": "object",
        "required": ["op", "path"],
        "properties": {
            "op": {"enum": ["add", "remove", "replace", "move", "copy", "test"]},
            "path": {"type": "string"},
            "from": {"type": "string"},
            "value": {},
        },
    },
}
#: The ``$acknowledge`` input: a Parameters resource with an optional ``who`` (valueReference).
ACKNOWLEDGE_PARAMETERS = {
    "type": "object",
    "required": ["resourceType"],
    "properties": {
        "resourceType": {"const": "Parameters"},
        "parameter": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["name"],
                "properties": {
                    "name": {"type": "string"},
                    "valueReference": {"type": "object", "properties": {"reference": {"type": "string"}}},
                },
            },
        },
    },
}
SMART_CONFIGURATION = {
    "type": "object",
    "required": ["issuer", "capabilities"],
    "properties": {"issuer": {"type": "string"}, "capabilities": {"type": "array", "items": {"type": "string"}}},
}

#: Every guarded interaction: 401 (no or bad token) and 403 (scopes), and 404 for an unsupported type or id.
GUARDED = (401, 403, 404)


def fhir_answers(schema: dict[str, Any], *errors: int) -> Responses:
    """``responses``: 200 with ``schema`` in ``application/fhir+json`` and ``errors`` as OperationOutcomes."""
    return answer(200, schema, FHIR_JSON) | outcome_responses(*sorted({*GUARDED, *errors}))


READ = fhir_answers(ANY_RESOURCE)
SEARCH = fhir_answers(FHIR_BUNDLE, 400)
UPDATE = fhir_answers(fhir_resource("DiagnosticReport", "ServiceRequest"), 400, 405, 409, 412, 422)
PATCH = fhir_answers(fhir_resource("DiagnosticReport", "Communication"), 400, 405, 409, 412, 415, 422)
ACKNOWLEDGE = fhir_answers(fhir_resource("Communication"), 400, 422)
UPDATE_BODY = request_body(fhir_resource("DiagnosticReport", "ServiceRequest"), FHIR_JSON, "application/json")
PATCH_BODY = request_body(PATCH_DOCUMENT, JSON_PATCH)
ACKNOWLEDGE_BODY = request_body(ACKNOWLEDGE_PARAMETERS, FHIR_JSON, "application/json", required=False)
