"""Unit tests for models/manifest.json and its loader radcds_inference.adapters.triton.manifest."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from radcds.domain import codes
from radcds_inference.adapters.triton.manifest import load_manifest
from radcds_inference.domain.envelope import Decision, SeriesAttributes

MODELS = Path(__file__).resolve().parents[2] / "models"
_CONFIG_TENSOR = re.compile(r'name:\s*"(\w+)"\s*data_type:\s*TYPE_(\w+)\s*dims:\s*\[([^\]]*)\]')
_TRITON_TO_KSERVE = {"INT16": "INT16", "INT32": "INT32", "FP32": "FP32"}


def _config_tensors(name: str) -> list[tuple[str, str, tuple[int, ...]]]:
    text = re.sub(r"#[^\n]*", "", (MODELS / name / "config.pbtxt").read_text())
    return [
        (n, _TRITON_TO_KSERVE[t], tuple(int(d) for d in dims.split(","))) for n, t, dims in _CONFIG_TENSOR.findall(text)
    ]


def test_repository_manifest_loads_with_active_and_example_models() -> None:
    manifest = load_manifest(MODELS)
    assert [e.name for e in manifest.active()] == ["chest_ctr", "head_ct_hyperdensity"]
    assert manifest.entry("brain_window_onnx").status == "example"


@pytest.mark.parametrize("name", ["chest_ctr", "head_ct_hyperdensity", "brain_window_onnx"])
def test_manifest_tensors_match_config_pbtxt(name: str) -> None:
    entry = load_manifest(MODELS).entry(name)
    declared = [(t.name, t.datatype, t.shape) for t in (*entry.inputs, *entry.outputs)]
    assert declared == _config_tensors(name)


def test_manifest_codes_are_the_domain_constants() -> None:
    manifest = load_manifest(MODELS)
    chest, head = manifest.entry("chest_ctr"), manifest.entry("head_ct_hyperdensity")
    assert [m.code for m in chest.measurements] == [
        codes.CARDIOTHORACIC_RATIO,
        codes.CARDIAC_WIDTH,
        codes.THORACIC_WIDTH,
    ]
    assert [m.unit for m in chest.measurements] == [codes.UNIT_RATIO, codes.UNIT_MILLIMETRE, codes.UNIT_MILLIMETRE]
    assert [f.code for f in chest.findings] == [codes.CARDIOMEGALY]
    assert not chest.findings[0].critical
    assert [f.code for f in head.findings] == [codes.INTRACRANIAL_HEMORRHAGE]
    assert head.findings[0].critical
    assert codes.INTRACRANIAL_HEMORRHAGE in codes.CRITICAL_FINDINGS
    assert head.measurements[4].unit == codes.UNIT_HOUNSFIELD
    assert head.measurements[2].code == codes.HYPERDENSE_REGION_VOLUME


def test_select_ap_chest_gives_not_analysed_and_head_ct_runs() -> None:
    manifest = load_manifest(MODELS)
    ((entry, decision),) = manifest.select(SeriesAttributes("CR", "CHEST", "AP", patient_age_years=64))
    assert entry.name == "chest_ctr"
    assert decision.decision is Decision.NOT_ANALYSED
    ((entry, decision),) = manifest.select(SeriesAttributes("CT", "", "", 5.0, None))
    assert entry.name == "head_ct_hyperdensity"
    assert decision.run


def test_select_unrelated_series_selects_nothing() -> None:
    assert load_manifest(MODELS).select(SeriesAttributes("MR", "SHOULDER")) == ()


def test_manifest_naming_a_model_not_in_the_repository_is_refused(tmp_path: Path) -> None:
    document = json.loads((MODELS / "manifest.json").read_text())
    (tmp_path / "manifest.json").write_text(json.dumps(document))
    with pytest.raises(ValueError, match="chest_ctr version 1 is not in the repository"):
        load_manifest(tmp_path)
    assert len(load_manifest(tmp_path, check_repository=False).entries) == 3


@pytest.mark.parametrize(
    "document",
    [{"manifest_version": 2, "models": []}, {"manifest_version": 1, "models": [{"name": "x"}]}],
)
def test_malformed_manifest_is_refused(tmp_path: Path, document: dict[str, object]) -> None:
    path = tmp_path / "manifest.json"
    path.write_text(json.dumps(document))
    with pytest.raises(ValueError, match="manifest"):
        load_manifest(path, check_repository=False)


def _header(name: str):
    import pydicom
    from pydicom.data import get_testdata_file

    path = get_testdata_file(name)
    assert path is not None, name
    return pydicom.dcmread(path, stop_before_pixels=True)


def _age_years(birth: str, study: str) -> int:
    years = int(study[:4]) - int(birth[:4])
    return years - 1 if study[4:8] < birth[4:8] else years


@pytest.mark.parametrize(
    ("model", "source"),
    [("chest_ctr", "RG1_UNCI.dcm"), ("head_ct_hyperdensity", "693_UNCI.dcm"), ("brain_window_onnx", "693_UNCI.dcm")],
)
def test_declared_inputs_are_what_the_validation_image_headers_say(model: str, source: str) -> None:
    """Honesty check: the manifest's declared_inputs are read back from the real pydicom-data file each model was
    validated on (its model card, "Validated envelope")."""
    declared = load_manifest(MODELS).entry(model).declared_inputs
    assert declared is not None and any(source in s for s in declared.sources)
    ds = _header(source)
    manufacturer, model_name = str(ds.get("Manufacturer", "")), str(ds.get("ManufacturerModelName", ""))
    assert declared.manufacturers == ((manufacturer,) if manufacturer else ())
    assert declared.manufacturer_models == ((model_name,) if model_name else ())
    assert declared.kvp is not None and declared.kvp.minimum == declared.kvp.maximum == float(ds.KVP)
    if "SliceThickness" in ds:
        assert declared.slice_thickness_mm is not None
        assert declared.slice_thickness_mm.minimum == declared.slice_thickness_mm.maximum == float(ds.SliceThickness)
    else:
        assert declared.slice_thickness_mm is None
    if ds.get("PatientBirthDate") and ds.get("StudyDate"):
        age = _age_years(str(ds.PatientBirthDate), str(ds.StudyDate))
        assert declared.patient_age_years is not None
        assert declared.patient_age_years.minimum == declared.patient_age_years.maximum == age
    else:
        assert declared.patient_age_years is None


def test_manifest_without_declared_inputs_loads_with_none(tmp_path: Path) -> None:
    document = json.loads((MODELS / "manifest.json").read_text())
    for model in document["models"]:
        model.pop("declared_inputs", None)
    (tmp_path / "manifest.json").write_text(json.dumps(document))
    assert all(e.declared_inputs is None for e in load_manifest(tmp_path, check_repository=False).entries)


def test_declared_inputs_with_manufacturers_not_a_list_is_refused(tmp_path: Path) -> None:
    document = json.loads((MODELS / "manifest.json").read_text())
    document["models"][0]["declared_inputs"]["manufacturers"] = "Philips Medical Systems"
    (tmp_path / "manifest.json").write_text(json.dumps(document))
    with pytest.raises(ValueError, match="malformed manifest entry"):
        load_manifest(tmp_path, check_repository=False)
