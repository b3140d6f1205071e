"""CDS Hooks 2.0 routes: discovery, service calls and feedback.

Every route authenticates the caller's JWT first (bare 401 with a Bearer challenge on failure), then
only parses, calls the :class:`~radcds_referral.handlers.ReferralService` and maps the result back.
"""

from __future__ import annotations

import json
import logging
from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from radcds.adapters.fhir.outcome import operation_outcome
from radcds_referral import catalog
from radcds_referral.handlers import ReferralService, body_digest
from radcds_referral.prefetch import BudgetExceeded, DataUnavailable
from radcds_referral.protocol import BadRequest, parse_request
from radcds_referral.repository import Feedback
from radcds_referral.security import CdsClientAuthenticator, Unauthorized

log = logging.getLogger(__name__)
MAX_BODY_BYTES = 5 * 1024 * 1024
#: RFC 6750 section 3.1: the challenge when the request carried no Bearer token (no error code) ...
CHALLENGE_NO_CREDENTIALS = "Bearer"
#: ... and when it carried one that we refused. No ``error_description``: CDS Hooks 2.0 "Trusting CDS
#: Clients" leaves the reason to our logs, never to the caller.
CHALLENGE_REFUSED = 'Bearer error="invalid_token"'


def bearer_challenge(authorization: str | None) -> str:
    """The ``WWW-Authenticate`` value of a 401 (RFC 6750 section 3).

    Section 3.1: a request that "lacks any authentication information (e.g., the client was unaware
    that authentication is necessary or attempted using an unsupported authentication method)" gets
    no error code; a Bearer token that is "expired, revoked, malformed, or invalid for other reasons"
    gets ``invalid_token``. Nothing of the token is echoed.
    """
    scheme, _, credentials = (authorization or "").strip().partition(" ")
    if scheme.lower() == "bearer" and credentials.strip():
        return CHALLENGE_REFUSED
    return CHALLENGE_NO_CREDENTIALS


def _service(request: Request) -> ReferralService:
    return request.app.state.referral  # type: ignore[no-any-return]


ServiceDep = Annotated[ReferralService, Depends(_service)]


def cds_router(*, authenticator: CdsClientAuthenticator | None, public_base_url: str) -> APIRouter:
    """Routes under ``/cds-services``; without an authenticator every call is refused (401)."""
    router = APIRouter(prefix="/cds-services", tags=["CDS Hooks"])
    base = public_base_url.rstrip("/")

    async def authenticate(request: Request) -> bool:
        if authenticator is None:
            return False
        audience = base + request.url.path
        try:
            await run_in_threadpool(authenticator.authenticate, request.headers.get("authorization"), audience=audience)
        except Unauthorized as exc:
            log.info("CDS client refused", extra={"reason": str(exc), "path": request.url.path})
            return False
        return True

    def unauthorized(request: Request) -> Response:
        """Bare 401 (CDS Hooks 2.0 "Trusting CDS Clients") with the RFC 6750 section 3 challenge."""
        challenge = bearer_challenge(request.headers.get("authorization"))
        return Response(status_code=401, headers={"WWW-Authenticate": challenge})

    @router.get("")
    async def discovery(request: Request) -> Response:
        if not await authenticate(request):
            return unauthorized(request)
        return JSONResponse({"services": [s.discovery() for s in catalog.SERVICES]})

    @router.post("/{service_id}")
    async def call(service_id: str, request: Request, referral: ServiceDep) -> Response:
        if not await authenticate(request):
            return unauthorized(request)
        service = catalog.by_id(service_id)
        if service is None:
            return operation_outcome(404, "not-found", f"no CDS Service with id {service_id!r}")
        body = await request.body()
        if len(body) > MAX_BODY_BYTES:
            return operation_outcome(413, "too-costly", f"request larger than {MAX_BODY_BYTES} bytes")
        try:
            cds_request = parse_request(body, expected_hook=service.hook)
        except BadRequest as exc:
            return operation_outcome(400, "invalid", str(exc))
        try:
            return JSONResponse(await referral.call(service, cds_request, body_digest=body_digest(body)))
        except DataUnavailable as exc:
            return operation_outcome(412, "incomplete", f"data needed is not available: {exc}")
        except BudgetExceeded:
            log.warning("FHIR fallback over budget: answering with no cards", extra={"service": service.id})
            return JSONResponse({"cards": []})
        except Exception:
            # Degrade, never fail the clinician's workflow (CDS Hooks 2.0: late or failed CDS is no CDS).
            log.exception("CDS call failed: answering with no cards", extra={"service": service.id})
            return JSONResponse({"cards": []})

    @router.post("/{service_id}/feedback")
    async def feedback(service_id: str, request: Request, referral: ServiceDep) -> Response:
        if not await authenticate(request):
            return unauthorized(request)
        if catalog.by_id(service_id) is None:
            return operation_outcome(404, "not-found", f"no CDS Service with id {service_id!r}")
        try:
            items = parse_feedback(await request.body())
        except BadRequest as exc:
            return operation_outcome(400, "invalid", str(exc))
        await run_in_threadpool(referral.record_feedback, service_id, items)
        return JSONResponse({})

    @router.get("/{service_id}/feedback")
    async def feedback_rates(service_id: str, request: Request, referral: ServiceDep) -> Response:
        if not await authenticate(request):
            return unauthorized(request)
        if catalog.by_id(service_id) is None:
            return operation_outcome(404, "not-found", f"no CDS Service with id {service_id!r}")
        rates = await run_in_threadpool(referral.feedback_rates, service_id)
        return JSONResponse({"service": service_id, "rules": rates})

    return router


def parse_feedback(body: bytes) -> list[Feedback]:
    """CDS Hooks 2.0 "Feedback": ``{"feedback": [{card, outcome, acceptedSuggestions?, overrideReason?,
    outcomeTimestamp}]}``."""
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise BadRequest("feedback body is not valid JSON") from None
    if not isinstance(data, dict) or not isinstance(data.get("feedback"), list) or not data["feedback"]:
        raise BadRequest("feedback must be a non-empty array")
    items = []
    for i, f in enumerate(data["feedback"]):
        if not isinstance(f, dict):
            raise BadRequest(f"feedback[{i}] must be an object")
        card, outcome, ts = f.get("card"), f.get("outcome"), f.get("outcomeTimestamp")
        if not isinstance(card, str) or not card:
            raise BadRequest(f"feedback[{i}].card is required")
        if outcome not in ("accepted", "overridden"):
            raise BadRequest(f"feedback[{i}].outcome must be accepted or overridden")
        if not isinstance(ts, str) or len(ts) < 10:
            raise BadRequest(f"feedback[{i}].outcomeTimestamp is required")
        accepted = f.get("acceptedSuggestions") or []
        if not isinstance(accepted, list) or not all(
            isinstance(a, dict) and isinstance(a.get("id"), str) for a in accepted
        ):
            raise BadRequest(f"feedback[{i}].acceptedSuggestions must be an array of {{id}}")
        reason = f.get("overrideReason") or {}
        code = (
            reason.get("reason", {}).get("code")
            if isinstance(reason, dict) and isinstance(reason.get("reason"), dict)
            else None
        )
        items.append(Feedback(card, outcome, ts, [a["id"] for a in accepted], code))
    return items
