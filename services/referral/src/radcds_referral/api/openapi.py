"""What referral's OpenAPI document says of the CDS Hooks 2.0 routes (cds-hooks.hl7.org/2.0).

The routes read their bodies themselves (:func:`radcds_referral.adapters.protocol.parse_request`,
:func:`radcds_referral.api.cds_hooks.parse_feedback`), so FastAPI cannot derive these schemas: they are written
here after the spec's "Calling a CDS Service" (HTTP Request), "CDS Service Response" and "Feedback" sections, as
strict as the parsers (what the parser requires is ``required`` here). Errors after authentication are
OperationOutcomes; a refused caller gets a bare 401 with an RFC 6750 challenge.
"""

from __future__ import annotations

from typing import Any

from radcds.adapters.openapi import Responses, answer, outcome_responses
from radcds_referral.domain import catalog

_STRING = {"type": "string", "minLength": 1}
_OBJECT = {"type": "object"}

#: "HTTP Request": hook, hookInstance and context REQUIRED; fhirServer with fhirAuthorization; prefetch values are
#: FHIR resources (null: the EHR could not fill the template).
CDS_REQUEST: dict[str, Any] = {
    "title": "CDS Hooks request",
    "type": "object",
    "required": ["hook", "hookInstance", "context"],
    "properties": {
        "hook": {"enum": sorted({s.hook for s in catalog.SERVICES})},
        "hookInstance": {"type": "string", "minLength": 1, "maxLength": 128, "format": "uuid"},
        "fhirServer": {"type": "string", "format": "uri", "pattern": "^https?://"},
        "fhirAuthorization": {
            "type": "object",
            "required": ["access_token", "token_type"],
            "properties": {
                "access_token": _STRING,
                "token_type": {"const": "Bearer"},
                "expires_in": {"type": "integer"},
                "scope": {"type": "string"},
                "subject": {"type": "string"},
            },
        },
        "context": {
            "type": "object",
            "required": ["userId", "patientId"],
            "properties": {
                "userId": _STRING,
                "patientId": _STRING,
                "encounterId": _STRING,
                "selections": {"type": "array", "items": {"type": "string"}},
                "draftOrders": {
                    "type": "object",
                    "required": ["resourceType"],
                    "properties": {"resourceType": {"const": "Bundle"}, "entry": {"type": "array", "items": _OBJECT}},
                },
            },
        },
        "prefetch": {"type": "object", "additionalProperties": {"type": ["object", "null"]}},
    },
}

_CODING = {
    "type": "object",
    "required": ["code", "system"],
    "properties": {"code": _STRING, "system": _STRING, "display": _STRING},
}

#: "Feedback": a non-empty array; each item names the card, its outcome and when (RFC 3339 in UTC).
FEEDBACK_REQUEST: dict[str, Any] = {
    "title": "CDS Hooks feedback",
    "type": "object",
    "required": ["feedback"],
    "properties": {
        "feedback": {
            "type": "array",
            "minItems": 1,
            "items": {
                "type": "object",
                "required": ["card", "outcome", "outcomeTimestamp"],
                "properties": {
                    "card": _STRING,
                    "outcome": {"enum": ["accepted", "overridden"]},
                    "acceptedSuggestions": {
                        "type": "array",
                        "minItems": 1,
                        "items": {"type": "object", "required": ["id"], "properties": {"id": _STRING}},
                    },
                    "overrideReason": {
                        "type": "object",
                        "minProperties": 1,
                        "properties": {"reason": _CODING, "userComment": _STRING},
                    },
                    "outcomeTimestamp": {"type": "string", "format": "date-time"},
                },
            },
        }
    },
}

#: "CDS Service Response": cards (possibly empty) and optional systemActions.
CDS_RESPONSE: dict[str, Any] = {
    "title": "CDS Hooks response",
    "type": "object",
    "required": ["cards"],
    "properties": {
        "cards": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["uuid", "summary", "indicator", "source"],
                "properties": {
                    "uuid": {"type": "string", "format": "uuid"},
                    "summary": {"type": "string", "minLength": 1, "maxLength": 140},
                    "indicator": {"enum": ["info", "warning", "critical"]},
                    "source": {"type": "object", "required": ["label"]},
                },
            },
        },
        "systemActions": {"type": "array", "items": _OBJECT},
    },
}

#: "Discovery": the services this server offers.
DISCOVERY_RESPONSE: dict[str, Any] = {
    "title": "CDS Hooks discovery",
    "type": "object",
    "required": ["services"],
    "properties": {
        "services": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["hook", "description", "id"],
                "properties": {
                    "hook": _STRING,
                    "title": _STRING,
                    "description": _STRING,
                    "id": _STRING,
                    "prefetch": {"type": "object", "additionalProperties": {"type": "string"}},
                    "usageRequirements": _STRING,
                },
            },
        }
    },
}

#: Accept and override counts per rule (radcds extension of "Feedback": docs/referral.md).
FEEDBACK_RATES_RESPONSE: dict[str, Any] = {
    "title": "Feedback rates",
    "type": "object",
    "required": ["service", "rules"],
    "properties": {
        "service": _STRING,
        "rules": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["ruleId", "accepted", "overridden", "acceptRate", "overrideRate"],
                "properties": {
                    "ruleId": {"type": "string"},
                    "accepted": {"type": "integer", "minimum": 0},
                    "overridden": {"type": "integer", "minimum": 0},
                    "acceptRate": {"type": "number", "minimum": 0, "maximum": 1},
                    "overrideRate": {"type": "number", "minimum": 0, "maximum": 1},
                },
            },
        },
    },
}

#: "Trusting CDS Clients": no, expired or untrusted JWT: a bare 401 with the RFC 6750 challenge.
UNAUTHORIZED = answer(401, None, description="The Bearer JWT is missing or refused (WWW-Authenticate; no body)")


def answers(schema: dict[str, Any], *errors: int) -> Responses:
    """``responses``: 200 with ``schema``, the bare 401, and ``errors`` as OperationOutcomes."""
    return answer(200, schema) | UNAUTHORIZED | outcome_responses(*errors)
