"""Use case: answer a CDS Hooks call with ratings, at most one card per order, and consultation events."""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable, Sequence
from datetime import UTC, date, datetime
from typing import Any

import httpx
from starlette.concurrency import run_in_threadpool

from radcds_referral.adapters import cards
from radcds_referral.adapters.clinical_context import imaging_order_from_service_request, patient_context_from_fhir
from radcds_referral.adapters.followups import FusionFollowUps
from radcds_referral.adapters.prefetch import BudgetExceeded, gather
from radcds_referral.adapters.protocol import CdsRequest, draft_orders
from radcds_referral.domain.appropriateness import (
    DraftImagingOrder,
    Evaluation,
    Hook,
    Rule,
    evaluate_order,
    evaluate_patient,
)
from radcds_referral.domain.appropriateness.criteria import any_match
from radcds_referral.domain.appropriateness.engine import RADIOLOGY_CPT
from radcds_referral.domain.catalog import CdsService
from radcds_referral.domain.consultations import Consultation, ConsultationRepository, Feedback
from radcds_referral.settings import ReferralSettings

log = logging.getLogger(__name__)
#: At most this many of the Patient's identifiers travel in an order-sign event (an EHR Patient has a handful).
MAX_PATIENT_IDENTIFIERS = 10
#: Below this much of the latency budget left when the handler starts, no gathering is begun: the answer is
#: ``{"cards": []}`` at once (a FHIR query cannot answer in less, and the client is about to give up).
MIN_REMAINING_BUDGET_S = 0.01


class DeadlineExpired(BudgetExceeded):
    """The call's latency budget, counted from its arrival, was (nearly) spent before gathering began."""


def patient_identifiers(patient: dict[str, Any] | None, patient_id: str) -> list[dict[str, str]]:
    """The identifiers (system and value) of the hook's Patient, for fusion to match its recommendations by MRN.

    Only from the Patient resource that is ``context.patientId`` (prefetch template ``Patient/{{context.patientId}}``
    or the FHIR fallback), only identifiers with both a system and a value (a value alone does not say whose it is),
    and never an ``old`` one (FHIR R4 Identifier.use: no longer valid)."""
    if not patient or patient.get("resourceType") != "Patient" or patient.get("id") != patient_id:
        return []
    out = []
    for i in patient.get("identifier", []) or []:
        if not isinstance(i, dict) or i.get("use") == "old":
            continue
        system, value = i.get("system"), i.get("value")
        if isinstance(system, str) and system and isinstance(value, str) and value:
            out.append({"system": system, "value": value})
    return out[:MAX_PATIENT_IDENTIFIERS]


class _ResponseCache:
    """Answers kept per (service, hookInstance, body digest): a repeated call gets the same cards and
    creates no second consultation (CDS Hooks 2.0: suppress repeats per hookInstance).

    Each answer is kept as its JSON text, one bytes object the garbage collector does not track. Kept as dicts,
    10,000 answers were some 200,000 tracked objects that every full collection walked (about 100 ms with the
    GIL held, the p99 of order-sign at 100 req/s in bench/referral_bench.py). A hit returns a new copy."""

    def __init__(self, *, size: int = 10_000, ttl_s: float = 600.0) -> None:
        self._items: OrderedDict[str, tuple[float, bytes]] = OrderedDict()
        self._size, self._ttl = size, ttl_s
        self._lock = threading.Lock()

    def get(self, key: str) -> dict[str, Any] | None:
        with self._lock:
            hit = self._items.get(key)
        if hit is None or hit[0] < time.monotonic():
            return None
        answer: dict[str, Any] = json.loads(hit[1])
        return answer

    def put(self, key: str, value: dict[str, Any]) -> None:
        encoded = json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()
        with self._lock:
            self._items[key] = (time.monotonic() + self._ttl, encoded)
            self._items.move_to_end(key)
            while len(self._items) > self._size:
                self._items.popitem(last=False)


