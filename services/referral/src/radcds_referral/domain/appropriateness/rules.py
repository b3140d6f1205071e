"""Decision rules as versioned data: the :class:`Rule` model, its parser and :func:`load_rules`.

Each rule is one JSON file (``services/referral/knowledge/rules/*.json``) described by the draft-07
schema ``services/referral/knowledge/rule.schema.json``. The parser below is a hand-written structural
check of the same format (the domain imports no JSON-schema library); every error names the file and
the JSON path, and loading stops at the first bad file. Adding a rule needs no code change.
"""

from __future__ import annotations

import enum
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from radcds.domain.codes import Coding
from radcds_referral.domain.appropriateness.criteria import (
    AllOf,
    AnyOf,
    CodeSet,
    Condition,
    FindingState,
    FindingTest,
    Not,
    Op,
    OrderTest,
    OverdueRecommendationTest,
    PriorStudyTest,
    Score,
    ScoreItem,
    ValueKnown,
    ValueState,
    ValueTest,
    any_match,
    normalise_code,
)
from radcds_referral.domain.appropriateness.model import (
    ORDER_HOOKS,
    Citation,
    DraftImagingOrder,
    Hook,
    Indicator,
    Outcome,
    RuleReference,
    Scalar,
    SuggestionAction,
)

#: Keys the engine derives itself; rules still declare them in ``inputs`` (for their labels).
DERIVED_KEYS = frozenset({"age", "sex", "symptom-duration-days", "prior-studies", "prior-recommendations"})
MAX_SUMMARY = 139
_E = TypeVar("_E", bound=enum.StrEnum)


class RuleKind(enum.StrEnum):
    """How the engine uses a rule.

    ``safety`` rules (contrast, pregnancy) are checked first on every matching order and add a warning;
    ``clinical`` rules rate an order for its indication; ``advisory`` rules run on patient-view.
    """

    SAFETY = "safety"
    CLINICAL = "clinical"
    ADVISORY = "advisory"


class WhenUnknown(enum.StrEnum):
    """What an undecidable rule produces: a needs-information evaluation, or nothing."""

    NEEDS_INFORMATION = "needs-information"
    IGNORE = "ignore"


class RuleFormatError(ValueError):
    """A rule file does not follow ``rule.schema.json``; the message names the file and the JSON path."""


@dataclass(frozen=True, slots=True)
class InputSpec:
    """A context key a rule reads: its label and, for observations, how old a value may be."""

    key: str
    label: str
    max_age_days: int | None = None


@dataclass(frozen=True, slots=True)
class SuggestionSpec:
    """A suggestion template; ``when_order`` limits it to orders in these code sets (e.g. contrast → plain CT)."""

    action: SuggestionAction
    label: str
    codes: tuple[Coding, ...] = ()
    recommended: bool = False
    when_order: tuple[CodeSet, ...] = ()


@dataclass(frozen=True, slots=True)
class Branch:
    """One outcome of a rule and the condition that selects it."""

    id: str
    when: Condition | None
    outcome: Outcome
    indicator: Indicator
    summary: str
    detail: str
    suggestions: tuple[SuggestionSpec, ...] = ()


@dataclass(frozen=True, slots=True)
class NeedsInformationText:
    """Card text when the rule cannot decide; the engine appends the list of missing inputs."""

    summary: str
    detail: str


