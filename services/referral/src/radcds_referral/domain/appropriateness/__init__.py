"""Imaging appropriateness: published decision rules as data, evaluated on FHIR-derived context.

Pure domain package (standard library only). The HTTP layer (CDS Hooks 2.0 service) builds
:class:`DraftImagingOrder` and :class:`PatientContext` with ``radcds_referral.adapters.clinical_context``, loads
the rules once at start-up with :func:`load_rules` and calls :func:`evaluate_order` per draft order
(order-select / order-sign) or :func:`evaluate_patient` (patient-view). See ``docs/referral.md, section Rules``.
"""

from radcds_referral.domain.appropriateness.criteria import CodeSet, Truth
from radcds_referral.domain.appropriateness.engine import (
    DEFAULT_VAGUE_INDICATIONS,
    evaluate_order,
    evaluate_orders,
    evaluate_patient,
    rule_references,
)
from radcds_referral.domain.appropriateness.model import (
    CPT,
    ICD10CM,
    NON_ADHERENCE_REASON,
    RXNORM,
    Citation,
    ConditionRecord,
    DraftImagingOrder,
    Evaluation,
    Hook,
    Indicator,
    MissingInput,
    ObservedValue,
    Outcome,
    PatientContext,
    PriorRecommendation,
    PriorStudy,
    Rating,
    RuleReference,
    Suggestion,
    SuggestionAction,
    age_in_years,
)
from radcds_referral.domain.appropriateness.rules import Rule, RuleFormatError, RuleKind, load_rules, parse_rule

__all__ = [
    "CPT",
    "DEFAULT_VAGUE_INDICATIONS",
    "ICD10CM",
    "NON_ADHERENCE_REASON",
    "RXNORM",
    "Citation",
    "CodeSet",
    "ConditionRecord",
    "DraftImagingOrder",
    "Evaluation",
    "Hook",
    "Indicator",
    "MissingInput",
    "ObservedValue",
    "Outcome",
    "PatientContext",
    "PriorRecommendation",
    "PriorStudy",
    "Rating",
    "Rule",
    "RuleFormatError",
    "RuleKind",
    "RuleReference",
    "Suggestion",
    "SuggestionAction",
    "Truth",
    "age_in_years",
    "evaluate_order",
    "evaluate_orders",
    "evaluate_patient",
    "load_rules",
    "parse_rule",
    "rule_references",
]
