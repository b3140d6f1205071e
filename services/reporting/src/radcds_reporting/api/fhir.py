"""FHIR R4 RESTful API (http.html): capabilities, read and a first set of search parameters.

Every error is an OperationOutcome (FHIR R4 3.1.0.4 "HTTP status codes and OperationOutcome").
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse
from sqlalchemy import Engine

from radcds.adapters.fhir.outcome import FHIR_JSON, operation_outcome
from radcds.adapters.fhir.resources import SUPPORTED_TYPES
from radcds_reporting.repository import FhirRepository

MAX_COUNT = 200


def _engine(request: Request) -> Engine:
    return request.app.state.engine  # type: ignore[no-any-return]


EngineDep = Annotated[Engine, Depends(_engine)]


def capability_statement(base_url: str) -> dict[str, Any]:
    """What this server supports (FHIR R4 CapabilityStatement)."""
    search = [
        {"name": "subject", "type": "reference"},
        {"name": "patient", "type": "reference"},
        {"name": "_count", "type": "number"},
    ]
    return {
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": datetime.now(UTC).date().isoformat(),
        "kind": "instance",
        "software": {"name": "radcds reporting", "version": "0.1.0"},
        "implementation": {"description": "radcds preliminary imaging reports", "url": base_url},
        "fhirVersion": "4.0.1",
        "format": ["json"],
        "rest": [
            {
                "mode": "server",
                "resource": [
                    {"type": t, "interaction": [{"code": "read"}, {"code": "search-type"}], "searchParam": search}
                    for t in sorted(SUPPORTED_TYPES)
                ],
            }
        ],
    }


def fhir_router(*, base_url: str) -> APIRouter:
    """Routes under ``/fhir``."""
    router = APIRouter(prefix="/fhir", tags=["FHIR"])

    @router.get("/metadata")
    def metadata() -> JSONResponse:
        return JSONResponse(capability_statement(base_url), media_type=FHIR_JSON)

    @router.get("/{resource_type}/{resource_id}")
    def read(resource_type: str, resource_id: str, engine: EngineDep) -> JSONResponse:
        if resource_type not in SUPPORTED_TYPES:
            return operation_outcome(404, "not-supported", f"resource type {resource_type} is not supported")
        with engine.connect() as conn:
            resource = FhirRepository(conn).read(resource_type, resource_id)
        if resource is None:
            return operation_outcome(404, "not-found", f"{resource_type}/{resource_id} is not known")
        return JSONResponse(
            resource, media_type=FHIR_JSON, headers={"ETag": f'W/"{resource.get("meta", {}).get("versionId", "1")}"'}
        )

    @router.get("/{resource_type}")
    def search(resource_type: str, request: Request, engine: EngineDep) -> JSONResponse:
        if resource_type not in SUPPORTED_TYPES:
            return operation_outcome(404, "not-supported", f"resource type {resource_type} is not supported")
        params = dict(request.query_params)
        unknown = sorted(set(params) - {"subject", "patient", "_count", "_offset"})
        if unknown:
            return operation_outcome(400, "not-supported", f"unsupported search parameter(s): {', '.join(unknown)}")
        try:
            count = min(int(params.get("_count", "50")), MAX_COUNT)
            offset = int(params.get("_offset", "0"))
        except ValueError:
            return operation_outcome(400, "invalid", "_count and _offset must be integers")
        if count < 0 or offset < 0:
            return operation_outcome(400, "invalid", "_count and _offset must not be negative")
        subject = params.get("subject") or params.get("patient")
        if subject and "/" not in subject:
            subject = f"Patient/{subject}"
        with engine.connect() as conn:
            total, page = FhirRepository(conn).search(resource_type, subject=subject, count=count, offset=offset)
        bundle: dict[str, Any] = {
            "resourceType": "Bundle",
            "type": "searchset",
            "total": total,
            "link": [{"relation": "self", "url": str(request.url)}],
            "entry": [
                {"fullUrl": f"{base_url}/{r['resourceType']}/{r['id']}", "resource": r, "search": {"mode": "match"}}
                for r in page
            ],
        }
        if offset + count < total:
            bundle["link"].append(
                {"relation": "next", "url": str(request.url.include_query_params(_offset=offset + count, _count=count))}
            )
        if not bundle["entry"]:
            del bundle["entry"]
        return JSONResponse(bundle, media_type=FHIR_JSON)

    return router
