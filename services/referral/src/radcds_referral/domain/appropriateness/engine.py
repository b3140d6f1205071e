"""Evaluate imaging orders (order-select / order-sign) and the patient chart (patient-view) against rules.

Precedence for one order (at most one :class:`Evaluation` per order, CDS Hooks alert-fatigue guidance):

1. **Safety rules** (``kind: safety``: iodinated contrast, pregnancy) matching the order's study code are
   checked first. Those that fire put their warning (and suggestions) at the top of the card and raise
   its indicator; an undocumented input never makes a safety rule fire.
2. **Indication**: an imaging order without ``reasonCode``, or only with a vague one (e.g. R69 "illness,
   unspecified"), gets *needs-information* and no rating (Argonaut PAMA).
3. **Clinical rules** (``kind: clinical``) matching study code *and* indication are tried by descending
   ``priority`` (ties by id). The first whose ``applies_when`` is true (or undecidable) decides the rating;
   a rule whose ``applies_when`` is false is skipped. No clinical rule → *no-criteria-apply*.

The rating always comes from step 2/3; safety advice is merged into the same card.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, timedelta

from radcds.domain.codes import Coding
from radcds_referral.domain.appropriateness.criteria import CodeSet, Truth, any_match
from radcds_referral.domain.appropriateness.model import (
    CPT,
    ICD10CM,
    DraftImagingOrder,
    Evaluation,
    Hook,
    Indicator,
    MissingInput,
    Outcome,
    PatientContext,
    RuleReference,
    Scalar,
    Suggestion,
    SuggestionAction,
    age_in_years,
)
from radcds_referral.domain.appropriateness.rules import Branch, Rule, RuleKind, WhenUnknown

#: ICD-10-CM codes too unspecific to rate an imaging order (R69 illness unspecified, R68.89 other general
#: symptoms, R52 pain unspecified, Z00.0- general adult examination, Z01.89 other specified examinations,
#: Z04.9 examination for unspecified reason). Our local choice, not from a published source.
DEFAULT_VAGUE_INDICATIONS: tuple[CodeSet, ...] = (
    CodeSet(ICD10CM, frozenset({"R69", "R6889", "R52", "Z0189", "Z049"}), ("Z000",), label="vague indication"),
)
#: CPT "Radiology" section (70010 to 79999): an order in it is an imaging order even if no rule lists it.
RADIOLOGY_CPT: tuple[CodeSet, ...] = (CodeSet(CPT, ranges=(("70010", "79999"),), label="CPT radiology"),)

INDICATION = MissingInput("indication", "Reason for the study (diagnosis or symptom, ICD-10-CM or SNOMED CT)")
SPECIFIC_INDICATION = MissingInput("specific-indication", "A specific reason for the study (the one given is vague)")


@dataclass(frozen=True, slots=True)
class _Facts:
    """The patient context seen through one rule (labels, freshness limits, derived keys)."""

    rule: Rule
    context: PatientContext
    order: DraftImagingOrder | None
    today: date

    def finding(self, key: str) -> bool | None:
        return self.context.findings.get(key)

    def value(self, key: str) -> Scalar | None:
        observed = self._observed(key)
        if observed is not None:
            return observed
        if key == "age":
            birth = self.context.birth_date
            return None if birth is None or birth > self.today else age_in_years(birth, self.today)
        if key == "sex":
            return self.context.sex
        if key == "symptom-duration-days":
            return self._indication_duration()
        return None

    def _observed(self, key: str) -> Scalar | None:
        observed = self.context.observations.get(key)
        if observed is None:
            return None
        spec = self.rule.inputs.get(key)
        max_age = spec.max_age_days if spec else None
        effective = observed.effective
        if max_age is not None and effective is not None and (self.today - effective).days > max_age:
            return None  # too old to stand for the current state: treated as undocumented
        return observed.value

    def _indication_duration(self) -> int | None:
        """Days since the onset of the active condition that is the order's indication (the earliest onset)."""
        if self.order is None:
            return None
        reasons = {(c.system, c.code.replace(".", "").upper()) for c in self.order.reason_codes}
        onsets = [
            c.onset
            for c in self.context.conditions
            if c.onset is not None and (c.code.system, c.code.code.replace(".", "").upper()) in reasons
        ]
        return (self.today - min(onsets)).days if onsets else None

    def score(self, key: str) -> tuple[float, float, frozenset[str]] | None:
        for score in self.rule.scores:
            if score.key == key:
                documented = self._observed(key)
                if isinstance(documented, int | float) and not isinstance(documented, bool):
                    return float(documented), float(documented), frozenset()
                return score.interval(self)
        return None

    def order_matches(self, code_sets: tuple[CodeSet, ...]) -> bool:
        return self.order is not None and any_match(code_sets, self.order.codes)

    def prior_study(self, code_sets: tuple[CodeSet, ...], within_days: int) -> bool | None:
        studies = self.context.prior_studies
        if studies is None:
            return None
        since = self.today - timedelta(days=within_days)
        return any(since <= s.performed <= self.today and any_match(code_sets, s.codes) for s in studies)

    def overdue_recommendation(
        self, code_sets: tuple[CodeSet, ...], reasons: tuple[CodeSet, ...], grace_days: int
    ) -> bool | None:
        recommendations = self.context.prior_recommendations
        if recommendations is None:
            return None
        limit = self.today - timedelta(days=grace_days)
        overdue = [
            r
            for r in recommendations
            if any_match(code_sets, r.study) and r.due < limit and (not reasons or any_match(reasons, r.reason))
        ]
        if not overdue:
            return False
        studies = self.context.prior_studies
        if studies is None:
            return None
        for rec in overdue:
            since = rec.authored or rec.due
            if not any(s.performed >= since and any_match(code_sets, s.codes) for s in studies):
                return True
        return False

    def label(self, key: str) -> str:
        return self.rule.label(key)


