"""Rule files: every shipped file loads and matches rule.schema.json; bad files fail loudly with their name."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest

from radcds.domain.codes import Coding
from radcds_referral.domain.appropriateness import Outcome, RuleFormatError, evaluate_order, load_rules, parse_rule
from radcds_referral.domain.appropriateness.model import DraftImagingOrder

from .fhir_fixtures import CPT, ICD, RULES, RULES_DIR, SCHEMA, context, finding

REQUIRED = {
    "canadian-ct-head",
    "pecarn-head",
    "nexus-cspine",
    "canadian-cspine",
    "ottawa-ankle",
    "ottawa-foot",
    "ottawa-knee",
    "pe-wells-perc",
    "low-back-pain",
    "iodinated-contrast",
    "pregnancy-ionising-radiation",
    "uspstf-lung-screening",
    "nodule-follow-up-overdue",
}


def minimal_rule(**overrides: object) -> dict:
    """Smallest valid clinical rule: ankle x-ray for ankle sprain, one branch on one finding."""
    rule: dict = {
        "id": "test-rule",
        "version": "1.0.0",
        "title": "Test rule",
        "kind": "clinical",
        "hooks": ["order-sign"],
        "citations": [{"authors": ["Doe J"], "title": "A test", "journal": "J Test", "year": 2020}],
        "order_codes": [{"system": CPT, "codes": ["73600"]}],
        "indications": [{"system": ICD, "prefixes": ["S93"]}],
        "inputs": {"swelling": {"label": "Swelling"}},
        "branches": [
            {
                "id": "b",
                "when": {"finding": "swelling", "is": "present"},
                "outcome": "appropriate",
                "indicator": "info",
                "summary": "Swelling present",
                "detail": "Our own words.",
            }
        ],
        "needs_information": {"summary": "Document swelling", "detail": "Needs swelling."},
    }
    rule.update(overrides)
    return rule


def write(tmp_path: Path, name: str, content: object) -> Path:
    path = tmp_path / name
    path.write_text(content if isinstance(content, str) else json.dumps(content), encoding="utf-8")
    return path


def test_every_shipped_rule_file_loads_and_required_rules_are_present():
    assert {r.id for r in RULES} == REQUIRED
    assert len(list(RULES_DIR.glob("*.json"))) == len(RULES)


def test_every_shipped_rule_file_validates_against_the_json_schema():
    schema = json.loads(SCHEMA.read_text())
    jsonschema.Draft7Validator.check_schema(schema)
    validator = jsonschema.Draft7Validator(schema)
    for path in sorted(RULES_DIR.glob("*.json")):
        errors = [e.message for e in validator.iter_errors(json.loads(path.read_text()))]
        assert errors == [], f"{path.name}: {errors}"


def test_every_rule_has_a_citation_with_authors_journal_and_year():
    for rule in RULES:
        assert rule.citations, rule.id
        for c in rule.citations:
            assert c.authors and c.journal and 1990 <= c.year <= 2030, rule.id


def test_every_summary_is_shorter_than_140_characters():
    for rule in RULES:
        for branch in [*rule.branches, *([rule.otherwise] if rule.otherwise else [])]:
            assert len(branch.summary) < 140, (rule.id, branch.id)
        assert len(rule.needs_information.summary) < 140


def test_minimal_rule_file_loads(tmp_path):
    write(tmp_path, "test-rule.json", minimal_rule())
    [rule] = load_rules(tmp_path)
    assert rule.id == "test-rule" and rule.source.endswith("test-rule.json")


def test_invalid_json_fails_with_the_file_name(tmp_path):
    write(tmp_path, "broken.json", "{ not json")
    with pytest.raises(RuleFormatError, match=r"broken\.json: not readable JSON"):
        load_rules(tmp_path)


def test_unknown_condition_fails_with_file_name_and_json_path(tmp_path):
    bad = minimal_rule()
    bad["branches"][0]["when"] = {"findng": "swelling", "is": "present"}
    write(tmp_path, "typo.json", bad)
    with pytest.raises(RuleFormatError, match=r"typo\.json: /branches/0/when: unknown condition"):
        load_rules(tmp_path)


def test_undeclared_input_key_fails(tmp_path):
    bad = minimal_rule()
    bad["branches"][0]["when"] = {"finding": "swelin", "is": "present"}
    write(tmp_path, "undeclared.json", bad)
    with pytest.raises(RuleFormatError, match=r"undeclared\.json: /inputs: .*swelin"):
        load_rules(tmp_path)


def test_summary_of_140_characters_fails(tmp_path):
    bad = minimal_rule()
    bad["branches"][0]["summary"] = "x" * 140
    write(tmp_path, "long.json", bad)
    with pytest.raises(RuleFormatError, match=r"long\.json: /branches/0/summary: must be at most 139"):
        load_rules(tmp_path)


def test_missing_citation_fails(tmp_path):
    bad = minimal_rule()
    del bad["citations"]
    write(tmp_path, "nocite.json", bad)
    with pytest.raises(RuleFormatError, match=r"nocite\.json: /: missing required field 'citations'"):
        load_rules(tmp_path)


def test_invalid_doi_fails(tmp_path):
    bad = minimal_rule()
    bad["citations"][0]["doi"] = "doi:made-up"
    write(tmp_path, "doi.json", bad)
    with pytest.raises(RuleFormatError, match=r"doi\.json: /citations/0/doi"):
        load_rules(tmp_path)


def test_clinical_rule_with_advisory_outcome_fails(tmp_path):
    bad = minimal_rule()
    bad["branches"][0]["outcome"] = "advisory"
    write(tmp_path, "kind.json", bad)
    with pytest.raises(RuleFormatError, match=r"kind\.json: /branches/0/outcome"):
        load_rules(tmp_path)


def test_duplicate_rule_id_fails_naming_both_files(tmp_path):
    write(tmp_path, "a.json", minimal_rule())
    write(tmp_path, "b.json", minimal_rule())
    with pytest.raises(RuleFormatError, match=r"b\.json: rule id 'test-rule' is already defined in .*a\.json"):
        load_rules(tmp_path)


def test_empty_directory_fails(tmp_path):
    with pytest.raises(RuleFormatError, match="no rule files"):
        load_rules(tmp_path)


def test_parse_rule_rejects_non_object():
    with pytest.raises(RuleFormatError, match=r"x\.json: /: expected an object"):
        parse_rule([], source="x.json")


def test_new_rule_file_is_used_without_code_change(tmp_path):
    write(tmp_path, "test-rule.json", minimal_rule())
    rules = load_rules(tmp_path)
    order = DraftImagingOrder("o1", (Coding(CPT, "73600", ""),), (Coding(ICD, "S93.401A", ""),))
    assert evaluate_order(order, context(30, finding("swelling", True)), rules).outcome is Outcome.APPROPRIATE
    missing = evaluate_order(order, context(30), rules)
    assert missing.outcome is Outcome.NEEDS_INFORMATION and missing.missing[0].label == "Swelling"