@dataclass(frozen=True, slots=True)
class Rule:
    """A published decision rule encoded as data.

    Branches are tried in order; the first TRUE branch decides, except that UNKNOWN branches before it
    make the result needs-information unless they would have given the same outcome. ``otherwise`` is
    the outcome when every branch is FALSE (none: the rule does not fire).
    """

    id: str
    version: str
    title: str
    kind: RuleKind
    priority: int
    hooks: frozenset[Hook]
    citations: tuple[Citation, ...]
    inputs: Mapping[str, InputSpec]
    branches: tuple[Branch, ...]
    needs_information: NeedsInformationText
    order_codes: tuple[CodeSet, ...] = ()
    indications: tuple[CodeSet, ...] = ()
    applies_when: Condition | None = None
    scores: tuple[Score, ...] = ()
    otherwise: Branch | None = None
    when_unknown: WhenUnknown = WhenUnknown.NEEDS_INFORMATION
    override_reasons: tuple[Coding, ...] = ()
    url: str = ""
    description: str = ""
    source: str = ""

    @property
    def reference(self) -> RuleReference:
        """Id, version, title, citations and URL of this rule."""
        return RuleReference(self.id, self.version, self.title, self.citations, self.url)

    def matches_order(self, order: DraftImagingOrder) -> bool:
        """Whether the order is one of the rule's studies and (if the rule lists any) for one of its indications."""
        if not any_match(self.order_codes, order.codes):
            return False
        return not self.indications or any_match(self.indications, order.reason_codes)

    def label(self, key: str) -> str:
        """Human label of an input key."""
        spec = self.inputs.get(key)
        return spec.label if spec else key


# --------------------------------------------------------------------------------------------- parsing


class _Reader:
    """Typed access to decoded JSON that raises :class:`RuleFormatError` with the path."""

    def __init__(self, source: str) -> None:
        self.source = source

    def fail(self, path: str, message: str) -> RuleFormatError:
        return RuleFormatError(f"{self.source}: {path or '/'}: {message}")

    def obj(self, value: object, path: str, allowed: frozenset[str] | None = None) -> Mapping[str, object]:
        if not isinstance(value, dict):
            raise self.fail(path, "expected an object")
        if allowed is not None:
            extra = sorted(set(value) - allowed)
            if extra:
                raise self.fail(path, f"unknown field(s) {extra}")
        return value

    def req(self, obj: Mapping[str, object], key: str, path: str) -> object:
        if key not in obj:
            raise self.fail(path, f"missing required field {key!r}")
        return obj[key]

    def text(self, value: object, path: str, *, max_len: int | None = None) -> str:
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            value = "\n".join(str(v) for v in value)
        if not isinstance(value, str) or not value.strip():
            raise self.fail(path, "expected a non-empty string")
        if max_len is not None and len(value) > max_len:
            raise self.fail(path, f"must be at most {max_len} characters (has {len(value)})")
        return value

    def integer(self, value: object, path: str) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.fail(path, "expected an integer")
        return value

    def number(self, value: object, path: str) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self.fail(path, "expected a number")
        return float(value)

    def array(self, value: object, path: str, *, non_empty: bool = True) -> list[object]:
        if not isinstance(value, list) or (non_empty and not value):
            raise self.fail(path, "expected a non-empty array" if non_empty else "expected an array")
        return value

    def enum(self, kind: type[_E], value: object, path: str) -> _E:
        try:
            return kind(str(value)) if isinstance(value, str) else kind("\0")
        except ValueError:
            raise self.fail(path, f"expected one of {[m.value for m in kind]}, got {value!r}") from None

    def scalar(self, value: object, path: str) -> Scalar:
        if isinstance(value, bool | int | float | str):
            return value
        raise self.fail(path, "expected a number, boolean or string")


_CODESET_FIELDS = frozenset({"system", "codes", "prefixes", "ranges", "label"})
_RULE_FIELDS = frozenset(
    {
        "$schema",
        "id",
        "version",
        "title",
        "description",
        "kind",
        "priority",
        "hooks",
        "url",
        "citations",
        "order_codes",
        "indications",
        "applies_when",
        "inputs",
        "scores",
        "branches",
        "otherwise",
        "needs_information",
        "when_unknown",
        "override_reasons",
    }
)
_BRANCH_FIELDS = frozenset({"id", "when", "outcome", "indicator", "summary", "detail", "suggestions"})


