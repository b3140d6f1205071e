"""CDS Hooks 2.0 cards, suggestions and Argonaut PAMA system actions from domain evaluations.

- Card (CDS Hooks 2.0 "Card Attributes"): ``uuid``, ``summary`` (< 140 characters), ``detail``
  (markdown), ``indicator``, ``source``; ``suggestions`` with ``selectionBehavior``; ``overrideReasons``.
  Optional fields are omitted, never null or empty.
- Rating (Argonaut "CDS Hooks for PAMA"): an ``update`` system action on the ServiceRequest that
  only adds the ``pama-rating``, ``pama-rating-qcdsm-consulted``, ``pama-rating-consult-id`` and
  (when a rule applied) ``pama-rating-auc-applied`` extensions.
"""

from __future__ import annotations

import copy
import uuid
from typing import Any

from radcds_referral.domain.appropriateness import Evaluation, Rating, Suggestion, SuggestionAction

PAMA_RATING = "http://fhir.org/argonaut/Extension/pama-rating"
PAMA_QCDSM = "http://fhir.org/argonaut/Extension/pama-rating-qcdsm-consulted"
PAMA_CONSULT_ID = "http://fhir.org/argonaut/Extension/pama-rating-consult-id"
PAMA_AUC_APPLIED = "http://fhir.org/argonaut/Extension/pama-rating-auc-applied"
PAMA_RATING_SYSTEM = "http://fhir.org/argonaut/CodeSystem/pama-rating"
SUMMARY_LIMIT = 140


def _coding(c: Any) -> dict[str, str]:
    out = {"system": c.system, "code": c.code}
    if c.display:
        out["display"] = c.display
    return out


def rule_url(evaluation: Evaluation, source_url: str) -> str | None:
    """URL of the criteria applied: the rule's own, else our catalogue anchor."""
    if evaluation.rule is None:
        return None
    return evaluation.rule.url or f"{source_url.rstrip('/')}#{evaluation.rule.id}"


def _without_pama(extensions: object) -> list[Any]:
    """The order's own extensions, without the Argonaut PAMA ones (a rating applies to one code only)."""
    if not isinstance(extensions, list):
        return []
    return [
        e
        for e in extensions
        if not (isinstance(e, dict) and str(e.get("url", "")).startswith("http://fhir.org/argonaut/Extension/pama-"))
    ]


def _actions(s: Suggestion, order: dict[str, Any]) -> list[dict[str, Any]]:
    ref = f"ServiceRequest/{order['id']}"
    if s.action is SuggestionAction.REMOVE:
        return [{"type": "delete", "description": f"Remove the draft order {ref}", "resourceId": ref}]
    code = {"coding": [_coding(c) for c in s.codes], "text": s.label}
    if s.action is SuggestionAction.REPLACE:
        replaced = copy.deepcopy(order)
        replaced["code"] = code
        # An update carries the whole resource (CDS Hooks 2.0 "Action"): keep the EHR's extensions, drop
        # only a PAMA rating of the old code.
        kept = _without_pama(replaced.pop("extension", None))
        if kept:
            replaced["extension"] = kept
        return [{"type": "update", "description": f"Change the draft order to: {s.label}", "resource": replaced}]
    new_order: dict[str, Any] = {
        "resourceType": "ServiceRequest",
        "id": str(uuid.uuid4()),
        "status": "draft",
        "intent": "order",
        "code": code,
    }
    for key in ("subject", "encounter", "reasonCode", "requester"):
        if key in order:
            new_order[key] = copy.deepcopy(order[key])
    return [{"type": "create", "description": f"Add a draft order: {s.label}", "resource": new_order}]


def card(
    evaluation: Evaluation,
    *,
    order: dict[str, Any] | None,
    source_label: str,
    source_url: str,
    patient_id: str = "",
) -> dict[str, Any]:
    """The one card for an evaluation (``order`` is None on patient-view, where ``patient_id`` is the subject)."""
    summary = evaluation.summary if len(evaluation.summary) < SUMMARY_LIMIT else evaluation.summary[:136] + "..."
    out: dict[str, Any] = {
        "uuid": str(uuid.uuid4()),
        "summary": summary,
        "detail": evaluation.detail,
        "indicator": evaluation.indicator.value,
        "source": {"label": source_label, "url": source_url},
    }
    if evaluation.rule is not None:
        out["source"]["topic"] = {
            "system": "https://radcds.example.org/fhir/CodeSystem/referral-rule",
            "code": evaluation.rule.id,
            "display": evaluation.rule.title,
        }
    suggestions = []
    # "selectionBehavior": our cards are at-most-one, and "Multiple suggestions MAY be recommended, if
    # card.selectionBehavior is any" (CDS Hooks 2.0 "Suggestion"): only the first recommended one (safety
    # advice first, then the rule's order) keeps isRecommended.
    recommended_given = False
    for s in evaluation.suggestions:
        if order is None and s.action is not SuggestionAction.ADD:
            continue
        target = order or {
            "id": "",
            "resourceType": "ServiceRequest",
            "subject": {"reference": f"Patient/{patient_id}"},
        }
        item: dict[str, Any] = {"label": s.label, "uuid": str(uuid.uuid4()), "actions": _actions(s, target)}
        if s.recommended and not recommended_given:
            item["isRecommended"] = True
            recommended_given = True
        suggestions.append(item)
    if suggestions:
        out["suggestions"] = suggestions
        out["selectionBehavior"] = "at-most-one"
    if evaluation.override_reasons:
        out["overrideReasons"] = [_coding(c) for c in evaluation.override_reasons]
    return out


def rating_action(
    evaluation: Evaluation,
    rating: Rating,
    *,
    order: dict[str, Any],
    consultation_id: str,
    qcdsm_id: str,
    source_url: str,
) -> dict[str, Any]:
    """The ``update`` system action that attaches the PAMA rating to the draft order."""
    rated = copy.deepcopy(order)
    extensions = _without_pama(rated.get("extension"))
    extensions += [
        {
            "url": PAMA_RATING,
            "valueCodeableConcept": {"coding": [{"system": PAMA_RATING_SYSTEM, "code": rating.value}]},
        },
        {"url": PAMA_QCDSM, "valueString": qcdsm_id},
        {"url": PAMA_CONSULT_ID, "valueUri": consultation_id},
    ]
    applied = rule_url(evaluation, source_url)
    if applied:
        extensions.append({"url": PAMA_AUC_APPLIED, "valueUri": applied})
    rated["extension"] = extensions
    return {"type": "update", "description": f"Appropriateness rating: {rating.value}", "resource": rated}
