"""OpenAPI declarations the services' routes share (FastAPI ``openapi_extra=`` and ``responses=``).

Routes that read their bodies themselves (DICOMweb, FHIR, CDS Hooks: media types and rules FastAPI cannot model)
declare here what they take and answer, so each service's OpenAPI document says what the service really does; the
schemathesis tests (``services/*/tests/test_openapi_schemathesis.py``) hold every answer to it.
"""

from __future__ import annotations

from http import HTTPStatus
from typing import Any

from radcds.adapters.fhir.outcome import FHIR_JSON, OPERATION_OUTCOME_SCHEMA

Responses = dict[int | str, dict[str, Any]]


def fhir_resource(*types: str) -> dict[str, Any]:
    """JSON Schema of a FHIR resource of one of ``types`` (R4 2.6.2: an object naming its ``resourceType``)."""
    return {
        "type": "object",
        "required": ["resourceType"],
        "properties": {"resourceType": {"enum": list(types)}, "id": {"type": "string"}, "meta": {"type": "object"}},
    }


#: JSON Schema of the Bundles our searches and histories answer (R4 3.1.1.4.3 searchset, 3.1.0.9 history).
FHIR_BUNDLE: dict[str, Any] = {
    "type": "object",
    "required": ["resourceType", "type"],
    "properties": {
        "resourceType": {"const": "Bundle"},
        "type": {"enum": ["searchset", "history"]},
        "total": {"type": "integer", "minimum": 0},
        "link": {"type": "array", "items": {"type": "object"}},
        "entry": {"type": "array", "items": {"type": "object"}},
    },
}


def request_body(schema: dict[str, Any], *media_types: str, required: bool = True) -> dict[str, Any]:
    """``openapi_extra`` declaring a request body of ``schema`` in each of ``media_types`` (JSON by default)."""
    content = {media_type: {"schema": schema} for media_type in media_types or ("application/json",)}
    return {"requestBody": {"required": required, "content": content}}


def answer(status: int, schema: dict[str, Any] | None, *media_types: str, description: str = "") -> Responses:
    """``responses`` entry: ``status`` with a body of ``schema`` in each of ``media_types`` (no body when
    ``schema`` is None)."""
    entry: dict[str, Any] = {"description": description or HTTPStatus(status).phrase}
    if schema is not None:
        entry["content"] = {media_type: {"schema": schema} for media_type in media_types or ("application/json",)}
    return {status: entry}


def outcome_responses(*statuses: int, media_type: str = FHIR_JSON) -> Responses:
    """``responses`` entries: each of ``statuses`` answered with an OperationOutcome (FHIR R4 3.1.0.4)."""
    responses: Responses = {}
    for status in statuses:
        phrase = HTTPStatus(status).phrase
        responses |= answer(status, OPERATION_OUTCOME_SCHEMA, media_type, description=f"{phrase}: an OperationOutcome")
    return responses