def _code_sets(r: _Reader, value: object, path: str) -> tuple[CodeSet, ...]:
    out = []
    for i, item in enumerate(r.array(value, path)):
        p = f"{path}/{i}"
        obj = r.obj(item, p, _CODESET_FIELDS)
        system = r.text(r.req(obj, "system", p), f"{p}/system")
        codes = [r.text(c, f"{p}/codes/{j}") for j, c in enumerate(r.array(obj.get("codes", []), p, non_empty=False))]
        prefixes = [
            r.text(c, f"{p}/prefixes/{j}") for j, c in enumerate(r.array(obj.get("prefixes", []), p, non_empty=False))
        ]
        ranges: list[tuple[str, str]] = []
        for j, rng in enumerate(r.array(obj.get("ranges", []), p, non_empty=False)):
            pair = r.array(rng, f"{p}/ranges/{j}")
            if len(pair) != 2:
                raise r.fail(f"{p}/ranges/{j}", "a range is [low, high]")
            lo, hi = (normalise_code(r.text(x, f"{p}/ranges/{j}")) for x in pair)
            if len(lo) != len(hi) or lo > hi:
                raise r.fail(f"{p}/ranges/{j}", f"bad range {lo}..{hi}")
            ranges.append((lo, hi))
        if not (codes or prefixes or ranges):
            raise r.fail(p, "a code set needs codes, prefixes or ranges")
        label = str(obj.get("label", "")) if isinstance(obj.get("label", ""), str) else ""
        out.append(
            CodeSet(
                system=system,
                codes=frozenset(normalise_code(c) for c in codes),
                prefixes=tuple(normalise_code(c) for c in prefixes),
                ranges=tuple(ranges),
                label=label,
            )
        )
    return tuple(out)


def _label_of(code_sets: tuple[CodeSet, ...]) -> str:
    labels = [s.label for s in code_sets if s.label]
    return " / ".join(labels) if labels else "the listed studies"


def _condition(r: _Reader, value: object, path: str) -> Condition:
    obj = r.obj(value, path)
    if "all" in obj or "any" in obj:
        key = "all" if "all" in obj else "any"
        r.obj(obj, path, frozenset({key}))
        items = tuple(_condition(r, c, f"{path}/{key}/{i}") for i, c in enumerate(r.array(obj[key], f"{path}/{key}")))
        return AllOf(items) if key == "all" else AnyOf(items)
    if "not" in obj:
        r.obj(obj, path, frozenset({"not"}))
        return Not(_condition(r, obj["not"], f"{path}/not"))
    if "finding" in obj:
        r.obj(obj, path, frozenset({"finding", "is"}))
        key = r.text(obj["finding"], f"{path}/finding")
        return FindingTest(key, r.enum(FindingState, r.req(obj, "is", path), f"{path}/is"))
    if "value" in obj:
        key = r.text(obj["value"], f"{path}/value")
        if "is" in obj:
            r.obj(obj, path, frozenset({"value", "is"}))
            return ValueKnown(key, r.enum(ValueState, obj["is"], f"{path}/is"))
        r.obj(obj, path, frozenset({"value", "op", "to"}))
        op = r.enum(Op, r.req(obj, "op", path), f"{path}/op")
        raw = r.req(obj, "to", path)
        operand: Scalar | tuple[Scalar, ...]
        if op in (Op.IN, Op.BETWEEN):
            listed = r.array(raw, f"{path}/to")
            operand = tuple(r.scalar(x, f"{path}/to/{i}") for i, x in enumerate(listed))
            if op is Op.BETWEEN and (len(operand) != 2 or not all(_is_number(x) for x in operand)):
                raise r.fail(f"{path}/to", "between takes [low, high] numbers")
        else:
            operand = r.scalar(raw, f"{path}/to")
            if op in (Op.LT, Op.LE, Op.GT, Op.GE) and not _is_number(operand):
                raise r.fail(f"{path}/to", f"{op.value} compares numbers")
        return ValueTest(key, op, operand)
    if "order" in obj:
        r.obj(obj, path, frozenset({"order"}))
        sets = _code_sets(r, obj["order"], f"{path}/order")
        return OrderTest(sets, _label_of(sets))
    if "prior_study" in obj:
        r.obj(obj, path, frozenset({"prior_study", "within_days"}))
        sets = _code_sets(r, obj["prior_study"], f"{path}/prior_study")
        days = r.integer(r.req(obj, "within_days", path), f"{path}/within_days")
        return PriorStudyTest(sets, days, _label_of(sets))
    if "overdue_recommendation" in obj:
        r.obj(obj, path, frozenset({"overdue_recommendation", "reason", "grace_days"}))
        sets = _code_sets(r, obj["overdue_recommendation"], f"{path}/overdue_recommendation")
        reasons = _code_sets(r, obj["reason"], f"{path}/reason") if "reason" in obj else ()
        grace = r.integer(obj.get("grace_days", 0), f"{path}/grace_days")
        return OverdueRecommendationTest(sets, reasons, grace, _label_of(sets))
    raise r.fail(path, f"unknown condition {sorted(obj)}; expected all/any/not/finding/value/order/prior_study/...")


