"""Value objects of imaging appropriateness: the order, the patient context and the evaluation.

The vocabulary follows CDS Hooks 2.0 (cards: summary, detail, indicator, suggestions, overrideReasons)
and the Argonaut "CDS Hooks for PAMA" implementation guide (the ``pama-rating`` values
``appropriate`` | ``not-appropriate`` | ``no-criteria-apply``; with too little information no
rating is given and the clinician is asked for what is missing).

Missing data is never a negative: a finding the EHR did not document is *absent from the mapping*,
which is different from a finding documented as not present (``False``). Rules evaluate in
three-valued (Kleene) logic, so an undocumented input yields :attr:`Outcome.NEEDS_INFORMATION`
rather than the answer a negative would give.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date

from radcds.domain.codes import Coding

#: AMA CPT (FHIR R4 terminology page, "CPT").
CPT = "http://www.ama-assn.org/go/cpt"
#: ICD-10-CM (FHIR R4 terminology page).
ICD10CM = "http://hl7.org/fhir/sid/icd-10-cm"
#: RxNorm (FHIR R4 terminology page).
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
#: CDS Hooks non-adherence (override) reason codes (defined by the CDS Hooks IG, 2025 ballot).
NON_ADHERENCE_REASON = "http://terminology.hl7.org/CodeSystem/non-adherence-reason-codes"

#: Scalar an observation carries: a number, a boolean, or a normalised code token (e.g. ``"current"``).
Scalar = bool | int | float | str


class Hook(enum.StrEnum):
    """CDS Hooks 2.0 hooks a rule can apply to (cds-hooks-library hook names)."""

    ORDER_SELECT = "order-select"
    ORDER_SIGN = "order-sign"
    PATIENT_VIEW = "patient-view"


ORDER_HOOKS = frozenset({Hook.ORDER_SELECT, Hook.ORDER_SIGN})


class Rating(enum.StrEnum):
    """Argonaut PAMA ``pama-rating`` values (extension on ServiceRequest)."""

    APPROPRIATE = "appropriate"
    NOT_APPROPRIATE = "not-appropriate"
    NO_CRITERIA_APPLY = "no-criteria-apply"


class Outcome(enum.StrEnum):
    """What an evaluation concluded.

    The first three map one to one onto :class:`Rating`. ``NEEDS_INFORMATION`` gives no rating
    (Argonaut PAMA: ask for the missing indication or data). ``ADVISORY`` is a patient-view
    recommendation (screening, overdue follow-up) that is not a rating of an order.
    """

    APPROPRIATE = "appropriate"
    NOT_APPROPRIATE = "not-appropriate"
    NO_CRITERIA_APPLY = "no-criteria-apply"
    NEEDS_INFORMATION = "needs-information"
    ADVISORY = "advisory"

    @property
    def rating(self) -> Rating | None:
        """The PAMA rating this outcome stands for, or ``None`` when it is not a rating."""
        try:
            return Rating(self.value)
        except ValueError:
            return None


class Indicator(enum.StrEnum):
    """CDS Hooks 2.0 card ``indicator``, ordered by urgency."""

    INFO = "info"
    WARNING = "warning"
    CRITICAL = "critical"

    @property
    def severity(self) -> int:
        """0 for info, 1 for warning, 2 for critical."""
        return ("info", "warning", "critical").index(self.value)


class SuggestionAction(enum.StrEnum):
    """Abstract suggestion kinds; the HTTP layer turns them into CDS Hooks ``actions``.

    ``replace``: swap the order for ``Suggestion.code`` (delete + create, or update of the ServiceRequest);
    ``remove``: delete the order; ``add``: create a new order for ``Suggestion.code`` (e.g. a D-dimer).
    """

    REPLACE = "replace"
    REMOVE = "remove"
    ADD = "add"


@dataclass(frozen=True, slots=True)
class DraftImagingOrder:
    """The imaging study being ordered, not yet signed (FHIR R4 ServiceRequest in CDS Hooks ``draftOrders``).

    Not an order the RIS/EHR has placed over HL7 v2: that is :class:`radcds_reporting.domain.orders.PlacedImagingOrder`.

    ``codes`` come from ``ServiceRequest.code.coding`` (CPT, LOINC, SNOMED CT) and ``reason_codes``
    from ``ServiceRequest.reasonCode[].coding`` (ICD-10-CM, SNOMED CT).
    """

    id: str | None
    codes: tuple[Coding, ...]
    reason_codes: tuple[Coding, ...] = ()
    display: str = ""


@dataclass(frozen=True, slots=True)
class ObservedValue:
    """One documented value of a clinical concept (FHIR Observation ``value[x]`` + ``effective[x]``).

    ``value`` is a number (in the unit the context key defines), a boolean, or a normalised code token.
    """

    value: Scalar
    effective: date | None = None
    unit: str = ""


@dataclass(frozen=True, slots=True)
class ConditionRecord:
    """An active problem or diagnosis (FHIR R4 Condition ``code`` and ``onset[x]``)."""

    code: Coding
    onset: date | None = None


@dataclass(frozen=True, slots=True)
class PriorStudy:
    """An imaging study the patient already had (FHIR ImagingStudy ``procedureCode``/``started``, or Procedure)."""

    codes: tuple[Coding, ...]
    performed: date
    id: str | None = None


@dataclass(frozen=True, slots=True)
class PriorRecommendation:
    """A follow-up imaging recommendation with a due date.

    In FHIR it arrives as a ServiceRequest with status ``active``/``draft``/``on-hold``, ``code`` the
    recommended study (e.g. CT chest CPT 71250), ``occurrenceDateTime`` the due date, ``authoredOn`` the
    date it was made and ``reasonCode`` the finding (e.g. pulmonary nodule, SNOMED CT 427359005).
    """

    study: tuple[Coding, ...]
    due: date
    authored: date | None = None
    reason: tuple[Coding, ...] = ()
    id: str | None = None
    text: str = ""


@dataclass(frozen=True, slots=True)
class PatientContext:
    """What the rules may know about the patient on ``as_of`` (the day of the CDS Hooks call).

    - ``observations``: clinical concept key (``"gcs"``, ``"egfr"``, ``"d-dimer-positive"``, ``"heart-rate"``,
      ``"pack-years"``, ``"smoking-status"``, ``"pregnancy-status"``, ...) to the latest documented value.
      A key that is not there is *unknown*.
    - ``findings``: decision-rule flag (``"vomiting-2-or-more"``, ``"midline-cervical-tenderness"``,
      ``"red-flag-fever"``, ...) to ``True`` (present) or ``False`` (documented absent). A flag that is not
      there is *unknown*.
    - ``allergies``/``prior_studies``/``prior_recommendations``: ``None`` when the EHR sent no such list
      (unknown), an empty tuple when it sent one with nothing in it (known none).
    """

    as_of: date
    birth_date: date | None = None
    sex: str | None = None
    conditions: tuple[ConditionRecord, ...] = ()
    observations: Mapping[str, ObservedValue] = field(default_factory=dict)
    findings: Mapping[str, bool] = field(default_factory=dict)
    allergies: tuple[Coding, ...] | None = None
    prior_studies: tuple[PriorStudy, ...] | None = None
    prior_recommendations: tuple[PriorRecommendation, ...] | None = None
    patient_id: str | None = None

    @property
    def age_years(self) -> float | None:
        """Age on ``as_of`` in years (completed years plus the fraction of the current one)."""
        if self.birth_date is None:
            return None
        return age_in_years(self.birth_date, self.as_of)

    @property
    def pregnant(self) -> bool | None:
        """``True``/``False`` from the ``pregnancy-status`` observation; ``None`` when undocumented."""
        observed = self.observations.get("pregnancy-status")
        if observed is None or not isinstance(observed.value, bool):
            return None
        return observed.value


def age_in_years(birth: date, on: date) -> float:
    """Exact age: completed years plus the elapsed fraction of the year since the last birthday."""
    if on < birth:
        raise ValueError("the date is before the birth date")
    years = on.year - birth.year - ((on.month, on.day) < (birth.month, birth.day))
    last = _anniversary(birth, birth.year + years)
    following = _anniversary(birth, birth.year + years + 1)
    return years + (on - last).days / (following - last).days


def _anniversary(birth: date, year: int) -> date:
    try:
        return birth.replace(year=year)
    except ValueError:  # 29 February in a common year
        return date(year, 3, 1)


@dataclass(frozen=True, slots=True)
class Citation:
    """A published source of a rule (authors, title, journal, year; DOI/PMID only when known for certain)."""

    authors: tuple[str, ...]
    title: str
    journal: str
    year: int
    volume: str = ""
    pages: str = ""
    doi: str = ""
    pmid: str = ""
    url: str = ""

    def text(self) -> str:
        """Vancouver-style one-line reference."""
        authors = ", ".join(self.authors[:3]) + (", et al" if len(self.authors) > 3 else "")
        ref = f"{authors}. {self.title}. *{self.journal}*. {self.year}"
        if self.volume:
            ref += f";{self.volume}"
        if self.pages:
            ref += f":{self.pages}"
        ref += "."
        if self.doi:
            ref += f" doi:{self.doi}."
        if self.pmid:
            ref += f" PMID {self.pmid}."
        if self.url and not self.doi:
            ref += f" {self.url}"
        return ref


@dataclass(frozen=True, slots=True)
class RuleReference:
    """Which rule produced an evaluation: id, version, title, citations and an optional canonical URL.

    ``url`` is what the HTTP layer puts in the Argonaut ``pama-rating-auc-applied`` extension.
    """

    id: str
    version: str
    title: str
    citations: tuple[Citation, ...]
    url: str = ""


@dataclass(frozen=True, slots=True)
class Suggestion:
    """An abstract suggestion on a card (CDS Hooks 2.0 ``suggestions[]``).

    ``codes`` name the target study or test, one Coding per code system (e.g. LOINC 48065-7 and CPT 85379
    for a D-dimer); empty for ``remove``, which targets the evaluated order itself.
    """

    action: SuggestionAction
    label: str
    codes: tuple[Coding, ...] = ()
    recommended: bool = False

    @property
    def code(self) -> Coding | None:
        """The first target Coding, if any."""
        return self.codes[0] if self.codes else None


@dataclass(frozen=True, slots=True)
class MissingInput:
    """An input a rule needs that the context does not document (key of the context and a human label)."""

    key: str
    label: str


@dataclass(frozen=True, slots=True)
class Evaluation:
    """The result for one order (order hooks) or one patient-view rule.

    - ``outcome``/``rating``: the appropriateness outcome; ``rating`` is ``None`` for needs-information and
      advisory outcomes.
    - ``rule``: the rule that decided the outcome (``None`` when no rule applied: no-criteria-apply, or an
      order without indication).
    - ``safety``: safety rules (contrast, pregnancy) that fired; their advice is merged into this card and
      their indicator raises ``indicator``.
    - ``summary`` (< 140 chars) and ``detail`` (markdown that cites the rule and lists the criteria applied).
    - ``criteria``: the criteria (with the values used) that led to the outcome, one line each.
    - ``missing``: for needs-information, what to document.
    """

    outcome: Outcome
    summary: str
    detail: str
    indicator: Indicator
    rule: RuleReference | None = None
    order_id: str | None = None
    branch: str = ""
    suggestions: tuple[Suggestion, ...] = ()
    override_reasons: tuple[Coding, ...] = ()
    missing: tuple[MissingInput, ...] = ()
    criteria: tuple[str, ...] = ()
    safety: tuple[RuleReference, ...] = ()

    def __post_init__(self) -> None:
        if len(self.summary) >= 140:
            raise ValueError(f"card summary must be shorter than 140 characters: {self.summary!r}")
        if self.outcome is Outcome.NEEDS_INFORMATION and not self.missing:
            raise ValueError("a needs-information evaluation must say what is missing")

    @property
    def rating(self) -> Rating | None:
        """The Argonaut ``pama-rating``; ``None`` when no rating can be given."""
        return self.outcome.rating

    @property
    def needs_information(self) -> bool:
        """True when the rule could not decide for lack of documented inputs."""
        return self.outcome is Outcome.NEEDS_INFORMATION

    @property
    def shows_card(self) -> bool:
        """Whether a card should be shown (alert fatigue: no card for appropriate or unrated orders).

        A card is shown for not-appropriate, needs-information and advisory outcomes, and whenever a
        safety rule fired. Appropriate and no-criteria-apply orders get only the silent rating.
        """
        if self.safety:
            return True
        return self.outcome in (Outcome.NOT_APPROPRIATE, Outcome.NEEDS_INFORMATION, Outcome.ADVISORY)
