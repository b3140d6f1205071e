"""Loading the guideline files at start-up: each is checked against ``guideline.schema.json`` and turned into
the domain's :class:`~radcds_fusion.domain.guidelines.Guideline`; a bad file stops the service naming the file."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jsonschema

from radcds.runtime.resources import shipped_data_dir
from radcds_fusion.domain.assessment import FindingLabel
from radcds_fusion.domain.comparison import Change
from radcds_fusion.domain.critical import CriticalPolicy, CriticalRule
from radcds_fusion.domain.guidelines import (
    Applicability,
    Branch,
    Conditions,
    ExamRule,
    FollowUp,
    Guideline,
    NoduleStatus,
    Outcome,
    Range,
    Risk,
    Upgrade,
)
from radcds_fusion.domain.nodules import Composition, Feature

#: The guideline catalogue shipped with the service.
KNOWLEDGE_DIR = shipped_data_dir(__file__, "knowledge")


@dataclass(frozen=True, slots=True)
class Knowledge:
    """What fusion knows, loaded and checked at start-up."""

    guidelines: dict[str, Guideline]
    policy: CriticalPolicy
    findings: dict[str, FindingLabel]


class GuidelineFileError(ValueError):
    """A guideline file that does not follow the schema (the message names the file and the place)."""


def load_knowledge(directory: Path = KNOWLEDGE_DIR) -> Knowledge:
    """Everything fusion knows (guidelines, critical-result policy, tracked findings), checked at start-up."""
    return Knowledge(load_guidelines(directory), load_critical_policy(directory), load_findings(directory))


def load_guidelines(directory: Path = KNOWLEDGE_DIR) -> dict[str, Guideline]:
    """Every ``guidelines/*.json`` under ``directory``, by id (see docs/fusion.md for the format)."""
    schema = json.loads((directory / "guideline.schema.json").read_text(encoding="utf-8"))
    validator = jsonschema.Draft7Validator(schema)
    out: dict[str, Guideline] = {}
    for path in sorted((directory / "guidelines").glob("*.json")):
        data = json.loads(path.read_text(encoding="utf-8"))
        errors = sorted(validator.iter_errors(data), key=lambda e: list(e.absolute_path))
        if errors:
            where = "/".join(str(p) for p in errors[0].absolute_path) or "(root)"
            raise GuidelineFileError(f"{path.name}: {where}: {errors[0].message}")
        guideline = parse_guideline(data)
        if guideline.id in out:
            raise GuidelineFileError(f"{path.name}: duplicate guideline id {guideline.id}")
        out[guideline.id] = guideline
    return out


def _checked(directory: Path, name: str, schema_name: str) -> Any:
    schema = json.loads((directory / schema_name).read_text(encoding="utf-8"))
    data = json.loads((directory / name).read_text(encoding="utf-8"))
    errors = sorted(jsonschema.Draft7Validator(schema).iter_errors(data), key=lambda e: list(e.absolute_path))
    if errors:
        where = "/".join(str(p) for p in errors[0].absolute_path) or "(root)"
        raise GuidelineFileError(f"{name}: {where}: {errors[0].message}")
    return data


def load_findings(directory: Path = KNOWLEDGE_DIR) -> dict[str, FindingLabel]:
    """The findings fusion tracks (``findings.json``), by code."""
    data = _checked(directory, "findings.json", "findings.schema.json")
    return {
        f["code"]: FindingLabel(
            label=f["label"],
            places=f.get("places", 2),
            unit=f.get("unit", ""),
            body_region=f["body_region"],
            tolerance=f.get("tolerance"),
            relative_tolerance=f.get("relative_tolerance"),
            value_measurement=f.get("value_measurement"),
        )
        for f in data["findings"]
    }


def load_critical_policy(directory: Path = KNOWLEDGE_DIR) -> CriticalPolicy:
    """The critical-result policy ``critical-results.json``, checked against its schema."""
    data = _checked(directory, "critical-results.json", "critical-results.schema.json")
    return CriticalPolicy(
        id=data["id"],
        version=data["version"],
        citation=data["citation"],
        rules=tuple(
            CriticalRule(
                id=r["id"],
                code=r["code"],
                display=r["display"],
                changes=frozenset(Change(c) for c in r["changes"]),
                communication=r["communication"],
            )
            for r in data["rules"]
        ),
    )


def parse_guideline(data: dict[str, Any]) -> Guideline:
    """A schema-valid guideline document as the domain type."""
    app = data["applicability"]
    return Guideline(
        id=data["id"],
        version=data["version"],
        title=data["title"],
        citation=data["citation"],
        diameter_places=data["diameter_places"],
        applicability=Applicability(
            min_age_years=app.get("min_age_years"),
            screening=app.get("screening"),
            excluded_when=tuple((e["flag"], e["reason"]) for e in app.get("excluded_when", [])),
        ),
        branches=tuple(
            Branch(id=b["id"], when=_conditions(b["when"]), outcome=_outcome(b["outcome"])) for b in data["branches"]
        ),
        upgrades=tuple(
            Upgrade(
                id=u["id"],
                from_categories=frozenset(u["from_categories"]),
                feature=Feature(u["feature"]),
                outcome=_outcome(u["outcome"]),
            )
            for u in data.get("upgrades", [])
        ),
        exam_rules=tuple(
            ExamRule(id=r["id"], flag=r["flag"], outcome=_outcome(r["outcome"])) for r in data.get("exam_rules", [])
        ),
        no_nodule_outcome=_outcome(data["no_nodule_outcome"]) if "no_nodule_outcome" in data else None,
        modifiers=tuple((m["flag"], m["suffix"]) for m in data.get("modifiers", [])),
        unknown_risk_assumption=Risk(data.get("unknown_risk_assumption", "high")),
    )


def _range(data: dict[str, float] | None) -> Range | None:
    return None if data is None else Range(**data)


def _conditions(when: dict[str, Any]) -> Conditions:
    return Conditions(
        composition=frozenset(Composition(c) for c in when["composition"]) if "composition" in when else None,
        multiplicity=when.get("multiplicity"),
        risk=Risk(when["risk"]) if "risk" in when else None,
        status=frozenset(NoduleStatus(s) for s in when["status"]) if "status" in when else None,
        size_mm=_range(when.get("size_mm")),
        volume_mm3=_range(when.get("volume_mm3")),
        solid_component_mm=_range(when.get("solid_component_mm")),
        features_all=frozenset(Feature(f) for f in when.get("features_all", [])),
        features_none=frozenset(Feature(f) for f in when.get("features_none", [])),
        prior_category=frozenset(when["prior_category"]) if "prior_category" in when else None,
    )


def _outcome(data: dict[str, Any]) -> Outcome:
    fu = data.get("follow_up")
    return Outcome(
        rank=data["rank"],
        recommendation=data["recommendation"],
        category=data.get("category"),
        follow_up=FollowUp(fu["procedure"], fu["min_months"], fu["max_months"], fu.get("optional", False))
        if fu
        else None,
    )