def _is_number(x: Scalar) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool)


def _coding(r: _Reader, value: object, path: str) -> Coding:
    obj = r.obj(value, path, frozenset({"system", "code", "display"}))
    return Coding(
        r.text(r.req(obj, "system", path), f"{path}/system"),
        r.text(r.req(obj, "code", path), f"{path}/code"),
        r.text(r.req(obj, "display", path), f"{path}/display"),
    )


def _suggestion(r: _Reader, value: object, path: str) -> SuggestionSpec:
    obj = r.obj(value, path, frozenset({"action", "label", "codes", "recommended", "when_order"}))
    action = r.enum(SuggestionAction, r.req(obj, "action", path), f"{path}/action")
    codes = tuple(
        _coding(r, c, f"{path}/codes/{i}")
        for i, c in enumerate(r.array(obj.get("codes", []), f"{path}/codes", non_empty=False))
    )
    if action in (SuggestionAction.REPLACE, SuggestionAction.ADD) and not codes:
        raise r.fail(path, f"a {action.value!r} suggestion needs codes")
    if action is SuggestionAction.REMOVE and codes:
        raise r.fail(path, "a 'remove' suggestion targets the order itself and takes no codes")
    recommended = obj.get("recommended", False)
    if not isinstance(recommended, bool):
        raise r.fail(f"{path}/recommended", "expected a boolean")
    when_order = _code_sets(r, obj["when_order"], f"{path}/when_order") if "when_order" in obj else ()
    return SuggestionSpec(action, r.text(r.req(obj, "label", path), f"{path}/label"), codes, recommended, when_order)


def _branch(r: _Reader, value: object, path: str, *, needs_when: bool) -> Branch:
    obj = r.obj(value, path, _BRANCH_FIELDS)
    when = _condition(r, obj["when"], f"{path}/when") if "when" in obj else None
    if needs_when and when is None:
        raise r.fail(path, "missing required field 'when'")
    outcome = r.enum(Outcome, r.req(obj, "outcome", path), f"{path}/outcome")
    if outcome is Outcome.NEEDS_INFORMATION:
        raise r.fail(f"{path}/outcome", "needs-information is produced by the engine, not by a branch")
    return Branch(
        id=r.text(r.req(obj, "id", path), f"{path}/id"),
        when=when,
        outcome=outcome,
        indicator=r.enum(Indicator, r.req(obj, "indicator", path), f"{path}/indicator"),
        summary=r.text(r.req(obj, "summary", path), f"{path}/summary", max_len=MAX_SUMMARY),
        detail=r.text(r.req(obj, "detail", path), f"{path}/detail"),
        suggestions=tuple(
            _suggestion(r, s, f"{path}/suggestions/{i}")
            for i, s in enumerate(r.array(obj.get("suggestions", []), f"{path}/suggestions", non_empty=False))
        ),
    )


