"""Follow-up guidelines as versioned data, and the one engine that applies them.

A guideline (``services/fusion/knowledge/guidelines/*.json``, schema ``guideline.schema.json``) is a list of
branches: conditions on a nodule (composition, size band, solid component, status against the prior, features)
and on the patient (risk), each with an outcome (category, recommendation, follow-up interval) and a rank. The
engine picks, per nodule, the first branch whose conditions all hold; the exam's answer is the outcome of highest
rank. Adding or changing a guideline is a data change: no code knows Fleischner or Lung-RADS by name.

Guidelines encoded: Fleischner Society 2017 (incidental nodules) and Lung-RADS v2022 (screening CT); see
docs/fusion.md for the catalogue and citations.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from enum import StrEnum

from radcds_fusion.domain.nodules import Composition, Feature, Nodule, round_half_up


class NoduleStatus(StrEnum):
    """A nodule against the patient's prior study (Lung-RADS v2022 "baseline", "new", "growing", stable)."""

    #: First screening (or first study): no prior to compare with.
    BASELINE = "baseline"
    #: Absent on the prior study.
    NEW = "new"
    #: Lung-RADS growth: mean diameter up by more than 1.5 mm within 12 months.
    GROWING = "growing"
    #: Unchanged within the measurement tolerance.
    STABLE = "stable"
    #: Smaller than on the prior.
    DECREASING = "decreasing"


class Risk(StrEnum):
    """Fleischner 2017 patient risk: high with a smoking history or other known risk factors."""

    LOW = "low"
    HIGH = "high"


@dataclass(frozen=True, slots=True)
class Range:
    """A half-open or closed numeric band, e.g. ``{"gte": 6, "lt": 8}``."""

    gte: float | None = None
    gt: float | None = None
    lt: float | None = None
    lte: float | None = None

    def contains(self, value: float) -> bool:
        """Whether ``value`` lies in the band."""
        return (
            (self.gte is None or value >= self.gte)
            and (self.gt is None or value > self.gt)
            and (self.lt is None or value < self.lt)
            and (self.lte is None or value <= self.lte)
        )


@dataclass(frozen=True, slots=True)
class Conditions:
    """What a branch requires; a condition left ``None`` (or empty) holds for every nodule."""

    composition: frozenset[Composition] | None = None
    multiplicity: str | None = None  # "single" | "multiple"
    risk: Risk | None = None
    status: frozenset[NoduleStatus] | None = None
    size_mm: Range | None = None
    volume_mm3: Range | None = None
    solid_component_mm: Range | None = None
    features_all: frozenset[Feature] = frozenset()
    features_none: frozenset[Feature] = frozenset()
    prior_category: frozenset[str] | None = None


@dataclass(frozen=True, slots=True)
class FollowUp:
    """The follow-up study a guideline recommends and its interval in months from this study."""

    procedure: str
    min_months: float
    max_months: float
    optional: bool = False


@dataclass(frozen=True, slots=True)
class Outcome:
    """A guideline's answer: category (Lung-RADS) or none (Fleischner), text, follow-up and rank."""

    rank: int
    recommendation: str
    category: str | None = None
    follow_up: FollowUp | None = None


@dataclass(frozen=True, slots=True)
class Branch:
    """One row of a guideline table."""

    id: str
    when: Conditions
    outcome: Outcome


@dataclass(frozen=True, slots=True)
class Upgrade:
    """A post-classification rule: a nodule in ``from_categories`` with ``feature`` gets ``outcome`` (4X)."""

    id: str
    from_categories: frozenset[str]
    feature: Feature
    outcome: Outcome


@dataclass(frozen=True, slots=True)
class ExamRule:
    """An exam-level finding that decides the category by itself (Lung-RADS 0)."""

    id: str
    flag: str
    outcome: Outcome


@dataclass(frozen=True, slots=True)
class Applicability:
    """Who a guideline is for. ``screening`` is "required" (Lung-RADS) or "excluded" (Fleischner)."""

    min_age_years: int | None = None
    screening: str | None = None
    excluded_when: tuple[tuple[str, str], ...] = ()  # (context flag, reason shown to the clinician)


