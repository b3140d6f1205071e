"""Generate the chart's README "Parameters" tables and values.schema.json from values.yaml (``make chart-docs``).

@bitnami/readme-generator-for-helm reads the ``## @param`` / ``## @section`` comments of values.yaml and writes
the tables into README.md and a JSON schema with each key's type, description and default. It cannot express
the rules the chart's tests rely on (patterns, enums, ranges, required keys, unknown keys refused, the worklist's
issuer required when it is enabled), so one post-processing step merges values.constraints.json into that
schema (:func:`merge_constraints`): the constraints are the base, the generator adds the descriptions and
defaults, and every key the constraints do not name comes from the generator as it is. Nothing is edited by hand
in README.md's tables or in values.schema.json; tests/helm regenerates both and fails when they differ.
"""

from __future__ import annotations

import argparse
import copy
import json
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
CONSTRAINTS = HERE / "values.constraints.json"
CONFIG = HERE / "readme-generator.json"
#: Keys the generator contributes to a schema node the constraints already define.
ANNOTATIONS = ("description", "default")


def merge_constraints(generated: dict[str, Any], constraints: dict[str, Any]) -> dict[str, Any]:
    """The constraints with the generated descriptions and defaults, plus the generated keys they do not name.

    A constraints node that is a ``$ref`` gets only the annotations (draft-07 ignores keywords beside ``$ref``,
    the definition it points at holds the rules).
    """
    merged = copy.deepcopy(constraints)
    _merge_node(generated, merged)
    return merged


def _merge_node(generated: dict[str, Any], target: dict[str, Any]) -> None:
    for key in ANNOTATIONS:
        if key in generated:
            target[key] = copy.deepcopy(generated[key])
    if "$ref" in target:
        return
    generated_properties = generated.get("properties", {})
    if not generated_properties:
        return
    properties = target.setdefault("properties", {})
    for name, node in generated_properties.items():
        if isinstance(properties.get(name), dict):
            _merge_node(node, properties[name])
        elif name not in properties:
            properties[name] = copy.deepcopy(node)


def generate(*, chart: Path, generator: Path, out: Path) -> None:
    """Write README.md and values.schema.json for ``chart`` into ``out`` (the chart itself for ``make chart-docs``)."""
    with tempfile.TemporaryDirectory(prefix="chart-docs-") as tmp:
        work = Path(tmp)
        shutil.copy(chart / "values.yaml", work / "values.yaml")
        shutil.copy(chart / "README.md", work / "README.md")
        subprocess.run(
            [
                "node",
                str(generator),
                "--config",
                str(CONFIG),
                "--values",
                str(work / "values.yaml"),
                "--readme",
                str(work / "README.md"),
                "--schema",
                str(work / "generated.schema.json"),
            ],
            check=True,
            capture_output=True,
            text=True,
            timeout=120,
        )
        generated = json.loads((work / "generated.schema.json").read_text())
        constraints = json.loads(CONSTRAINTS.read_text())
        schema = merge_constraints(generated, constraints)
        out.mkdir(parents=True, exist_ok=True)
        shutil.copy(work / "README.md", out / "README.md")
        (out / "values.schema.json").write_text(json.dumps(schema, indent=2) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chart", type=Path, required=True, help="the chart directory")
    parser.add_argument("--generator", type=Path, required=True, help="readme-generator-for-helm's bin/index.js")
    parser.add_argument("--out", type=Path, help="where to write (default: the chart directory)")
    args = parser.parse_args()
    generate(chart=args.chart, generator=args.generator, out=args.out or args.chart)


if __name__ == "__main__":
    main()
