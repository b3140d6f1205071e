"""A small declarative condition language, evaluated in three-valued (Kleene) logic.

A rule's criteria are trees of ``all``/``any``/``not`` over leaves that test the patient context:
findings (present/absent/unknown/known), values (comparisons), the ordered study, prior studies and
overdue follow-up recommendations. Every leaf is TRUE, FALSE or UNKNOWN; UNKNOWN carries the keys of
the undocumented inputs, so that a rule that cannot decide says what it needs instead of treating the
gap as a negative. Numeric scores (e.g. the Wells score) are computed as intervals: an undocumented
item widens the interval, and a comparison is decided whenever the whole interval is on one side.

The JSON form of each node is documented in ``services/referral/knowledge/rule.schema.json``.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol

from radcds.domain.codes import Coding
from radcds_referral.domain.appropriateness.model import Scalar


class Truth(enum.Enum):
    """Kleene truth value."""

    TRUE = "true"
    FALSE = "false"
    UNKNOWN = "unknown"

    @staticmethod
    def of(value: bool) -> Truth:
        """TRUE or FALSE from a Python boolean."""
        return Truth.TRUE if value else Truth.FALSE

    def negate(self) -> Truth:
        """Kleene NOT."""
        if self is Truth.UNKNOWN:
            return self
        return Truth.FALSE if self is Truth.TRUE else Truth.TRUE


@dataclass(frozen=True, slots=True)
class Result:
    """Truth value of a node and, when UNKNOWN, the undocumented input keys behind it."""

    truth: Truth
    missing: frozenset[str] = frozenset()


TRUE = Result(Truth.TRUE)
FALSE = Result(Truth.FALSE)


def normalise_code(code: str) -> str:
    """Compare codes without dots and case (ICD-10-CM ``M54.50`` matches prefix ``M545``)."""
    return code.replace(".", "").strip().upper()


@dataclass(frozen=True, slots=True)
class CodeSet:
    """Codes of one system, as exact codes, prefixes (ICD-10-CM chapters) and inclusive ranges (CPT)."""

    system: str
    codes: frozenset[str] = frozenset()
    prefixes: tuple[str, ...] = ()
    ranges: tuple[tuple[str, str], ...] = ()
    label: str = ""

    def matches(self, coding: Coding) -> bool:
        """Whether ``coding`` (same system) is in the set."""
        if coding.system != self.system:
            return False
        code = normalise_code(coding.code)
        if code in self.codes or any(code.startswith(p) for p in self.prefixes):
            return True
        return any(len(lo) == len(code) and lo <= code <= hi for lo, hi in self.ranges)


def any_match(code_sets: Iterable[CodeSet], codings: Iterable[Coding]) -> bool:
    """Whether any coding is in any of the code sets."""
    sets = tuple(code_sets)
    return any(s.matches(c) for c in codings for s in sets)


class Facts(Protocol):
    """What a condition can ask of the patient context (implemented by the engine)."""

    def finding(self, key: str) -> bool | None:
        """Present (True), documented absent (False) or unknown (None)."""

    def value(self, key: str) -> Scalar | None:
        """The documented value of a non-score key, or None."""

    def score(self, key: str) -> tuple[float, float, frozenset[str]] | None:
        """For a score key: its interval (low, high) and the keys of undocumented items; None if not a score."""

    def order_matches(self, code_sets: tuple[CodeSet, ...]) -> bool:
        """Whether the order being evaluated is in the code sets."""

    def prior_study(self, code_sets: tuple[CodeSet, ...], within_days: int) -> bool | None:
        """Whether such a study was performed in the last ``within_days``; None if the history is unknown."""

    def overdue_recommendation(
        self, code_sets: tuple[CodeSet, ...], reasons: tuple[CodeSet, ...], grace_days: int
    ) -> bool | None:
        """Whether a recommendation for such a study (for such a reason, if given) is past due with no such
        study since; None if unknown."""

    def label(self, key: str) -> str:
        """Human label of an input key."""


class Condition(Protocol):
    """A node of the condition tree."""

    def evaluate(self, facts: Facts) -> Result:
        """Three-valued result."""

    def explain(self, facts: Facts) -> list[str]:
        """Lines naming the leaves (and their values) that decided this node's result."""

    def keys(self) -> frozenset[str]:
        """Context keys this node reads (used to check that every key is declared)."""