class ReferralService:
    """Evaluates draft imaging orders (order-select / order-sign) and the chart (patient-view)."""

    def __init__(
        self,
        *,
        rules: Sequence[Rule],
        repository: ConsultationRepository,
        fhir_http: httpx.AsyncClient,
        settings: ReferralSettings,
        followups: FusionFollowUps | None = None,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        self._rules = list(rules)
        #: The clock of the call's arrival time (``time.perf_counter``, as the shedding middleware's).
        self._clock = clock
        self._followups = followups
        self._repository = repository
        self._http = fhir_http
        self._settings = settings
        self._cache = _ResponseCache()

    def remaining_budget(self, arrived_at: float | None) -> float:
        """Seconds of ``latency_budget_s`` left for a call that arrived at ``arrived_at`` (on :attr:`_clock`);
        the whole budget when the arrival is not known."""
        budget = self._settings.latency_budget_s
        return budget if arrived_at is None else budget - (self._clock() - arrived_at)

    async def call(
        self, service: CdsService, request: CdsRequest, *, body_digest: str = "", arrived_at: float | None = None
    ) -> dict[str, Any]:
        """The CDS Hooks response for one call.

        ``arrived_at`` is when the call reached the service (``time.perf_counter``, recorded by the shedding
        middleware): ``latency_budget_s`` is counted from it, so gathering and the fusion read get only what is
        left. With less than :data:`MIN_REMAINING_BUDGET_S` left before gathering, :class:`DeadlineExpired` is
        raised and nothing is gathered or stored. Once data is gathered, the rules are evaluated and the
        consultations stored whatever the clock says (a consultation is recorded whole or not at all)."""
        key = f"{service.id}|{request.hook_instance}|{body_digest}"
        cached = self._cache.get(key)
        if cached is not None:
            return cached
        orders = draft_orders(request) if request.hook != "patient-view" else []
        imaging = [(o, imaging_order_from_service_request(o)) for o in orders]
        imaging = [(o, io) for o, io in imaging if self._is_imaging(io)]
        if request.hook != "patient-view" and not imaging:
            response: dict[str, Any] = {"cards": []}
            self._cache.put(key, response)
            return response
        remaining = self.remaining_budget(arrived_at)
        if remaining < MIN_REMAINING_BUDGET_S:
            raise DeadlineExpired(f"latency budget spent before gathering ({remaining * 1e3:.0f} ms left)")
        gathered = await gather(
            request,
            service.prefetch,
            http=self._http,
            timeout_s=self._settings.fhir_timeout_s,
            budget_s=remaining,
        )
        data = gathered.resources
        today = datetime.now(UTC).date()
        service_requests = data.get("serviceRequests") if "serviceRequests" in data else None
        if request.hook == "patient-view" and self._followups is not None:
            left = min(self._settings.fusion_timeout_s, self.remaining_budget(arrived_at))
            patient = next(iter(data.get("patient") or []), None)
            # Optional: with no budget left, fusion is not asked (its recommendations only add to the EHR's).
            ours = await self._followups.open_for(patient, timeout_s=left) if left > 0 else []
            if ours:
                service_requests = [*(service_requests or []), *ours]
        context = patient_context_from_fhir(
            today=today,
            patient=next(iter(data.get("patient") or []), None),
            conditions=data.get("conditions"),
            observations=data.get("observations"),
            allergies=data.get("allergies") if "allergies" in data else None,
            imaging_studies=data.get("imagingStudies") if "imagingStudies" in data else None,
            service_requests=service_requests,
        )
        if request.hook == "patient-view":
            response = self._patient_view(evaluate_patient(context, self._rules, today), request.patient_id)
        else:
            hook = Hook.ORDER_SELECT if request.hook == "order-select" else Hook.ORDER_SIGN
            evaluations = [(o, evaluate_order(io, context, self._rules, hook=hook, today=today)) for o, io in imaging]
            identifiers = (
                patient_identifiers(next(iter(data.get("patient") or []), None), request.patient_id)
                if request.hook == "order-sign"
                else []
            )
            response, consultations = self._orders(service, request, evaluations, today, identifiers=identifiers)
            await run_in_threadpool(self._repository.add_consultations, consultations)
        self._cache.put(key, response)
        return response

    def _is_imaging(self, order: DraftImagingOrder) -> bool:
        return any_match(RADIOLOGY_CPT, order.codes) or any(any_match(r.order_codes, order.codes) for r in self._rules)

    def _source_label(self, evaluation: Evaluation) -> str:
        return f"radcds referral: {evaluation.rule.title}" if evaluation.rule else "radcds referral"

    def _patient_view(self, evaluations: list[Evaluation], patient_id: str) -> dict[str, Any]:
        shown = [e for e in evaluations if e.shows_card and not e.needs_information]
        return {
            "cards": [
                cards.card(
                    e,
                    order=None,
                    source_label=self._source_label(e),
                    source_url=self._settings.source_url,
                    patient_id=patient_id,
                )
                for e in shown
            ]
        }

    def _orders(
        self,
        service: CdsService,
        request: CdsRequest,
        evaluations: list[tuple[dict[str, Any], Evaluation]],
        today: date,
        *,
        identifiers: list[dict[str, str]],
    ) -> tuple[dict[str, Any], list[Consultation]]:
        out_cards: list[dict[str, Any]] = []
        actions: list[dict[str, Any]] = []
        consultations: list[Consultation] = []
        for order, evaluation in evaluations:
            consultation_id = f"urn:uuid:{uuid.uuid4()}"
            card = None
            if evaluation.shows_card:
                card = cards.card(
                    evaluation,
                    order=order,
                    source_label=self._source_label(evaluation),
                    source_url=self._settings.source_url,
                )
                out_cards.append(card)
            rating = evaluation.rating
            if rating is not None:
                actions.append(
                    cards.rating_action(
                        evaluation,
                        rating,
                        order=order,
                        consultation_id=consultation_id,
                        qcdsm_id=self._settings.qcdsm_id,
                        source_url=self._settings.source_url,
                    )
                )
            consultations.append(
                self._consultation(service, request, order, evaluation, consultation_id, card, identifiers)
            )
        response: dict[str, Any] = {"cards": out_cards}
        if actions:
            response["systemActions"] = actions
        return response, consultations

    def _consultation(
        self,
        service: CdsService,
        request: CdsRequest,
        order: dict[str, Any],
        evaluation: Evaluation,
        consultation_id: str,
        card: dict[str, Any] | None,
        identifiers: list[dict[str, str]],
    ) -> Consultation:
        rule_id = evaluation.rule.id if evaluation.rule else "none"
        rule_version = evaluation.rule.version if evaluation.rule else "0"
        rating = evaluation.rating.value if evaluation.rating else "needs-information"
        payload: dict[str, Any] = {
            "consultationId": consultation_id,
            "serviceId": service.id,
            "hook": request.hook,
            "hookInstance": request.hook_instance,
            "patientId": request.patient_id,
            "orderId": order["id"],
            "orderCodes": [
                {"system": c.get("system", ""), "code": c.get("code", "")}
                for c in order.get("code", {}).get("coding", [])
                if isinstance(c, dict)
            ],
            "ruleId": rule_id,
            "ruleVersion": rule_version,
            "rating": rating,
            "evaluatedAt": datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        }
        if isinstance(request.context.get("encounterId"), str):
            payload["encounterId"] = request.context["encounterId"]
        applied = cards.rule_url(evaluation, self._settings.source_url)
        if applied:
            payload["criteriaUrl"] = applied
        if card is not None:
            payload["cardUuid"] = card["uuid"]
        if identifiers:  # order-sign only: fusion closes the patient's follow-up recommendation by MRN
            payload["patientIdentifiers"] = identifiers
        return Consultation(
            consultation_id,
            service.id,
            request.hook,
            request.hook_instance,
            order["id"],
            rule_id,
            rule_version,
            rating,
            card["uuid"] if card else None,
            payload,
        )

    def record_feedback(self, service_id: str, items: list[Feedback]) -> int:
        """Store feedback once per card, outcome and timestamp."""
        return self._repository.add_feedback(service_id, items)


def body_digest(body: bytes) -> str:
    """Digest of a request body, for the repeat cache."""
    return hashlib.sha256(body).hexdigest()
