"""Copy the US Core resources radcds claims from a clone of HL7/US-Core into ``us-core/<version>/resources/``.

Run by hand when a US Core version is added (never at test or run time; nothing is downloaded):

    python deploy/local/hapi-fhir-validator/import_us_core.py GIT_DIR TAG VERSION

``GIT_DIR`` is a clone of https://github.com/HL7/US-Core (bare is fine), ``TAG`` the git tag of the
release. The source StructureDefinitions there are differential only (IG publisher inputs, YAML in
``input/resources-yaml`` or JSON in ``input/resources``); they are written unchanged as JSON (YAML
dates kept as strings) and the validator harness generates their snapshots when it loads them.

Only the profiles in :data:`ROOTS` and what they need are kept: the extensions they use
(``type.profile``), the profiles their references must meet (``type.targetProfile``, so that the
validator can check a resolved reference), the StructureDefinitions they derive from, and the US
Core ValueSets and CodeSystems of their bindings, transitively. ValueSets published elsewhere (VSAC,
THO) are not in that repository and are listed in ``manifest.json`` as external.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

#: The US Core profiles radcds claims (CapabilityStatement supportedProfile).
ROOTS = (
    "us-core-patient",
    "us-core-diagnosticreport-note",
    "us-core-observation-clinical-result",
    "us-core-servicerequest",
    "us-core-provenance",
    "us-core-organization",
)
_US_CORE = "http://hl7.org/fhir/us/core/"
_KINDS = re.compile(r"/(StructureDefinition|ValueSet|CodeSystem)-[^/]+\.(json|yml)$", re.IGNORECASE)


class _Loader(yaml.SafeLoader):
    """YAML without the timestamp resolver: FHIR dates stay strings."""


_Loader.yaml_implicit_resolvers = {
    k: [(t, r) for t, r in v if t != "tag:yaml.org,2002:timestamp"]
    for k, v in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def _git(git_dir: str, *args: str) -> str:
    return subprocess.run(["git", "-C", git_dir, *args], capture_output=True, text=True, check=True).stdout


def _load(git_dir: str, tag: str) -> dict[str, tuple[str, dict[str, Any]]]:
    """Every StructureDefinition, ValueSet and CodeSystem at ``tag`` by canonical URL (YAML source wins)."""
    out: dict[str, tuple[str, dict[str, Any]]] = {}
    names = _git(git_dir, "ls-tree", "-r", "--name-only", tag, "input/resources", "input/resources-yaml").split()
    for name in names:
        if not _KINDS.search(name):
            continue
        text = _git(git_dir, "show", f"{tag}:{name}")
        doc = json.loads(text) if name.endswith(".json") else yaml.load(text, Loader=_Loader)  # noqa: S506
        if not isinstance(doc, dict) or "url" not in doc:
            continue
        if doc["url"] not in out or name.endswith(".yml"):
            out[doc["url"]] = (name, doc)
    return out


def _references(doc: dict[str, Any]) -> set[str]:
    found: set[str] = set()

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if key in {"profile", "targetProfile"} and isinstance(value, list):
                    found.update(value)
                elif key == "valueSet" and isinstance(value, str):
                    found.add(value)
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    if doc["resourceType"] == "StructureDefinition":
        walk(doc.get("differential", {}))
        found.add(doc.get("baseDefinition", ""))
    elif doc["resourceType"] == "ValueSet":
        for inc in doc.get("compose", {}).get("include", []) + doc.get("compose", {}).get("exclude", []):
            found.update(inc.get("valueSet", []))
            if inc.get("system"):
                found.add(inc["system"])
    return {u.split("|")[0] for u in found if u}


def main(git_dir: str, tag: str, version: str) -> None:
    """Write the closure of :data:`ROOTS` at ``tag`` to ``us-core/<version>/`` and list what is external."""
    resources = _load(git_dir, tag)
    commit = _git(git_dir, "rev-parse", f"{tag}^{{commit}}").strip()
    todo = [f"{_US_CORE}StructureDefinition/{r}" for r in ROOTS]
    seen: set[str] = set()
    external: set[str] = set()
    while todo:
        url = todo.pop()
        if url in seen:
            continue
        seen.add(url)
        if url not in resources:
            external.add(url)
            continue
        todo.extend(_references(resources[url][1]))
    folder = Path(__file__).parent / "us-core" / version
    target = folder / "resources"
    target.mkdir(parents=True, exist_ok=True)
    for old in target.glob("*.json"):
        old.unlink()
    sources = []
    for url in sorted(seen - external):
        name, doc = resources[url]
        out = target / f"{doc['resourceType']}-{doc['id']}.json"
        out.write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
        sources.append({"file": out.name, "source": name, "url": url})
    manifest = {
        "repository": "https://github.com/HL7/US-Core",
        "tag": tag,
        "commit": commit,
        "version": version,
        "license": "CC0-1.0 (sushi-config.yaml at the tag)",
        "roots": list(ROOTS),
        "files": sources,
        "external": sorted(external),
    }
    (folder / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    print(f"{len(sources)} resources written to {target}; {len(external)} external canonicals")


if __name__ == "__main__":
    if len(sys.argv) != 4:
        sys.exit(__doc__)
    main(*sys.argv[1:4])
