"""The guideline catalogue: every file follows the schema, a bad file is refused naming it, and a new guideline
is a data change only."""

from __future__ import annotations

import json
import shutil

import pytest

from radcds_fusion.domain.guidelines import NoduleInput, PatientContext, assess
from radcds_fusion.domain.nodules import Composition, Nodule
from radcds_fusion.knowledge import KNOWLEDGE_DIR, GuidelineFileError, load_guidelines


def test_catalogue_holds_fleischner_and_lung_rads_with_citations():
    catalogue = load_guidelines()
    assert set(catalogue) == {"fleischner-2017", "lung-rads-v2022"}
    assert "doi:10.1148/radiol.2017161659" in catalogue["fleischner-2017"].citation
    assert "CHEST 2024;165(3):738-753" in catalogue["lung-rads-v2022"].citation


def test_branch_ids_are_unique_in_each_guideline():
    for guideline in load_guidelines().values():
        ids = [b.id for b in guideline.branches]
        assert len(ids) == len(set(ids)), guideline.id


def test_a_file_breaking_the_schema_is_refused_with_its_name(tmp_path):
    shutil.copytree(KNOWLEDGE_DIR, tmp_path / "k")
    path = tmp_path / "k" / "guidelines" / "fleischner-2017.json"
    data = json.loads(path.read_text())
    data["branches"][0]["when"]["size_mm"] = {"below": 6}
    path.write_text(json.dumps(data))
    with pytest.raises(GuidelineFileError, match=r"fleischner-2017\.json: branches/0/when/size_mm"):
        load_guidelines(tmp_path / "k")


def test_a_new_guideline_file_is_loaded_and_applied_without_code_change(tmp_path):
    shutil.copytree(KNOWLEDGE_DIR, tmp_path / "k")
    local = {
        "id": "local-nodule-policy",
        "version": "1.0.0",
        "title": "A site's own policy",
        "citation": "Local radiology committee, 2026",
        "diameter_places": 1,
        "applicability": {},
        "branches": [
            {
                "id": "any-nodule",
                "when": {"size_mm": {"gte": 4}},
                "outcome": {"rank": 1, "recommendation": "Discuss at the nodule board."},
            }
        ],
    }
    (tmp_path / "k" / "guidelines" / "local.json").write_text(json.dumps(local))
    catalogue = load_guidelines(tmp_path / "k")
    result = assess(
        catalogue["local-nodule-policy"],
        nodules=[NoduleInput(Nodule(Composition.SOLID, 5.0))],
        context=PatientContext(),
    )
    assert result.outcome.recommendation == "Discuss at the nodule board."