@dataclass(frozen=True, slots=True)
class Guideline:
    """A versioned, cited follow-up guideline."""

    id: str
    version: str
    title: str
    citation: str
    #: Decimal places of the mean diameter the guideline reads (0: nearest mm; 1: 0.1 mm).
    diameter_places: int
    applicability: Applicability
    branches: tuple[Branch, ...]
    upgrades: tuple[Upgrade, ...] = ()
    exam_rules: tuple[ExamRule, ...] = ()
    no_nodule_outcome: Outcome | None = None
    #: Suffix modifiers by exam flag, e.g. ("significant-other-finding", "S").
    modifiers: tuple[tuple[str, str], ...] = ()
    #: Assumption used when a branch needs the patient's risk and it is unknown.
    unknown_risk_assumption: Risk = Risk.HIGH


@dataclass(frozen=True, slots=True)
class PatientContext:
    """What the guidelines need from the chart; ``None`` means not known (and is named as missing)."""

    age_years: int | None = None
    known_cancer: bool | None = None
    immunosuppressed: bool | None = None
    screening: bool | None = None
    risk: Risk | None = None

    def flag(self, name: str) -> bool | None:
        """A boolean context flag by its data name (``known_cancer``, ``immunosuppressed``)."""
        value = getattr(self, name, None)
        return value if isinstance(value, bool) else None


@dataclass(frozen=True, slots=True)
class NoduleInput:
    """A nodule as the engine sees it: the measurement, its status against the prior, the prior's category."""

    nodule: Nodule
    status: NoduleStatus = NoduleStatus.BASELINE
    prior_category: str | None = None


@dataclass(frozen=True, slots=True)
class NoduleResult:
    """The branch that decided one nodule, and how the nodule was measured for it."""

    nodule: NoduleInput
    branch_id: str | None
    outcome: Outcome | None
    size_used: str


@dataclass(frozen=True, slots=True)
class GuidelineAssessment:
    """A guideline applied to one exam."""

    guideline_id: str
    guideline_version: str
    citation: str
    applies: bool
    not_applicable_reason: str | None = None
    outcome: Outcome | None = None
    category: str | None = None
    nodules: tuple[NoduleResult, ...] = ()
    assumptions: tuple[str, ...] = ()
    missing: tuple[str, ...] = field(default_factory=tuple)


def assess(
    guideline: Guideline,
    *,
    nodules: Iterable[NoduleInput],
    context: PatientContext,
    exam_flags: frozenset[str] = frozenset(),
) -> GuidelineAssessment:
    """Apply ``guideline`` to the nodules of one exam in the patient's context."""
    inputs = tuple(nodules)
    missing: list[str] = []
    reason = _not_applicable(guideline.applicability, context, missing)
    base = GuidelineAssessment(
        guideline_id=guideline.id, guideline_version=guideline.version, citation=guideline.citation, applies=True
    )
    if reason is not None:
        return replace(base, applies=False, not_applicable_reason=reason, missing=tuple(missing))
    assumptions: list[str] = []
    for rule in guideline.exam_rules:
        if rule.flag in exam_flags:
            return _finish(guideline, base, rule.outcome, (), assumptions, missing, exam_flags)
    if not inputs:
        return _finish(guideline, base, guideline.no_nodule_outcome, (), assumptions, missing, exam_flags)
    multiplicity = "multiple" if len(inputs) > 1 else "single"
    results = tuple(_classify(guideline, n, multiplicity, context, assumptions, missing) for n in inputs)
    if assumptions and context.risk is None:
        missing.append("smoking history and other lung cancer risk factors")
    decided = [r.outcome for r in results if r.outcome is not None]
    worst = max(decided, key=lambda o: o.rank) if decided else None
    return _finish(guideline, base, worst, results, assumptions, missing, exam_flags)


def _finish(
    guideline: Guideline,
    base: GuidelineAssessment,
    outcome: Outcome | None,
    results: tuple[NoduleResult, ...],
    assumptions: list[str],
    missing: list[str],
    exam_flags: frozenset[str],
) -> GuidelineAssessment:
    category = outcome.category if outcome is not None else None
    if category is not None:
        category += "".join(suffix for flag, suffix in guideline.modifiers if flag in exam_flags)
    return replace(
        base,
        outcome=outcome,
        category=category,
        nodules=results,
        assumptions=tuple(dict.fromkeys(assumptions)),
        missing=tuple(dict.fromkeys(missing)),
    )