@dataclass(frozen=True, slots=True)
class _Decision:
    applicable: bool
    branch: Branch | None = None
    missing: frozenset[str] = frozenset()


def _decide(rule: Rule, facts: _Facts) -> _Decision:
    """Apply one rule: first TRUE branch, unless earlier undecidable branches could give another outcome."""
    if rule.applies_when is not None:
        applies = rule.applies_when.evaluate(facts)
        if applies.truth is Truth.FALSE:
            return _Decision(applicable=False)
        if applies.truth is Truth.UNKNOWN:
            return _Decision(applicable=True, missing=applies.missing)
    pending: list[tuple[Branch, frozenset[str]]] = []
    for branch in rule.branches:
        assert branch.when is not None  # checked by the parser
        result = branch.when.evaluate(facts)
        if result.truth is Truth.TRUE:
            if all(b.outcome is branch.outcome for b, _ in pending):
                return _Decision(applicable=True, branch=branch)
            return _Decision(applicable=True, missing=frozenset().union(*(m for _, m in pending)))
        if result.truth is Truth.UNKNOWN:
            pending.append((branch, result.missing))
    if pending:
        return _Decision(applicable=True, missing=frozenset().union(*(m for _, m in pending)))
    return _Decision(applicable=True, branch=rule.otherwise)