@dataclass(frozen=True, slots=True)
class AllOf:
    """True when every child is true (Kleene AND)."""

    items: tuple[Condition, ...]

    def evaluate(self, facts: Facts) -> Result:
        results = [c.evaluate(facts) for c in self.items]
        if any(r.truth is Truth.FALSE for r in results):
            return FALSE
        unknown = [r for r in results if r.truth is Truth.UNKNOWN]
        if unknown:
            return Result(Truth.UNKNOWN, frozenset().union(*(r.missing for r in unknown)))
        return TRUE

    def explain(self, facts: Facts) -> list[str]:
        truth = self.evaluate(facts).truth
        if truth is Truth.FALSE:
            first = next(c for c in self.items if c.evaluate(facts).truth is Truth.FALSE)
            return first.explain(facts)
        return [line for c in self.items if c.evaluate(facts).truth is truth for line in c.explain(facts)]

    def keys(self) -> frozenset[str]:
        return frozenset().union(*(c.keys() for c in self.items))


@dataclass(frozen=True, slots=True)
class AnyOf:
    """True when at least one child is true (Kleene OR)."""

    items: tuple[Condition, ...]

    def evaluate(self, facts: Facts) -> Result:
        results = [c.evaluate(facts) for c in self.items]
        if any(r.truth is Truth.TRUE for r in results):
            return TRUE
        unknown = [r for r in results if r.truth is Truth.UNKNOWN]
        if unknown:
            return Result(Truth.UNKNOWN, frozenset().union(*(r.missing for r in unknown)))
        return FALSE

    def explain(self, facts: Facts) -> list[str]:
        truth = self.evaluate(facts).truth
        return [line for c in self.items if c.evaluate(facts).truth is truth for line in c.explain(facts)]

    def keys(self) -> frozenset[str]:
        return frozenset().union(*(c.keys() for c in self.items))


@dataclass(frozen=True, slots=True)
class Not:
    """Kleene NOT."""

    item: Condition

    def evaluate(self, facts: Facts) -> Result:
        result = self.item.evaluate(facts)
        return Result(result.truth.negate(), result.missing)

    def explain(self, facts: Facts) -> list[str]:
        return self.item.explain(facts)

    def keys(self) -> frozenset[str]:
        return self.item.keys()


class FindingState(enum.StrEnum):
    """What a finding test asks: present/absent are three-valued, unknown/known are always decided."""

    PRESENT = "present"
    ABSENT = "absent"
    UNKNOWN = "unknown"
    KNOWN = "known"


@dataclass(frozen=True, slots=True)
class FindingTest:
    """``{"finding": key, "is": "present"|"absent"|"unknown"|"known"}``."""

    key: str
    state: FindingState

    def evaluate(self, facts: Facts) -> Result:
        value = facts.finding(self.key)
        if self.state is FindingState.UNKNOWN:
            return Result(Truth.of(value is None))
        if self.state is FindingState.KNOWN:
            return Result(Truth.of(value is not None))
        if value is None:
            return Result(Truth.UNKNOWN, frozenset({self.key}))
        return Result(Truth.of(value is (self.state is FindingState.PRESENT)))

    def explain(self, facts: Facts) -> list[str]:
        value = facts.finding(self.key)
        shown = "not documented" if value is None else ("present" if value else "absent")
        return [f"{facts.label(self.key)}: {shown}"]

    def keys(self) -> frozenset[str]:
        return frozenset({self.key})


class Op(enum.StrEnum):
    """Comparison operators of a value test."""

    LT = "lt"
    LE = "le"
    GT = "gt"
    GE = "ge"
    EQ = "eq"
    NE = "ne"
    IN = "in"
    BETWEEN = "between"


