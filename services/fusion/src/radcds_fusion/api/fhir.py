"""fusion's FHIR R4 REST API: recommendations as ServiceRequests (read, search) and ``$cancel``.

- ``GET /fhir/ServiceRequest/{id}`` (FHIR R4 3.1.0 read);
- ``GET /fhir/ServiceRequest?patient=&patient.identifier=&status=&_tag=`` (search; a ``searchset`` Bundle;
  ``patient.identifier`` is the chained search on the subject's identifier: ``value`` or ``system|value``, where a
  system other than the MRN system (``RADCDS_FUSION_EHR_PATIENT_IDENTIFIER_SYSTEM``) matches nothing);
- ``POST /fhir/ServiceRequest/{id}/$cancel`` with a Parameters resource holding ``reason`` (valueString) and
  ``practitioner`` (valueReference): the clinician cancels the recommendation (radcds operation, docs/fusion.md).
Errors are OperationOutcomes (FHIR R4 3.1.0.4).
"""

from __future__ import annotations

import json
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, Response

from radcds.adapters.fhir.outcome import FHIR_JSON, operation_outcome
from radcds_fusion.adapters.fhir import RECOMMENDATION_STATE_SYSTEM, service_request
from radcds_fusion.handlers import FusionService, InvalidTransition, RecommendationNotFound
from radcds_fusion.queries import RecommendationQueries

#: The ``$cancel`` body as the OpenAPI document gives it (the route reads it itself, to answer OperationOutcomes).
_PARAMETERS_BODY: dict[str, Any] = {
    "required": True,
    "content": {media: {"schema": {"type": "object"}} for media in (FHIR_JSON, "application/json")},
}
_STATES_BY_STATUS = {"active": ["proposed", "overdue"], "completed": ["closed"], "revoked": ["cancelled"]}


def _identifier_value(token: str, mrn_system: str | None) -> str | None:
    """The value to match for a ``patient.identifier`` token ``[system|]value`` (FHIR R4 3.1.1.5.8), else None when
    it cannot match: fusion's patients are known by the DICOM Patient ID, the MRN in ``mrn_system``, so a token of
    another system (another hospital's MRN, a national id) must never match the same digits."""
    system, bar, value = token.rpartition("|")
    if bar and system and system != mrn_system:
        return None
    return value


def _parameters(body: bytes) -> dict[str, Any] | None:
    """The ``$cancel`` body as a JSON object, else None: not JSON, not an object, or nested too deeply for the
    decoder (a RecursionError, found by the hostile-input tests: a 400, not a 500)."""
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return None
    return data if isinstance(data, dict) else None


def _nul_outcome(*values: str | None) -> Response | None:
    """A 400 for a value holding NUL (U+0000): no FHIR string may (R4 2.24.0.1 "string": no control characters
    but whitespace), and PostgreSQL refuses it in text, so the query would be a 500 there."""
    if any(v is not None and "\x00" in v for v in values):
        return operation_outcome(400, "invalid", "a parameter value contains NUL (U+0000)")
    return None


def _value(parameter: Any, key: str) -> Any:
    return parameter.get(key) if isinstance(parameter, dict) else None


def fhir_router(*, service: FusionService, queries: RecommendationQueries, mrn_system: str | None = None) -> APIRouter:
    """The ``/fhir`` routes, over fusion's use cases and read queries."""
    router = APIRouter(prefix="/fhir", tags=["fhir"])

    @router.get("/ServiceRequest/{rec_id}")
    def read(rec_id: str) -> Response:
        if (refused := _nul_outcome(rec_id)) is not None:
            return refused
        found = queries.get(rec_id)
        if found is None:
            return operation_outcome(404, "not-found", f"ServiceRequest/{rec_id} is not known")
        return JSONResponse(service_request(found[0], version=found[1]), media_type=FHIR_JSON)

    @router.get("/ServiceRequest")
    def search(
        patient: Annotated[str | None, Query()] = None,
        status: Annotated[str | None, Query()] = None,
        tag: Annotated[str | None, Query(alias="_tag")] = None,
        patient_identifier: Annotated[str | None, Query(alias="patient.identifier")] = None,
    ) -> Response:
        if (refused := _nul_outcome(patient, status, tag, patient_identifier)) is not None:
            return refused
        states: list[str] | None = None
        if status is not None:
            if status not in _STATES_BY_STATUS:
                return operation_outcome(400, "invalid", f"status {status!r} is not one of active, completed, revoked")
            states = _STATES_BY_STATUS[status]
        if tag is not None:
            code = tag.removeprefix(f"{RECOMMENDATION_STATE_SYSTEM}|")
            if code not in {"proposed", "overdue", "closed", "cancelled"}:
                return operation_outcome(400, "invalid", f"_tag {tag!r} is not a recommendation state")
            states = [s for s in (states or [code]) if s == code]
        patient_id = patient.removeprefix("Patient/") if patient else None
        wanted = _identifier_value(patient_identifier, mrn_system) if patient_identifier else None
        if patient_identifier and wanted is None:
            bundle = {"resourceType": "Bundle", "type": "searchset", "total": 0, "entry": []}
            return JSONResponse(bundle, media_type=FHIR_JSON)
        entries = [
            {
                "fullUrl": f"ServiceRequest/{r.id}",
                "resource": service_request(r, version=v),
                "search": {"mode": "match"},
            }
            for r, v in queries.search(
                patient_id=patient_id,
                states=states,
                # the value is matched (the DICOM Patient ID fusion saw), of the MRN system or of no system
                patient_identifier=wanted,
            )
        ]
        bundle = {"resourceType": "Bundle", "type": "searchset", "total": len(entries), "entry": entries}
        return JSONResponse(bundle, media_type=FHIR_JSON)

    @router.post("/ServiceRequest/{rec_id}/$cancel", openapi_extra={"requestBody": _PARAMETERS_BODY})
    async def cancel(rec_id: str, request: Request) -> Response:
        parameters = _parameters(await request.body())
        if parameters is None or parameters.get("resourceType") != "Parameters":
            return operation_outcome(400, "invalid", "the body must be a Parameters resource")
        return await run_in_threadpool(_cancel, rec_id, parameters)

    def _cancel(rec_id: str, parameters: dict[str, Any]) -> Response:
        listed = parameters.get("parameter", [])
        # a parameter of another shape (not a list, a name that is not a string) is malformed: a 400, not a 500
        values = (
            {p["name"]: p for p in listed if isinstance(p, dict) and isinstance(p.get("name"), str)}
            if isinstance(listed, list)
            else {}
        )
        reason = _value(values.get("reason"), "valueString")
        by = _value(_value(values.get("practitioner"), "valueReference"), "reference")
        reason = reason.strip() if isinstance(reason, str) else ""
        by = by.strip() if isinstance(by, str) else ""
        if not reason or not by.startswith("Practitioner/"):
            return operation_outcome(
                400, "required", "$cancel needs a reason (valueString) and a practitioner (valueReference)"
            )
        try:
            rec = service.cancel(rec_id, reason=reason, by=by)
        except RecommendationNotFound:
            return operation_outcome(404, "not-found", f"ServiceRequest/{rec_id} is not known")
        except InvalidTransition as exc:
            return operation_outcome(409, "conflict", str(exc))
        found = queries.get(rec.id)
        assert found is not None
        return JSONResponse(service_request(found[0], version=found[1]), media_type=FHIR_JSON)

    return router