def _not_applicable(rules: Applicability, context: PatientContext, missing: list[str]) -> str | None:
    if rules.screening == "required" and context.screening is not True:
        if context.screening is None:
            missing.append("whether the CT is a lung cancer screening examination")
        return "applies to lung cancer screening CT only"
    if rules.screening == "excluded" and context.screening is True:
        return "does not apply to lung cancer screening (Lung-RADS applies)"
    if rules.min_age_years is not None:
        if context.age_years is None:
            missing.append("patient age")
        elif context.age_years < rules.min_age_years:
            return f"does not apply to patients younger than {rules.min_age_years} years"
    for flag, text in rules.excluded_when:
        value = context.flag(flag)
        if value is True:
            return text
        if value is None:
            missing.append(flag.replace("_", " ") + " (not documented)")
    return None


def _classify(
    guideline: Guideline,
    item: NoduleInput,
    multiplicity: str,
    context: PatientContext,
    assumptions: list[str],
    missing: list[str],
) -> NoduleResult:
    nodule = item.nodule
    diameter = nodule.mean_diameter_mm
    size = round_half_up(diameter, guideline.diameter_places) if diameter is not None else None
    if size is not None:
        size_used = f"mean diameter {size:g} mm"
        if diameter is not None and abs(size - diameter) > 1e-9:
            size_used += f" (from {diameter:g} mm)"
    else:
        size_used = f"volume {nodule.volume_mm3:g} mm³"
    for branch in guideline.branches:
        if _matches(branch.when, item, multiplicity, size, context, guideline, assumptions):
            outcome = branch.outcome
            for upgrade in guideline.upgrades:
                if outcome.category in upgrade.from_categories and upgrade.feature in nodule.features:
                    return NoduleResult(item, upgrade.id, upgrade.outcome, size_used)
            return NoduleResult(item, branch.id, outcome, size_used)
    if nodule.composition is Composition.PART_SOLID and nodule.solid_component_mm is None:
        missing.append("solid component size of the part-solid nodule")
    return NoduleResult(item, None, None, size_used)


def _matches(
    when: Conditions,
    item: NoduleInput,
    multiplicity: str,
    size: float | None,
    context: PatientContext,
    guideline: Guideline,
    assumptions: list[str],
) -> bool:
    nodule = item.nodule
    if when.composition is not None and nodule.composition not in when.composition:
        return False
    if when.multiplicity is not None and when.multiplicity != multiplicity:
        return False
    if when.status is not None and item.status not in when.status:
        return False
    if when.prior_category is not None and item.prior_category not in when.prior_category:
        return False
    if not when.features_all <= nodule.features or when.features_none & nodule.features:
        return False
    if when.solid_component_mm is not None and (
        nodule.solid_component_mm is None
        or not when.solid_component_mm.contains(round_half_up(nodule.solid_component_mm, guideline.diameter_places))
    ):
        return False
    if when.size_mm is not None or when.volume_mm3 is not None:
        if size is not None and when.size_mm is not None:
            if not when.size_mm.contains(size):
                return False
        elif nodule.volume_mm3 is not None and when.volume_mm3 is not None:
            if not when.volume_mm3.contains(nodule.volume_mm3):
                return False
        else:
            return False
    if when.risk is not None:
        risk = context.risk
        if risk is None:
            risk = guideline.unknown_risk_assumption
            assumptions.append(f"smoking history and other risk factors unknown: {risk.value}-risk management applied")
        if risk is not when.risk:
            return False
    return True


def fleischner_risk(
    *, smoking_status: str | None, pack_years: float | None, other_risk_factor: bool | None
) -> Risk | None:
    """Fleischner 2017 risk: low with minimal or absent smoking history and no other known risk factor;
    high with a smoking history or another known risk factor (MacMahon 2017, Table 1 footnote). ``None`` when
    nothing is documented."""
    if other_risk_factor:
        return Risk.HIGH
    if smoking_status in {"current", "former"} or (pack_years is not None and pack_years > 0):
        return Risk.HIGH
    return Risk.LOW if smoking_status == "never" else None
