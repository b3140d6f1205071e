"""CDS Hooks 2.0 routes: discovery, service calls and feedback.

Every route authenticates the caller's JWT first (bare 401 with a Bearer challenge on failure), then
only parses, calls the :class:`~radcds_referral.handlers.ReferralService` (or, for the feedback rates, the
:class:`~radcds_referral.queries.FeedbackQueries`) and maps the result back.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from radcds.adapters.fhir.outcome import operation_outcome
from radcds_referral.adapters.prefetch import BudgetExceeded, DataUnavailable
from radcds_referral.adapters.protocol import BadRequest, parse_request
from radcds_referral.adapters.security import CdsClientAuthenticator, Unauthorized
from radcds_referral.api.shedding import arrival_time
from radcds_referral.domain import catalog
from radcds_referral.domain.consultations import Feedback
from radcds_referral.handlers import DeadlineExpired, ReferralService, body_digest
from radcds_referral.queries import FeedbackQueries

log = logging.getLogger(__name__)
MAX_BODY_BYTES = 5 * 1024 * 1024
#: RFC 6750 section 3.1: the challenge when the request carried no Bearer token (no error code) ...
CHALLENGE_NO_CREDENTIALS = "Bearer"
#: ... and when it carried one that we refused. No ``error_description`` (optional in RFC 6750 section 3):
#: the reason goes to our logs only, since a detailed one would help an attacker forge a token.
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


def cds_router(
    *,
    referral: ReferralService,
    feedback_queries: FeedbackQueries,
    authenticator: CdsClientAuthenticator | None,
    public_base_url: str,
    on_deadline_expired: Callable[[], None] | None = None,
) -> APIRouter:
    """Routes under ``/cds-services``; without an authenticator every call is refused (401).

    ``on_deadline_expired`` is told of each call answered ``{"cards": []}`` because its latency budget, counted
    from its arrival (:mod:`radcds_referral.api.shedding`), was spent before gathering began."""
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
        """Bare 401 (no body; CDS Hooks 2.0 "Trusting CDS Clients" has the JWT sent as a Bearer token) with the
        RFC 6750 section 3 challenge."""
        challenge = bearer_challenge(request.headers.get("authorization"))
        return Response(status_code=401, headers={"WWW-Authenticate": challenge})

    @router.get("")
    async def discovery(request: Request) -> Response:
        if not await authenticate(request):
            return unauthorized(request)
        return JSONResponse({"services": [s.discovery() for s in catalog.SERVICES]})

    @router.post("/{service_id}")
    async def call(service_id: str, request: Request) -> Response:
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
            answer = await referral.call(
                service, cds_request, body_digest=body_digest(body), arrived_at=arrival_time(request.scope)
            )
            return JSONResponse(answer)
        except DataUnavailable as exc:
            return operation_outcome(412, "incomplete", f"data needed is not available: {exc}")
        except DeadlineExpired:
            # No PHI: the service only (no patient, order or hookInstance).
            log.warning("latency budget spent before gathering: answering with no cards", extra={"service": service.id})
            if on_deadline_expired is not None:
                on_deadline_expired()
            return JSONResponse({"cards": []})
        except BudgetExceeded:
            log.warning("FHIR fallback over budget: answering with no cards", extra={"service": service.id})
            return JSONResponse({"cards": []})
        except Exception:
            # Degrade, never fail the clinician's workflow (CDS Hooks 2.0: late or failed CDS is no CDS).
            log.exception("CDS call failed: answering with no cards", extra={"service": service.id})
            return JSONResponse({"cards": []})

    @router.post("/{service_id}/feedback")
    async def feedback(service_id: str, request: Request) -> Response:
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
    async def feedback_rates(service_id: str, request: Request) -> Response:
        if not await authenticate(request):
            return unauthorized(request)
        if catalog.by_id(service_id) is None:
            return operation_outcome(404, "not-found", f"no CDS Service with id {service_id!r}")
        rates = await run_in_threadpool(feedback_queries.rates, service_id)
        return JSONResponse({"service": service_id, "rules": rates})

    return router


#: RFC 3339 section 5.6 ``date-time`` (full-date "T" full-time, optional time-secfrac, time-offset).
_RFC3339_DATE_TIME = re.compile(r"^(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$")
#: Offsets that denote UTC (RFC 3339 section 4.3: ``-00:00`` is UTC with an unknown local offset).
_UTC_OFFSETS = frozenset({"Z", "z", "+00:00", "-00:00"})


def _utc_timestamp(value: object, where: str) -> str:
    """``outcomeTimestamp``: "ISO8601 representation of the date and time in Coordinated Universal Time
    (UTC) ..., as profiled in section 5.6 of RFC3339" (CDS Hooks 2.0 "Feedback")."""
    match = _RFC3339_DATE_TIME.match(value) if isinstance(value, str) else None
    if match is None or match.group(8) not in _UTC_OFFSETS:
        raise BadRequest(f"{where}.outcomeTimestamp must be an RFC 3339 date-time in UTC, e.g. 2021-12-11T10:05:31Z")
    year, month, day, hour, minute, second = (int(g) for g in match.groups()[:6])
    try:
        # RFC 3339 5.7 allows a leap second (60); datetime does not, so check the rest with 59.
        datetime(year, month, day, hour, minute, min(second, 59), tzinfo=UTC)
    except ValueError:
        raise BadRequest(f"{where}.outcomeTimestamp is not a valid date-time") from None
    if second > 60:
        raise BadRequest(f"{where}.outcomeTimestamp is not a valid date-time")
    return str(value)