def _citation(r: _Reader, value: object, path: str) -> Citation:
    fields = frozenset({"authors", "title", "journal", "year", "volume", "pages", "doi", "pmid", "url"})
    obj = r.obj(value, path, fields)
    authors = tuple(r.text(a, f"{path}/authors/{i}") for i, a in enumerate(r.array(r.req(obj, "authors", path), path)))
    year = r.integer(r.req(obj, "year", path), f"{path}/year")
    if not 1900 <= year <= 2100:
        raise r.fail(f"{path}/year", "implausible year")
    optional = {k: r.text(obj[k], f"{path}/{k}") for k in ("volume", "pages", "doi", "pmid", "url") if k in obj}
    if "pmid" in optional and not optional["pmid"].isdigit():
        raise r.fail(f"{path}/pmid", "a PMID is digits only")
    if "doi" in optional and not optional["doi"].startswith("10."):
        raise r.fail(f"{path}/doi", "a DOI starts with '10.'")
    return Citation(
        authors=authors,
        title=r.text(r.req(obj, "title", path), f"{path}/title"),
        journal=r.text(r.req(obj, "journal", path), f"{path}/journal"),
        year=year,
        **optional,
    )


def parse_rule(data: object, *, source: str = "<rule>") -> Rule:
    """Build a :class:`Rule` from decoded JSON, checking its structure; errors name ``source`` and the path."""
    r = _Reader(source)
    obj = r.obj(data, "", _RULE_FIELDS)
    rule_id = r.text(r.req(obj, "id", ""), "/id")
    if not all(ch.isalnum() or ch == "-" for ch in rule_id) or rule_id != rule_id.lower():
        raise r.fail("/id", "use lower-case letters, digits and '-'")
    version = r.text(r.req(obj, "version", ""), "/version")
    parts = version.split(".")
    if len(parts) != 3 or not all(p.isdigit() for p in parts):
        raise r.fail("/version", "use semantic versioning MAJOR.MINOR.PATCH")
    kind = r.enum(RuleKind, r.req(obj, "kind", ""), "/kind")
    hooks = frozenset(r.enum(Hook, h, f"/hooks/{i}") for i, h in enumerate(r.array(r.req(obj, "hooks", ""), "/hooks")))
    if kind is RuleKind.ADVISORY and hooks != {Hook.PATIENT_VIEW}:
        raise r.fail("/hooks", "advisory rules run on patient-view only")
    if kind is not RuleKind.ADVISORY and not hooks <= ORDER_HOOKS:
        raise r.fail("/hooks", "safety and clinical rules run on order-select/order-sign only")
    order_codes = _code_sets(r, obj["order_codes"], "/order_codes") if "order_codes" in obj else ()
    if kind is not RuleKind.ADVISORY and not order_codes:
        raise r.fail("/order_codes", "order rules must list the studies they apply to")
    indications = _code_sets(r, obj["indications"], "/indications") if "indications" in obj else ()
    if kind is RuleKind.CLINICAL and not indications:
        raise r.fail("/indications", "clinical rules must list the indications they apply to")

    inputs: dict[str, InputSpec] = {}
    for key, spec in r.obj(r.req(obj, "inputs", ""), "/inputs").items():
        p = f"/inputs/{key}"
        fields = r.obj(spec, p, frozenset({"label", "max_age_days"}))
        max_age = r.integer(fields["max_age_days"], f"{p}/max_age_days") if "max_age_days" in fields else None
        inputs[key] = InputSpec(key, r.text(r.req(fields, "label", p), f"{p}/label"), max_age)

    scores = []
    for i, sc in enumerate(r.array(obj.get("scores", []), "/scores", non_empty=False)):
        p = f"/scores/{i}"
        score_obj = r.obj(sc, p, frozenset({"key", "items"}))
        score_items = []
        for j, it in enumerate(r.array(r.req(score_obj, "items", p), f"{p}/items")):
            q = f"{p}/items/{j}"
            item = r.obj(it, q, frozenset({"points", "when"}))
            score_items.append(
                ScoreItem(
                    r.number(r.req(item, "points", q), f"{q}/points"), _condition(r, item.get("when"), f"{q}/when")
                )
            )
        scores.append(Score(r.text(r.req(score_obj, "key", p), f"{p}/key"), tuple(score_items)))

    branches = tuple(
        _branch(r, b, f"/branches/{i}", needs_when=True)
        for i, b in enumerate(r.array(r.req(obj, "branches", ""), "/branches"))
    )
    ids = [b.id for b in branches]
    if len(set(ids)) != len(ids):
        raise r.fail("/branches", f"branch ids must be unique: {ids}")
    otherwise = _branch(r, obj["otherwise"], "/otherwise", needs_when=False) if "otherwise" in obj else None
    for i, b in enumerate([*branches, *([otherwise] if otherwise else [])]):
        advisory = b.outcome is Outcome.ADVISORY
        if (kind is RuleKind.CLINICAL) == advisory:
            wanted = "a rating outcome" if kind is RuleKind.CLINICAL else "'advisory'"
            raise r.fail(f"/branches/{i}/outcome", f"{kind.value} rules give {wanted}, not {b.outcome.value!r}")
    ni = r.obj(r.req(obj, "needs_information", ""), "/needs_information", frozenset({"summary", "detail"}))
    needs_information = NeedsInformationText(
        r.text(r.req(ni, "summary", "/needs_information"), "/needs_information/summary", max_len=MAX_SUMMARY),
        r.text(r.req(ni, "detail", "/needs_information"), "/needs_information/detail"),
    )
    citations = tuple(
        _citation(r, c, f"/citations/{i}") for i, c in enumerate(r.array(r.req(obj, "citations", ""), "/citations"))
    )
    applies_when = _condition(r, obj["applies_when"], "/applies_when") if "applies_when" in obj else None

    # Every key a condition reads must be declared in "inputs" (catches typos such as "gsc").
    used: set[str] = set()
    for cond in [applies_when, *(b.when for b in branches), *(it.when for sc in scores for it in sc.items)]:
        if cond is not None:
            used |= cond.keys()
    undeclared = sorted(used - set(inputs))
    if undeclared:
        raise r.fail("/inputs", f"keys used in conditions but not declared: {undeclared}")
    score_keys = {sc.key for sc in scores}
    for sc in scores:
        inner = frozenset().union(*(it.when.keys() for it in sc.items))
        if inner & score_keys:
            raise r.fail("/scores", f"score {sc.key!r} cannot use another score")

    return Rule(
        id=rule_id,
        version=version,
        title=r.text(r.req(obj, "title", ""), "/title"),
        kind=kind,
        priority=r.integer(obj.get("priority", 0), "/priority"),
        hooks=hooks,
        citations=citations,
        inputs=inputs,
        branches=branches,
        needs_information=needs_information,
        order_codes=order_codes,
        indications=indications,
        applies_when=applies_when,
        scores=tuple(scores),
        otherwise=otherwise,
        when_unknown=r.enum(WhenUnknown, obj.get("when_unknown", "needs-information"), "/when_unknown"),
        override_reasons=tuple(
            _coding(r, c, f"/override_reasons/{i}")
            for i, c in enumerate(r.array(obj.get("override_reasons", []), "/override_reasons", non_empty=False))
        ),
        url=r.text(obj["url"], "/url") if "url" in obj else "",
        description=r.text(obj["description"], "/description") if "description" in obj else "",
        source=source,
    )


def load_rules(directory: str | Path) -> list[Rule]:
    """Load and check every ``*.json`` rule file in ``directory`` (sorted by name).

    Raises :class:`RuleFormatError` naming the file on the first invalid JSON, structural error or
    duplicate rule id, and when the directory holds no rule at all.
    """
    folder = Path(directory)
    if not folder.is_dir():
        raise RuleFormatError(f"{folder}: not a directory of rule files")
    rules: list[Rule] = []
    seen: dict[str, str] = {}
    for path in sorted(folder.glob("*.json")):
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise RuleFormatError(f"{path}: not readable JSON: {exc}") from exc
        rule = parse_rule(data, source=str(path))
        if rule.id in seen:
            raise RuleFormatError(f"{path}: rule id {rule.id!r} is already defined in {seen[rule.id]}")
        seen[rule.id] = str(path)
        rules.append(rule)
    if not rules:
        raise RuleFormatError(f"{folder}: no rule files (*.json)")
    return rules