def _unique(lines: Iterable[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(lines))


def _sources(rule: Rule) -> str:
    refs = "\n".join(f"- {c.text()}" for c in rule.citations)
    return f"**Source** ({rule.title}, v{rule.version}):\n{refs}"


def _from_branch(rule: Rule, branch: Branch, facts: _Facts) -> Evaluation:
    criteria: list[str] = []
    if rule.applies_when is not None:
        criteria += rule.applies_when.explain(facts)
    if branch.when is not None:
        criteria += branch.when.explain(facts)
    lines = _unique(criteria)
    detail = branch.detail.rstrip()
    if lines:
        detail += "\n\n**Criteria applied:**\n" + "\n".join(f"- {line}" for line in lines)
    detail += "\n\n" + _sources(rule)
    order = facts.order
    suggestions = tuple(
        Suggestion(s.action, s.label, s.codes, s.recommended)
        for s in branch.suggestions
        if (not s.when_order or (order is not None and any_match(s.when_order, order.codes)))
        and (order is not None or s.action is SuggestionAction.ADD)
    )
    return Evaluation(
        outcome=branch.outcome,
        summary=branch.summary,
        detail=detail,
        indicator=branch.indicator,
        rule=rule.reference,
        order_id=order.id if order else None,
        branch=branch.id,
        suggestions=suggestions,
        override_reasons=rule.override_reasons if branch.outcome is not Outcome.APPROPRIATE else (),
        criteria=lines,
    )


def _needs_information(rule: Rule, missing: frozenset[str], facts: _Facts) -> Evaluation:
    order_of = {key: i for i, key in enumerate(rule.inputs)}
    items = tuple(MissingInput(k, rule.label(k)) for k in sorted(missing, key=lambda k: (order_of.get(k, 999), k)))
    detail = (
        rule.needs_information.detail.rstrip()
        + "\n\n**Not documented:**\n"
        + "\n".join(f"- {m.label}" for m in items)
        + "\n\n"
        + _sources(rule)
    )
    return Evaluation(
        outcome=Outcome.NEEDS_INFORMATION,
        summary=rule.needs_information.summary,
        detail=detail,
        indicator=Indicator.INFO,
        rule=rule.reference,
        order_id=facts.order.id if facts.order else None,
        missing=items,
    )


def _ask_for_indication(order: DraftImagingOrder, missing: MissingInput) -> Evaluation:
    vague = missing is SPECIFIC_INDICATION
    summary = "Give a more specific reason for this imaging study" if vague else "Add the reason for this imaging study"
    detail = (
        "Appropriateness can only be checked against a documented clinical indication. "
        + ("The reason given is too general to match any decision rule. " if vague else "The order has no reason. ")
        + "Add the diagnosis or symptom (ICD-10-CM or SNOMED CT) that prompted the study and sign again."
    )
    return Evaluation(
        outcome=Outcome.NEEDS_INFORMATION,
        summary=summary,
        detail=detail,
        indicator=Indicator.INFO,
        order_id=order.id,
        missing=(missing,),
    )


def _no_criteria(order: DraftImagingOrder, rule: Rule | None = None) -> Evaluation:
    if rule is None:
        summary = "No decision rule in this service covers this study and indication"
        detail = "No encoded decision rule applies to this combination of study and indication."
    else:
        summary = f"{rule.title}: no criterion applies to this patient"
        detail = f"The {rule.title} applies to this study, but none of its outcomes matched.\n\n{_sources(rule)}"
    return Evaluation(
        outcome=Outcome.NO_CRITERIA_APPLY,
        summary=summary[:139],
        detail=detail,
        indicator=Indicator.INFO,
        rule=rule.reference if rule else None,
        order_id=order.id,
    )


def _by_precedence(rules: Iterable[Rule]) -> list[Rule]:
    return sorted(rules, key=lambda r: (-r.priority, r.id))


def _clinical(
    order: DraftImagingOrder,
    context: PatientContext,
    rules: Sequence[Rule],
    hook: Hook,
    today: date,
    vague_indications: tuple[CodeSet, ...],
) -> Evaluation:
    imaging = any_match(RADIOLOGY_CPT, order.codes) or any(any_match(r.order_codes, order.codes) for r in rules)
    if not order.reason_codes:
        return _ask_for_indication(order, INDICATION) if imaging else _no_criteria(order)
    if all(any_match(vague_indications, (c,)) for c in order.reason_codes):
        return _ask_for_indication(order, SPECIFIC_INDICATION) if imaging else _no_criteria(order)
    candidates = [r for r in rules if r.kind is RuleKind.CLINICAL and hook in r.hooks and r.matches_order(order)]
    for rule in _by_precedence(candidates):
        facts = _Facts(rule, context, order, today)
        decision = _decide(rule, facts)
        if not decision.applicable:
            continue
        if decision.missing:
            if rule.when_unknown is WhenUnknown.IGNORE:
                continue
            return _needs_information(rule, decision.missing, facts)
        if decision.branch is None:
            return _no_criteria(order, rule)
        return _from_branch(rule, decision.branch, facts)
    return _no_criteria(order)


def _merge(safety: list[Evaluation], clinical: Evaluation) -> Evaluation:
    """One card: safety warnings first, then the appropriateness result; the rating stays the clinical one."""
    indicator = max((e.indicator for e in [*safety, clinical]), key=lambda i: i.severity)
    sections = [e.detail for e in safety]
    if clinical.rule is not None or clinical.outcome is Outcome.NEEDS_INFORMATION:
        sections.append(f"**Appropriateness:** {clinical.summary}\n\n{clinical.detail}")
    suggestions = _unique_suggestions([s for e in [*safety, clinical] for s in e.suggestions])
    overrides = tuple(dict.fromkeys(c for e in [*safety, clinical] for c in e.override_reasons))
    return Evaluation(
        outcome=clinical.outcome,
        summary=safety[0].summary,
        detail="\n\n---\n\n".join(sections),
        indicator=indicator,
        rule=clinical.rule,
        order_id=clinical.order_id,
        branch=clinical.branch,
        suggestions=suggestions,
        override_reasons=overrides,
        missing=clinical.missing,
        criteria=_unique(line for e in [*safety, clinical] for line in e.criteria),
        safety=tuple(e.rule for e in safety if e.rule is not None),
    )


def _unique_suggestions(items: list[Suggestion]) -> tuple[Suggestion, ...]:
    seen: set[tuple[SuggestionAction, tuple[Coding, ...]]] = set()
    out = []
    for s in items:
        if (s.action, s.codes) not in seen:
            seen.add((s.action, s.codes))
            out.append(s)
    return tuple(out)


def evaluate_order(
    order: DraftImagingOrder,
    context: PatientContext,
    rules: Sequence[Rule],
    *,
    hook: Hook = Hook.ORDER_SIGN,
    today: date | None = None,
    vague_indications: tuple[CodeSet, ...] = DEFAULT_VAGUE_INDICATIONS,
) -> Evaluation:
    """Rate one imaging order; always returns exactly one evaluation (see the module docstring for precedence)."""
    day = today or context.as_of
    safety: list[Evaluation] = []
    for rule in _by_precedence(r for r in rules if r.kind is RuleKind.SAFETY and hook in r.hooks):
        if not rule.matches_order(order):
            continue
        facts = _Facts(rule, context, order, day)
        decision = _decide(rule, facts)
        if decision.applicable and decision.branch is not None and not decision.missing:
            safety.append(_from_branch(rule, decision.branch, facts))
    clinical = _clinical(order, context, rules, hook, day, vague_indications)
    return _merge(safety, clinical) if safety else clinical


def evaluate_orders(
    orders: Iterable[DraftImagingOrder],
    context: PatientContext,
    rules: Sequence[Rule],
    *,
    hook: Hook = Hook.ORDER_SIGN,
    today: date | None = None,
) -> list[Evaluation]:
    """:func:`evaluate_order` for each order, in order."""
    return [evaluate_order(o, context, rules, hook=hook, today=today) for o in orders]


def evaluate_patient(context: PatientContext, rules: Sequence[Rule], today: date | None = None) -> list[Evaluation]:
    """Run the patient-view (advisory) rules; returns the ones that fired or could not decide, by precedence."""
    day = today or context.as_of
    out: list[Evaluation] = []
    for rule in _by_precedence(r for r in rules if r.kind is RuleKind.ADVISORY and Hook.PATIENT_VIEW in r.hooks):
        facts = _Facts(rule, context, None, day)
        decision = _decide(rule, facts)
        if not decision.applicable:
            continue
        if decision.missing:
            if rule.when_unknown is WhenUnknown.NEEDS_INFORMATION:
                out.append(_needs_information(rule, decision.missing, facts))
            continue
        if decision.branch is not None:
            out.append(_from_branch(rule, decision.branch, facts))
    return out


def rule_references(rules: Iterable[Rule]) -> list[RuleReference]:
    """References of all rules (for discovery/description text)."""
    return [r.reference for r in _by_precedence(rules)]
