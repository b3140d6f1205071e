"""FHIR R4 OperationOutcome responses (FHIR R4 3.1.0.4: errors are OperationOutcomes)."""

from __future__ import annotations

from fastapi.responses import JSONResponse

FHIR_JSON = "application/fhir+json"


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
