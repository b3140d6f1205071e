"""FHIR R4 RESTful API (FHIR R4 3.1.0 "RESTful API"): capabilities, read, vread, history, search,
sign-off of DiagnosticReports, re-prioritisation of ServiceRequests (update of ``priority`` only) and
acknowledgement of critical-result Communications.

Every error is an OperationOutcome (FHIR R4 3.1.0.4 "HTTP status codes and OperationOutcome").
Access is checked against SMART scopes (:mod:`radcds_reporting.api.deps`).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from sqlalchemy import Engine

from radcds.adapters.fhir.outcome import FHIR_JSON, operation_outcome
from radcds.adapters.fhir.resources import SUPPORTED_TYPES, US_CORE_PROFILES
from radcds_reporting.adapters.fhir.entered_findings import InvalidFinding
from radcds_reporting.adapters.fhir.search import (
    SEARCH_PARAMETERS,
    Criterion,
    SearchError,
    SearchRequest,
    parse_search,
)
from radcds_reporting.adapters.repository import FhirRepository, VersionConflict
from radcds_reporting.api.deps import Access, AccessDenied, Authorizer
from radcds_reporting.domain.report_status import AuthorRequired, IllegalTransition
from radcds_reporting.domain.smart_scopes import Interaction
from radcds_reporting.use_cases.critical import CriticalResults, NotACriticalResult
from radcds_reporting.use_cases.orders import InvalidOrderChange, OrderNotFound, OrderUpdates
from radcds_reporting.use_cases.signoff import InvalidChange, PatchError, ReportNotFound, ReportSignOff

JSON_PATCH = "application/json-patch+json"
#: Types whose resources belong to one patient through ``subject`` (patient compartment).
_PATIENT_PARAM = {t: "patient" for t in ("DiagnosticReport", "Observation", "ImagingStudy", "ServiceRequest")} | {
    "Communication": "patient"
}
_INCLUDES = {
    "DiagnosticReport": ("DiagnosticReport:result", "DiagnosticReport:subject", "DiagnosticReport:based-on"),
}


#: SMART scopes this server honours (v1 and v2 syntax; docs/reporting.md "SMART scopes").
SMART_SCOPES = (
    "system/*.read",
    "system/*.rs",
    "user/*.read",
    "user/*.rs",
    "patient/*.read",
    "patient/*.rs",
    "user/DiagnosticReport.write",
    "user/DiagnosticReport.u",
    "user/Communication.write",
    "user/Communication.u",
)


def smart_configuration(
    *, issuer: str, jwks_url: str | None, authorize_url: str | None, token_url: str | None
) -> dict[str, Any]:
    """``/.well-known/smart-configuration`` (SMART App Launch 2.2, "Conformance"): where tokens come from
    and what this resource server accepts. Endpoints that are not configured are left out."""
    config: dict[str, Any] = {
        "issuer": issuer,
        "grant_types_supported": ["authorization_code", "client_credentials"],
        "scopes_supported": list(SMART_SCOPES),
        "response_types_supported": ["code"],
        "code_challenge_methods_supported": ["S256"],
        "capabilities": ["permission-v1", "permission-v2", "permission-patient", "permission-user"],
    }
    if jwks_url:
        config["jwks_uri"] = jwks_url
    if authorize_url:
        config["authorization_endpoint"] = authorize_url
    if token_url:
        config["token_endpoint"] = token_url
    return config


def capability_statement(base_url: str, *, smart: bool) -> dict[str, Any]:
    """What this server supports (FHIR R4 CapabilityStatement, 6.1), exactly."""
    resources = []
    for rtype in sorted(SUPPORTED_TYPES):
        params = [
            {"name": "_id", "definition": "http://hl7.org/fhir/SearchParameter/Resource-id", "type": "token"},
            {
                "name": "_lastUpdated",
                "definition": "http://hl7.org/fhir/SearchParameter/Resource-lastUpdated",
                "type": "date",
            },
        ] + [
            {"name": p.name, "definition": p.canonical(rtype), "type": p.type, "documentation": p.expression}
            for p in SEARCH_PARAMETERS[rtype].values()
        ]
        interactions = [{"code": "read"}, {"code": "vread"}, {"code": "history-instance"}, {"code": "search-type"}]
        if rtype in {"DiagnosticReport", "Communication"}:
            interactions.insert(2, {"code": "patch"})
        if rtype in {"DiagnosticReport", "ServiceRequest"}:
            interactions.insert(2, {"code": "update"})
        entry: dict[str, Any] = {
            "type": rtype,
            "interaction": interactions,
            "versioning": "versioned",
            "readHistory": True,
            "updateCreate": False,
            "conditionalCreate": False,
            "conditionalUpdate": False,
            "conditionalDelete": "not-supported",
            "searchInclude": list(_INCLUDES.get(rtype, ())),
            "searchParam": params,
        }
        if rtype in US_CORE_PROFILES:
            entry["supportedProfile"] = [US_CORE_PROFILES[rtype]]
        if rtype == "Communication":
            entry["operation"] = [
                {"name": "acknowledge", "definition": f"{base_url}/OperationDefinition/Communication-acknowledge"}
            ]
        resources.append(entry)
    rest: dict[str, Any] = {
        "mode": "server",
        "documentation": "radcds reporting: preliminary AI imaging reports, sign-off, critical results",
        "resource": resources,
    }
    if smart:
        rest["security"] = {
            "cors": False,
            "service": [
                {
                    "coding": [
                        {
                            "system": "http://terminology.hl7.org/CodeSystem/restful-security-service",
                            "code": "SMART-on-FHIR",
                        }
                    ]
                }
            ],
            "description": "Bearer JWT access tokens with SMART v1 or v2 scopes",
        }
    return {
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": datetime.now(UTC).date().isoformat(),
        "kind": "instance",
        "software": {"name": "radcds reporting", "version": "0.1.0"},
        "implementation": {"description": "radcds preliminary imaging reports", "url": base_url},
        "fhirVersion": "4.0.1",
        "format": ["json"],
        "patchFormat": [JSON_PATCH],
        "rest": [rest],
    }


def _resource_response(resource: dict[str, Any], status: int = 200, *, base_url: str = "") -> JSONResponse:
    meta = resource.get("meta", {})
    headers = {"ETag": f'W/"{meta.get("versionId", "1")}"'}
    if meta.get("lastUpdated"):
        headers["Last-Modified"] = datetime.fromisoformat(meta["lastUpdated"].replace("Z", "+00:00")).strftime(
            "%a, %d %b %Y %H:%M:%S GMT"
        )
    if base_url and status in (200, 201) and meta.get("versionId"):
        headers["Content-Location"] = (
            f"{base_url}/{resource['resourceType']}/{resource['id']}/_history/{meta['versionId']}"
        )
    return JSONResponse(resource, status_code=status, media_type=FHIR_JSON, headers=headers)


def _denied(exc: AccessDenied) -> JSONResponse:
    code = "login" if exc.status == 401 else "forbidden"
    response = operation_outcome(exc.status, code, str(exc))
    response.headers["WWW-Authenticate"] = exc.www_authenticate
    return response


def _in_compartment(resource: dict[str, Any], patient: str) -> bool:
    if resource["resourceType"] == "Patient":
        return bool(resource["id"] == patient)
    return bool(resource.get("subject", {}).get("reference") == f"Patient/{patient}")


def _if_match(request: Request) -> str | None:
    value = request.headers.get("If-Match")
    if value is None:
        return None
    return value.removeprefix("W/").strip('"')


def fhir_router(
    *,
    engine: Engine,
    auth: Authorizer,
    signoff: ReportSignOff,
    critical: CriticalResults,
    base_url: str,
    orders: OrderUpdates | None = None,
    default_count: int = 50,
    max_count: int = 200,
    smart: dict[str, Any] | None = None,
) -> APIRouter:
    """Routes under ``/fhir`` over reporting's database (reads), its SMART checks and its use cases (sign-off,
    critical results, order updates: without ``orders`` a ServiceRequest PUT answers 405); ``smart`` is the
    SMART configuration to publish (None in open mode)."""
    router = APIRouter(prefix="/fhir", tags=["FHIR"])

    @router.get("/.well-known/smart-configuration")
    def smart_configuration_document() -> JSONResponse:
        if smart is None:
            return operation_outcome(404, "not-found", "this server runs without SMART authorization (open mode)")
        return JSONResponse(smart)

    def guarded(
        request: Request, auth: Authorizer, rtype: str, interaction: Interaction
    ) -> tuple[Access | None, JSONResponse | None]:
        if rtype not in SUPPORTED_TYPES:
            return None, operation_outcome(404, "not-supported", f"resource type {rtype} is not supported")
        try:
            return auth.check(request, rtype, interaction), None
        except AccessDenied as exc:
            return None, _denied(exc)

    @router.get("/metadata")
    def metadata() -> JSONResponse:
        return JSONResponse(capability_statement(base_url, smart=not auth.open), media_type=FHIR_JSON)

    @router.get("/{resource_type}/{resource_id}/_history/{version_id}")
    def vread(resource_type: str, resource_id: str, version_id: str, request: Request) -> Response:
        access, error = guarded(request, auth, resource_type, Interaction.READ)
        if error is not None or access is None:
            return error or operation_outcome(500, "exception", "no access decision")
        if not (version_id.isascii() and version_id.isdigit() and len(version_id) <= 18):
            return operation_outcome(404, "not-found", f"version {version_id} is not known")
        with engine.connect() as conn:
            resource = FhirRepository(conn).read_version(resource_type, resource_id, int(version_id))
        if resource is None or (access.patient and not _in_compartment(resource, access.patient)):
            return operation_outcome(
                404, "not-found", f"{resource_type}/{resource_id}/_history/{version_id} is not known"
            )
        return _resource_response(resource)

    @router.get("/{resource_type}/{resource_id}/_history")
    def history(resource_type: str, resource_id: str, request: Request) -> Response:
        access, error = guarded(request, auth, resource_type, Interaction.READ)
        if error is not None or access is None:
            return error or operation_outcome(500, "exception", "no access decision")
        with engine.connect() as conn:
            versions = FhirRepository(conn).history(resource_type, resource_id)
        if not versions or (access.patient and not _in_compartment(versions[0], access.patient)):
            return operation_outcome(404, "not-found", f"{resource_type}/{resource_id} is not known")
        bundle = {
            "resourceType": "Bundle",
            "type": "history",
            "total": len(versions),
            "link": [{"relation": "self", "url": str(request.url)}],
            "entry": [
                {
                    "fullUrl": f"{base_url}/{resource_type}/{resource_id}",
                    "resource": v,
                    "request": {"method": "POST" if v["meta"]["versionId"] == "1" else "PUT",
                                "url": f"{resource_type}/{resource_id}"},
                    "response": {"status": "201 Created" if v["meta"]["versionId"] == "1" else "200 OK",
                                 "etag": f'W/"{v["meta"]["versionId"]}"', "lastModified": v["meta"]["lastUpdated"]},
                }
                for v in versions
            ],
        }  # fmt: skip
        return JSONResponse(bundle, media_type=FHIR_JSON)

    @router.get("/{resource_type}/{resource_id}")
    def read(resource_type: str, resource_id: str, request: Request) -> Response:
        access, error = guarded(request, auth, resource_type, Interaction.READ)
        if error is not None or access is None:
            return error or operation_outcome(500, "exception", "no access decision")
        with engine.connect() as conn:
            resource = FhirRepository(conn).read(resource_type, resource_id)
        if resource is None or (access.patient and not _in_compartment(resource, access.patient)):
            return operation_outcome(404, "not-found", f"{resource_type}/{resource_id} is not known")
        return _resource_response(resource)

    @router.get("/{resource_type}")
    def search(resource_type: str, request: Request) -> Response:
        access, error = guarded(request, auth, resource_type, Interaction.SEARCH)
        if error is not None or access is None:
            return error or operation_outcome(500, "exception", "no access decision")
        lenient = "handling=lenient" in request.headers.get("Prefer", "").replace(" ", "")
        try:
            req = parse_search(
                resource_type,
                request.query_params.multi_items(),
                lenient=lenient,
                default_count=default_count,
                max_count=max_count,
            )
        except SearchError as exc:
            return operation_outcome(400, exc.code, str(exc))
        criteria = list(req.criteria)
        if access.patient:
            if resource_type == "Patient":
                criteria.append(Criterion("_id", "id", (access.patient,)))
            elif resource_type in _PATIENT_PARAM:
                criteria.append(Criterion("patient", "reference", (f"Patient/{access.patient}",)))
            else:
                return _denied(AccessDenied(403, f"{resource_type} is outside the patient compartment", "Bearer"))
        with engine.connect() as conn:
            repo = FhirRepository(conn)
            total, page = repo.search(resource_type, criteria=criteria, count=req.count, offset=req.offset)
            included = _included(repo, req, page, access)
        return JSONResponse(_searchset(request, req, total, page, included, base_url), media_type=FHIR_JSON)

    @router.put("/{resource_type}/{resource_id}")
    async def update(resource_type: str, resource_id: str, request: Request) -> Response:
        access, error = guarded(request, auth, resource_type, Interaction.UPDATE)
        if error is not None or access is None:
            return error or operation_outcome(500, "exception", "no access decision")
        if resource_type not in {"DiagnosticReport", "ServiceRequest"} or (
            resource_type == "ServiceRequest" and orders is None
        ):
            return operation_outcome(405, "not-supported", f"update of {resource_type} is not supported")
        body = await _json_body(request)
        if isinstance(body, JSONResponse):
            return body
        if not isinstance(body, dict):
            return operation_outcome(400, "structure", f"the body must be a {resource_type}")
        if resource_type == "ServiceRequest" and orders is not None:
            if access.patient:
                return _denied(AccessDenied(403, "a patient cannot re-prioritise an order", "Bearer"))
            return _update_call(
                lambda: orders.update(service_request_id=resource_id, resource=body, if_match=_if_match(request)),
                access,
            )
        return _update_call(
            lambda: signoff.update(report_id=resource_id, resource=body, user=access.user, if_match=_if_match(request)),
            access,
        )

    @router.patch("/{resource_type}/{resource_id}")
    async def patch(
        resource_type: str,
        resource_id: str,
        request: Request,
    ) -> Response:
        access, error = guarded(request, auth, resource_type, Interaction.UPDATE)
        if error is not None or access is None:
            return error or operation_outcome(500, "exception", "no access decision")
        if resource_type not in {"DiagnosticReport", "Communication"}:
            return operation_outcome(405, "not-supported", f"patch of {resource_type} is not supported")
        if request.headers.get("Content-Type", "").split(";")[0].strip() != JSON_PATCH:
            return operation_outcome(415, "not-supported", f"PATCH takes {JSON_PATCH}")
        ops = await _json_body(request)
        if isinstance(ops, JSONResponse):
            return ops
        if resource_type == "DiagnosticReport":
            return _update_call(
                lambda: signoff.update(report_id=resource_id, patch=ops, user=access.user, if_match=_if_match(request)),
                access,
            )
        wanted = ops if isinstance(ops, list) else []
        if not (
            len(wanted) == 1
            and isinstance(wanted[0], dict)
            and wanted[0].get("op") == "replace"
            and wanted[0].get("path") == "/status"
            and wanted[0].get("value") == "completed"
        ):
            return operation_outcome(422, "processing", "a Communication can only be patched to status completed")
        return _acknowledge(critical, resource_id, access.user, access)

    @router.post("/Communication/{resource_id}/$acknowledge")
    async def acknowledge(resource_id: str, request: Request) -> Response:
        access, error = guarded(request, auth, "Communication", Interaction.UPDATE)
        if error is not None or access is None:
            return error or operation_outcome(500, "exception", "no access decision")
        who = access.user
        if await request.body():
            body = await _json_body(request)
            if isinstance(body, JSONResponse):
                return body
            if not isinstance(body, dict) or body.get("resourceType") != "Parameters":
                return operation_outcome(400, "structure", "the body must be a Parameters resource")
            for p in body.get("parameter", []):
                if p.get("name") == "who" and isinstance(p.get("valueReference"), dict):
                    who = p["valueReference"].get("reference") or who
        return _acknowledge(critical, resource_id, who, access)

    return router


def _acknowledge(critical: Any, communication_id: str, who: str | None, access: Access) -> Response:
    if not who or not who.startswith(("Practitioner/", "PractitionerRole/")):
        return operation_outcome(
            422, "required", "acknowledgement needs who: a Practitioner reference (parameter who or fhirUser)"
        )
    try:
        stored = critical.acknowledge(communication_id=communication_id, who=who)
    except NotACriticalResult as exc:
        return operation_outcome(404, "not-found", str(exc))
    if access.patient and not _in_compartment(stored, access.patient):
        return operation_outcome(404, "not-found", f"Communication/{communication_id} is not known")
    return _resource_response(stored)


def _update_call(call: Callable[[], tuple[dict[str, Any], bool]], access: Access) -> Response:
    """Run a sign-off or order update and map its refusals to OperationOutcomes."""
    try:
        stored, _ = call()
    except (ReportNotFound, OrderNotFound) as exc:
        return operation_outcome(404, "not-found", str(exc))
    except IllegalTransition as exc:
        return operation_outcome(409, "conflict", str(exc))
    except VersionConflict as exc:
        return operation_outcome(412, "conflict", str(exc))
    except InvalidFinding as exc:  # structured findings: 400 not valid R4, 422 a rule; the element is named
        return operation_outcome(exc.status, exc.code, str(exc), expression=exc.expression)
    except (AuthorRequired, InvalidChange, PatchError, InvalidOrderChange) as exc:
        return operation_outcome(422, "processing", str(exc))
    if access.patient and not _in_compartment(stored, access.patient):
        return operation_outcome(404, "not-found", "not known")
    return _resource_response(stored)


async def _json_body(request: Request) -> Any:
    try:
        return json.loads(await request.body())
    except (json.JSONDecodeError, UnicodeDecodeError):
        return operation_outcome(400, "structure", "the body is not JSON")
    except RecursionError:  # thousands of nested arrays exhaust the decoder: a 400, not a 500
        return operation_outcome(400, "structure", "the body is nested too deeply")


def _included(
    repo: FhirRepository, req: SearchRequest, page: list[dict[str, Any]], access: Access
) -> list[dict[str, Any]]:
    if not req.includes or not page:
        return []
    ids = [r["id"] for r in page]
    seen = {f"{r['resourceType']}/{r['id']}" for r in page}
    refs: list[str] = []
    for inc in req.includes:
        for ref in repo.referenced(req.resource_type, ids, inc.param):
            if (inc.target_type is None or ref.startswith(inc.target_type + "/")) and ref not in seen:
                seen.add(ref)
                refs.append(ref)
    found = [r for r in repo.read_many(refs) if r["resourceType"] in SUPPORTED_TYPES]
    if access.patient:
        found = [r for r in found if _in_compartment(r, access.patient)]
    return found


def _searchset(
    request: Request,
    req: SearchRequest,
    total: int,
    page: list[dict[str, Any]],
    included: list[dict[str, Any]],
    base_url: str,
) -> dict[str, Any]:
    def link(offset: int) -> str:
        params = [*req.used, ("_count", str(req.count)), ("_offset", str(offset))]
        params = [(k, v) for i, (k, v) in enumerate(params) if k not in {"_count", "_offset"} or i >= len(req.used)]
        query = "&".join(f"{k}={_quote(v)}" for k, v in params)
        return f"{base_url}/{req.resource_type}?{query}"

    links = [{"relation": "self", "url": link(req.offset)}]
    if req.count:
        links.insert(0, {"relation": "first", "url": link(0)})
        if req.offset > 0:
            links.append({"relation": "previous", "url": link(max(0, req.offset - req.count))})
        if req.offset + req.count < total:
            links.append({"relation": "next", "url": link(req.offset + req.count)})
        last = max(0, (total - 1) // req.count * req.count) if total else 0
        links.append({"relation": "last", "url": link(last)})
    bundle: dict[str, Any] = {"resourceType": "Bundle", "type": "searchset", "total": total, "link": links}
    entries = [
        {"fullUrl": f"{base_url}/{r['resourceType']}/{r['id']}", "resource": r, "search": {"mode": "match"}}
        for r in page
    ] + [
        {"fullUrl": f"{base_url}/{r['resourceType']}/{r['id']}", "resource": r, "search": {"mode": "include"}}
        for r in included
    ]
    if req.ignored:  # Prefer: handling=lenient (3.1.1.3.1): say which parameters were not used
        outcome = {
            "resourceType": "OperationOutcome",
            "issue": [
                {"severity": "warning", "code": "not-supported", "diagnostics": f"ignored search parameter {name}"}
                for name in req.ignored
            ],
        }
        entries.append({"resource": outcome, "search": {"mode": "outcome"}})
    if entries:
        bundle["entry"] = entries
    return bundle


def _quote(value: str) -> str:
    from urllib.parse import quote

    return quote(value, safe="|:/,-._")