_SYMBOL = {Op.LT: "<", Op.LE: "≤", Op.GT: ">", Op.GE: "≥", Op.EQ: "=", Op.NE: "≠"}


def _fmt(value: Scalar) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{round(value, 1):g}"
    return str(value)


@dataclass(frozen=True, slots=True)
class ValueTest:
    """``{"value": key, "op": op, "to": operand}``; ``between`` takes ``[low, high]`` (inclusive)."""

    key: str
    op: Op
    operand: Scalar | tuple[Scalar, ...]

    def evaluate(self, facts: Facts) -> Result:
        score = facts.score(self.key)
        if score is not None:
            lo, hi, missing = score
            return _numeric_interval(self.op, self.operand, lo, hi, missing or frozenset({self.key}))
        value = facts.value(self.key)
        if value is None:
            return Result(Truth.UNKNOWN, frozenset({self.key}))
        numeric = isinstance(value, int | float) and not isinstance(value, bool) and self.op is not Op.IN
        if numeric and isinstance(value, int | float) and not isinstance(self.operand, bool | str):
            return _numeric_interval(self.op, self.operand, float(value), float(value), frozenset())
        return Result(Truth.of(_compare_scalar(self.op, value, self.operand)))

    def explain(self, facts: Facts) -> list[str]:
        label = facts.label(self.key)
        score = facts.score(self.key)
        if score is not None:
            lo, hi, _ = score
            shown = _fmt(lo) if lo == hi else f"{_fmt(lo)} to {_fmt(hi)} (items not documented)"
            return [f"{label} = {shown}"]
        value = facts.value(self.key)
        return [f"{label}: not documented" if value is None else f"{label} = {_fmt(value)}"]

    def keys(self) -> frozenset[str]:
        return frozenset({self.key})

    def describe(self) -> str:
        """The test itself, e.g. ``gcs < 15``."""
        if self.op is Op.BETWEEN and isinstance(self.operand, tuple):
            return f"{self.key} between {self.operand[0]} and {self.operand[1]}"
        return f"{self.key} {_SYMBOL.get(self.op, self.op.value)} {self.operand}"


def _numeric_interval(
    op: Op, operand: Scalar | tuple[Scalar, ...], lo: float, hi: float, missing: frozenset[str]
) -> Result:
    def decided(always: bool, never: bool) -> Result:
        if always:
            return TRUE
        if never:
            return FALSE
        return Result(Truth.UNKNOWN, missing)

    if op is Op.BETWEEN:
        if not isinstance(operand, tuple) or len(operand) != 2:
            return FALSE
        a, b = float(operand[0]), float(operand[1])
        return decided(a <= lo and hi <= b, hi < a or lo > b)
    if isinstance(operand, tuple | str | bool):
        return FALSE
    t = float(operand)
    if op is Op.LT:
        return decided(hi < t, lo >= t)
    if op is Op.LE:
        return decided(hi <= t, lo > t)
    if op is Op.GT:
        return decided(lo > t, hi <= t)
    if op is Op.GE:
        return decided(lo >= t, hi < t)
    if op is Op.EQ:
        return decided(lo == hi == t, t < lo or t > hi)
    if op is Op.NE:
        return decided(t < lo or t > hi, lo == hi == t)
    return FALSE


def _same(a: Scalar, b: Scalar) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a is b
    return a == b


def _compare_scalar(op: Op, value: Scalar, operand: Scalar | tuple[Scalar, ...]) -> bool:
    if op is Op.IN:
        return isinstance(operand, tuple) and any(_same(value, o) for o in operand)
    if isinstance(operand, tuple):
        return False
    if op is Op.EQ:
        return _same(value, operand)
    if op is Op.NE:
        return not _same(value, operand)
    return False  # ordering comparisons on non-numbers are never true


class ValueState(enum.StrEnum):
    """Whether a value is documented."""

    KNOWN = "known"
    UNKNOWN = "unknown"


