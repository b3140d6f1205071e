"""Loading ``models/manifest.json``: which studies each model of the Triton repository applies to.

The format is described in ``docs/models.md``; this module turns it into the pure
:class:`radcds_inference.domain.envelope.ModelManifest` and refuses malformed files with ``ValueError``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from radcds.domain.codes import Coding
from radcds_inference.domain.envelope import (
    DeclaredInputs,
    FindingSpec,
    ManifestEntry,
    ModelEnvelope,
    ModelManifest,
    OutputMeasurement,
    PreprocessingSpec,
    Range,
    TensorSpec,
)

MANIFEST_FILE = "manifest.json"
SUPPORTED_VERSION = 1


def load_manifest(path: Path, *, check_repository: bool = True) -> ModelManifest:
    """Read the manifest at `path` (a file, or a model repository folder holding ``manifest.json``).

    With `check_repository`, each entry must have ``<name>/config.pbtxt`` and a ``<name>/<version>/``
    folder beside the manifest, so the manifest cannot name a model Triton does not serve.

    Raises:
        ValueError: if the file is not a valid manifest.
    """
    file = path / MANIFEST_FILE if path.is_dir() else path
    try:
        document = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise ValueError(f"cannot read model manifest {file}: {exc}") from exc
    if document.get("manifest_version") != SUPPORTED_VERSION:
        raise ValueError(f"{file}: manifest_version must be {SUPPORTED_VERSION}")
    try:
        manifest = ModelManifest(tuple(_entry(item) for item in document["models"]))
    except (KeyError, TypeError) as exc:
        raise ValueError(f"{file}: malformed manifest entry ({exc!r})") from exc
    if check_repository:
        for entry in manifest.entries:
            folder = file.parent / entry.name
            if not (folder / "config.pbtxt").is_file() or not (folder / entry.version).is_dir():
                raise ValueError(f"{file}: {entry.name} version {entry.version} is not in the repository {file.parent}")
    return manifest


def _coding(item: dict[str, Any]) -> Coding:
    return Coding(str(item["system"]), str(item["code"]), str(item["display"]))


def _range(item: dict[str, Any] | None) -> Range | None:
    if item is None:
        return None
    low, high = item.get("min"), item.get("max")
    return Range(None if low is None else float(low), None if high is None else float(high))


def _tensors(items: list[dict[str, Any]]) -> tuple[TensorSpec, ...]:
    return tuple(TensorSpec(str(t["name"]), str(t["datatype"]), tuple(int(d) for d in t["shape"])) for t in items)


def _strings(items: list[Any] | None) -> tuple[str, ...]:
    if not isinstance(items, list | None):
        raise TypeError(f"expected a list of strings, got {items!r}")
    return tuple(str(v) for v in items or [])


def _declared_inputs(item: dict[str, Any] | None) -> DeclaredInputs | None:
    """``declared_inputs`` (docs/models.md): carried for drift monitoring, never used to select studies."""
    if item is None:
        return None
    return DeclaredInputs(
        sources=_strings(item.get("sources")),
        manufacturers=_strings(item.get("manufacturers")),
        manufacturer_models=_strings(item.get("manufacturer_models")),
        kvp=_range(item.get("kvp")),
        slice_thickness_mm=_range(item.get("slice_thickness_mm")),
        patient_age_years=_range(item.get("patient_age_years")),
    )


def _entry(item: dict[str, Any]) -> ManifestEntry:
    applies = item["applies_to"]
    envelope = ModelEnvelope(
        modalities=frozenset(str(m).upper() for m in applies["modalities"]),
        body_parts=frozenset(str(b).upper() for b in applies.get("body_parts", [])),
        view_positions=frozenset(str(v).upper() for v in applies.get("view_positions", [])),
        slice_thickness_mm=_range(applies.get("slice_thickness_mm")),
        patient_age_years=_range(applies.get("patient_age_years")),
        allow_unknown=frozenset(applies.get("allow_unknown", [])),
    )
    inputs, outputs = item["inputs"], item["outputs"]
    pre = inputs.get("preprocessing", {})
    return ManifestEntry(
        name=str(item["name"]),
        version=str(item["version"]),
        status=str(item.get("status", "active")),
        title=str(item.get("title", "")),
        envelope=envelope,
        preprocessing=PreprocessingSpec(
            max_size=int(pre.get("max_size", 512)),
            voi_lut=bool(pre.get("voi_lut", False)),
            invert_monochrome1=bool(pre.get("invert_monochrome1", True)),
        ),
        per=str(inputs.get("per", "instance")),
        inputs=_tensors(inputs.get("tensors", [])),
        outputs=_tensors(outputs.get("tensors", [])),
        measurements=tuple(
            OutputMeasurement(int(m["index"]), _coding(m["code"]), str(m["unit"]))
            for m in outputs.get("measurements", [])
        ),
        findings=tuple(
            FindingSpec(_coding(f["code"]), bool(f["critical"]), str(f.get("rule", "")))
            for f in item.get("findings", [])
        ),
        declared_inputs=_declared_inputs(item.get("declared_inputs")),
    )
