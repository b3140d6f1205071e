"""The critical-result policy: which findings, in which change against the prior, mean the care team must be
told now (ACR Practice Parameter for Communication of Diagnostic Imaging Findings, revised 2020: findings that
need immediate or urgent intervention are communicated directly and promptly).

The policy is data (``knowledge/critical-results.json``); a finding that is already known and stable is not a
new critical result, so the policy names the changes that trigger it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from radcds_fusion.domain.comparison import Change, Comparison


@dataclass(frozen=True, slots=True)
class CriticalRule:
    """Findings of ``code`` whose change is one of ``changes`` are critical."""

    id: str
    code: str
    display: str
    changes: frozenset[Change]
    communication: str  # e.g. "now": tell the ordering team directly


@dataclass(frozen=True, slots=True)
class CriticalPolicy:
    """A versioned, cited critical-result policy."""

    id: str
    version: str
    citation: str
    rules: tuple[CriticalRule, ...]


@dataclass(frozen=True, slots=True)
class CriticalResult:
    """A finding the care team must be told about, and why."""

    rule_id: str
    comparison: Comparison
    reason: str


def critical_results(policy: CriticalPolicy, comparisons: Iterable[Comparison]) -> list[CriticalResult]:
    """The comparisons that the policy makes critical (a resolved finding never is)."""
    out = []
    for comparison in comparisons:
        current = comparison.current
        if current is None:
            continue
        for rule in policy.rules:
            if current.code == rule.code and comparison.change in rule.changes:
                out.append(
                    CriticalResult(
                        rule.id,
                        comparison,
                        f"{rule.display}, {comparison.change.value}: tell the care team {rule.communication}",
                    )
                )
                break
    return out
