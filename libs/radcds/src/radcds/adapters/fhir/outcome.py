"""FHIR R4 OperationOutcome responses (FHIR R4 3.1.0.4: errors are OperationOutcomes)."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

FHIR_JSON = "application/fhir+json"


class FhirJSONResponse(JSONResponse):
    """A JSON response in FHIR's media type (R4 2.6.1); as a route's ``response_class`` it is also what the OpenAPI
    document declares the route answers in."""

    media_type = FHIR_JSON


def operation_outcome(
    status: int, code: str, diagnostics: str, *, media_type: str = FHIR_JSON, expression: str | None = None
) -> JSONResponse:
    """An OperationOutcome response; ``code`` is from the IssueType value set (e.g. invalid, not-found);
    ``expression`` the FHIRPath of the element at fault (R4 OperationOutcome.issue.expression)."""
    issue: dict[str, object] = {"severity": "error", "code": code, "diagnostics": diagnostics}
    if expression:
        issue["expression"] = [expression]
    return JSONResponse(
        {"resourceType": "OperationOutcome", "issue": [issue]},
        status_code=status,
        media_type=media_type,
    )


#: JSON Schema of the OperationOutcome :func:`operation_outcome` answers with (FHIR R4 OperationOutcome: one or more
#: issues, each with a severity and an IssueType code), for the services' OpenAPI documents.
OPERATION_OUTCOME_SCHEMA: dict[str, object] = {
    "title": "OperationOutcome",
    "type": "object",
    "required": ["resourceType", "issue"],
    "properties": {
        "resourceType": {"const": "OperationOutcome"},
        "issue": {
            "type": "array",
            "minItems": 1,
            "items": {
                "type": "object",
                "required": ["severity", "code"],
                "properties": {
                    "severity": {"enum": ["fatal", "error", "warning", "information"]},
                    "code": {"type": "string"},
                    "diagnostics": {"type": "string"},
                    "expression": {"type": "array", "items": {"type": "string"}},
                },
            },
        },
    },
}


def answer_errors_with_operation_outcomes(app: FastAPI) -> None:
    """Make FastAPI's own refusals OperationOutcomes too (FHIR R4 3.1.0.4): an unknown path (404), a method the path
    does not have (405) and a request FastAPI cannot validate (400, invalid; FastAPI's default is a 422 of its own
    shape)."""

    @app.exception_handler(HTTPException)
    async def http_error(_: Request, exc: HTTPException) -> JSONResponse:
        code = {404: "not-found", 405: "not-supported"}.get(exc.status_code, "processing")
        return operation_outcome(exc.status_code, code, str(exc.detail))

    @app.exception_handler(RequestValidationError)
    async def invalid_request(_: Request, exc: RequestValidationError) -> JSONResponse:
        return operation_outcome(400, "invalid", str(exc.errors()[:3]))