@dataclass(frozen=True, slots=True)
class ValueKnown:
    """``{"value": key, "is": "known"|"unknown"}``: decided from the data, never UNKNOWN itself."""

    key: str
    state: ValueState

    def evaluate(self, facts: Facts) -> Result:
        score = facts.score(self.key)
        known = (score[0] == score[1]) if score is not None else facts.value(self.key) is not None
        return Result(Truth.of(known is (self.state is ValueState.KNOWN)))

    def explain(self, facts: Facts) -> list[str]:
        value = facts.value(self.key)
        shown = "not documented" if value is None else _fmt(value)
        return [f"{facts.label(self.key)}: {shown}"]

    def keys(self) -> frozenset[str]:
        return frozenset({self.key})


@dataclass(frozen=True, slots=True)
class OrderTest:
    """``{"order": [code sets]}``: whether the order being evaluated is one of these studies."""

    code_sets: tuple[CodeSet, ...]
    label: str

    def evaluate(self, facts: Facts) -> Result:
        return Result(Truth.of(facts.order_matches(self.code_sets)))

    def explain(self, facts: Facts) -> list[str]:
        matches = facts.order_matches(self.code_sets)
        return [f"Ordered study {'is' if matches else 'is not'} {self.label}"]

    def keys(self) -> frozenset[str]:
        return frozenset()


@dataclass(frozen=True, slots=True)
class PriorStudyTest:
    """``{"prior_study": [code sets], "within_days": n}``: such a study performed in the last n days."""

    code_sets: tuple[CodeSet, ...]
    within_days: int
    label: str

    def evaluate(self, facts: Facts) -> Result:
        found = facts.prior_study(self.code_sets, self.within_days)
        if found is None:
            return Result(Truth.UNKNOWN, frozenset({"prior-studies"}))
        return Result(Truth.of(found))

    def explain(self, facts: Facts) -> list[str]:
        found = facts.prior_study(self.code_sets, self.within_days)
        shown = "imaging history not available" if found is None else ("yes" if found else "none")
        return [f"{self.label} in the last {self.within_days} days: {shown}"]

    def keys(self) -> frozenset[str]:
        return frozenset({"prior-studies"})


@dataclass(frozen=True, slots=True)
class OverdueRecommendationTest:
    """``{"overdue_recommendation": [code sets], "reason": [code sets], "grace_days": n}``.

    True when a follow-up recommendation for one of these studies (made for one of these reasons, when
    ``reason`` is given) is past its due date by more than n days and no such study was done since.
    """

    code_sets: tuple[CodeSet, ...]
    reasons: tuple[CodeSet, ...]
    grace_days: int
    label: str

    def evaluate(self, facts: Facts) -> Result:
        found = facts.overdue_recommendation(self.code_sets, self.reasons, self.grace_days)
        if found is None:
            return Result(Truth.UNKNOWN, frozenset({"prior-recommendations", "prior-studies"}))
        return Result(Truth.of(found))

    def explain(self, facts: Facts) -> list[str]:
        found = facts.overdue_recommendation(self.code_sets, self.reasons, self.grace_days)
        shown = "not known" if found is None else ("yes" if found else "no")
        return [f"Overdue recommendation for {self.label}: {shown}"]

    def keys(self) -> frozenset[str]:
        return frozenset({"prior-recommendations", "prior-studies"})


@dataclass(frozen=True, slots=True)
class ScoreItem:
    """One item of a point score: ``points`` when ``when`` is true."""

    points: float
    when: Condition


@dataclass(frozen=True, slots=True)
class Score:
    """A point score computed from its items when the context has no documented value for ``key``."""

    key: str
    items: tuple[ScoreItem, ...]

    def interval(self, facts: Facts) -> tuple[float, float, frozenset[str]]:
        """(low, high, undocumented item keys): high adds every item that is not known to be false."""
        lo = hi = 0.0
        missing: set[str] = set()
        for item in self.items:
            result = item.when.evaluate(facts)
            if result.truth is Truth.TRUE:
                lo += item.points
                hi += item.points
            elif result.truth is Truth.UNKNOWN:
                lo += min(item.points, 0.0)
                hi += max(item.points, 0.0)
                missing |= result.missing
        return lo, hi, frozenset(missing)
