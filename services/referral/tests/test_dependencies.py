"""referral declares every third-party distribution its code imports, and nothing it does not (issue #12)."""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from importlib.metadata import packages_distributions
from pathlib import Path

SERVICE = Path(__file__).resolve().parents[1]
FIRST_PARTY = {"radcds_referral"}


def _imported_top_level_modules() -> set[str]:
    names: set[str] = set()
    for path in (SERVICE / "src").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names.update(a.name.split(".")[0] for a in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names.add(node.module.split(".")[0])
    return names - set(sys.stdlib_module_names) - FIRST_PARTY - {"__future__"}


def _normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _declared() -> set[str]:
    project = tomllib.loads((SERVICE / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    return {_normalise(re.split(r"[\[<>=!~; ]", d, maxsplit=1)[0]) for d in project["dependencies"]}


def test_every_distribution_referral_imports_is_declared_and_every_declared_one_is_imported():
    owners = packages_distributions()
    # The kernel is installed editable, which packages_distributions() does not list: its import name is its name.
    imported = {_normalise(owners.get(m, [m])[0]) for m in _imported_top_level_modules()}
    declared = _declared()
    assert imported - declared == set(), "imported but not declared in services/referral/pyproject.toml"
    assert declared - imported == set(), "declared but never imported by radcds_referral"
