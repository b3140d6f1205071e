"""Each package declares every third-party distribution its code imports, and nothing it does not (issue #12): a
service's image carries its own libraries only, not another service's.

The imports are read from the source with :mod:`ast`; a top-level module is mapped to its distribution by
:func:`importlib.metadata.packages_distributions` (our own editable packages are not listed there: their import
name is their distribution name). Distributions loaded at run time without an import (a database driver named by
a URL, uvicorn's event loop, pydicom's pixel decoders) are declared with a reason in :data:`LOADED_WITHOUT_IMPORT`.
"""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from importlib.metadata import packages_distributions
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = {
    "radcds": ROOT / "libs" / "radcds",
    **{f"radcds-{p.name}": p for p in sorted((ROOT / "services").iterdir()) if (p / "pyproject.toml").is_file()},
    "radcds-devstack": ROOT / "tools" / "devstack",
}
#: Declared, never imported: loaded by a library at run time.
LOADED_WITHOUT_IMPORT = {
    "radcds": {
        "psycopg",  # SQLAlchemy's driver for postgresql:// URLs (radcds.adapters.db.engine)
        "uvloop",  # uvicorn's event loop (radcds.runtime.serve)
        "httptools",  # uvicorn's HTTP parser (radcds.runtime.serve)
        "crc32c",  # kafka-python's C CRC-32C for record batches, in place of its pure-Python loop
    },
    "radcds-imaging": {"pylibjpeg", "pylibjpeg-libjpeg", "pylibjpeg-openjpeg"},  # pydicom's pixel decoders
    "radcds-inference": {"pylibjpeg", "pylibjpeg-libjpeg", "pylibjpeg-openjpeg"},
    # fastapi.templating's Jinja2Templates imports jinja2; Starlette parses HTML forms with python-multipart
    "radcds-worklist": {"jinja2", "python-multipart"},
    # the services the local stack starts as processes (python -m radcds_<svc>) without importing them
    "radcds-devstack": {"radcds-inference", "radcds-fusion", "radcds-worklist"},
}


def _normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _imported(package: Path) -> set[str]:
    names: set[str] = set()
    for path in (package / "src").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names.update(a.name.split(".")[0] for a in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names.add(node.module.split(".")[0])
    return names - set(sys.stdlib_module_names) - {"__future__"}


def _own(name: str, package: Path) -> bool:
    return (package / "src" / name).is_dir()


def _declared(package: Path) -> set[str]:
    project = tomllib.loads((package / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    return {_normalise(re.split(r"[\[<>=!~; ]", d, maxsplit=1)[0]) for d in project["dependencies"]}


@pytest.mark.parametrize("name", sorted(PACKAGES))
def test_package_declares_exactly_the_distributions_its_code_imports(name):
    package = PACKAGES[name]
    owners = packages_distributions()
    declared = _declared(package)
    # a namespace module (google, opentelemetry) belongs to several distributions: one declared is enough
    candidates = {
        module: {_normalise(d) for d in owners.get(module, [module])}
        for module in _imported(package)
        if not _own(module, package)
    }
    undeclared = sorted(module for module, dists in candidates.items() if not dists & declared)
    assert undeclared == [], f"imported but not declared in {package.relative_to(ROOT)}/pyproject.toml"
    used = set().union(*candidates.values()) if candidates else set()
    unused = declared - used - LOADED_WITHOUT_IMPORT.get(name, set())
    assert unused == set(), f"declared in {package.relative_to(ROOT)}/pyproject.toml but never imported"


@pytest.mark.parametrize(
    ("name", "foreign"),
    [
        ("radcds", {"tritonclient", "hl7", "reportlab", "pynetdicom", "highdicom", "boto3", "pydicom", "grpcio"}),
        ("radcds-imaging", {"tritonclient", "hl7", "reportlab", "highdicom", "grpcio"}),
        ("radcds-referral", {"tritonclient", "hl7", "reportlab", "pynetdicom", "pydicom", "boto3", "highdicom"}),
        ("radcds-reporting", {"tritonclient", "pynetdicom", "pydicom", "boto3", "highdicom", "grpcio"}),
        ("radcds-inference", {"hl7", "reportlab", "pynetdicom", "boto3"}),
        ("radcds-fusion", {"tritonclient", "hl7", "reportlab", "pynetdicom", "boto3", "grpcio"}),
        (
            "radcds-worklist",
            {"tritonclient", "hl7", "reportlab", "pynetdicom", "pydicom", "boto3", "highdicom", "grpcio"},
        ),
    ],
)
def test_package_does_not_declare_another_services_libraries(name, foreign):
    assert _declared(PACKAGES[name]) & foreign == set()