def _non_empty_string(value: object) -> bool:
    return isinstance(value, str) and bool(value.strip())


def _accepted_suggestions(item: dict[str, Any], where: str) -> list[str]:
    """``acceptedSuggestions``: CONDITIONAL, "Required for accepted outcomes"; one or more
    AcceptedSuggestion objects, each with a REQUIRED string ``id`` (the suggestion's uuid)."""
    outcome, present = item["outcome"], "acceptedSuggestions" in item
    if outcome == "overridden":
        if present:
            # "an entire card is either ignored or overridden": an overridden card has no accepted suggestion.
            raise BadRequest(f"{where}.acceptedSuggestions is only allowed with outcome accepted")
        return []
    value = item.get("acceptedSuggestions")
    if not present:
        raise BadRequest(f"{where}.acceptedSuggestions is required when outcome is accepted")
    if not isinstance(value, list) or not value:
        raise BadRequest(f"{where}.acceptedSuggestions must be a non-empty array of {{id}}")
    ids = []
    for j, accepted in enumerate(value):
        if not isinstance(accepted, dict) or not _non_empty_string(accepted.get("id")):
            raise BadRequest(f"{where}.acceptedSuggestions[{j}].id is required and must be a non-empty string")
        ids.append(accepted["id"])
    return ids


def _override_reason(item: dict[str, Any], where: str) -> str | None:
    """``overrideReason``: OPTIONAL **OverrideReason** ``{reason?: Coding, userComment?: string}``, the
    reason for *rejecting* a card ("Explicit reject with override reasons"), so only with ``overridden``.
    Returns the reason's code, if any."""
    if "overrideReason" not in item:
        return None
    if item["outcome"] != "overridden":
        raise BadRequest(f"{where}.overrideReason is only allowed with outcome overridden")
    reason = item["overrideReason"]
    # "Use of JSON": no null and no empty object.
    if not isinstance(reason, dict) or not reason:
        raise BadRequest(f"{where}.overrideReason must be an object with reason and/or userComment")
    if "userComment" in reason and not _non_empty_string(reason["userComment"]):
        raise BadRequest(f"{where}.overrideReason.userComment must be a non-empty string")
    if "reason" not in reason:
        if "userComment" not in reason:
            raise BadRequest(f"{where}.overrideReason must carry reason and/or userComment")
        return None
    coding = reason["reason"]
    # Coding (CDS Hooks 2.0 "Data Types"): code and system REQUIRED strings, display optional here.
    if (
        not isinstance(coding, dict)
        or not _non_empty_string(coding.get("code"))
        or not _non_empty_string(coding.get("system"))
        or ("display" in coding and not _non_empty_string(coding["display"]))
    ):
        raise BadRequest(f"{where}.overrideReason.reason must be a Coding with code and system")
    return str(coding["code"])


def parse_feedback(body: bytes) -> list[Feedback]:
    """Check a feedback POST against CDS Hooks 2.0 "Feedback" and return its items.

    ``{"feedback": [Feedback]}``, each Feedback ``{card, outcome, acceptedSuggestions?, overrideReason?,
    outcomeTimestamp}``: ``card`` (REQUIRED, the card's uuid), ``outcome`` (REQUIRED, ``accepted`` or
    ``overridden``), ``acceptedSuggestions`` (required for ``accepted``), ``overrideReason`` (optional,
    an override is a rejection), ``outcomeTimestamp`` (REQUIRED, RFC 3339 UTC). Null and empty values are
    refused ("Use of JSON"). Any broken item rejects the whole request, so nothing is stored half.
    """
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError):  # RecursionError: nested too deeply to decode
        raise BadRequest("feedback body is not valid JSON") from None
    if not isinstance(data, dict) or not isinstance(data.get("feedback"), list) or not data["feedback"]:
        raise BadRequest("feedback must be a non-empty array")
    items = []
    for i, f in enumerate(data["feedback"]):
        where = f"feedback[{i}]"
        if not isinstance(f, dict):
            raise BadRequest(f"{where} must be an object")
        if not _non_empty_string(f.get("card")):
            raise BadRequest(f"{where}.card is required and must be the card's uuid")
        if f.get("outcome") not in ("accepted", "overridden"):
            raise BadRequest(f"{where}.outcome must be accepted or overridden")
        timestamp = _utc_timestamp(f.get("outcomeTimestamp"), where)
        accepted = _accepted_suggestions(f, where)
        reason_code = _override_reason(f, where)
        items.append(Feedback(f["card"], f["outcome"], timestamp, accepted, reason_code))
    return items
