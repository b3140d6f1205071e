"""Unit tests for the ONNX drop-in example models/brain_window_onnx (onnxruntime, without Triton).

Real image: 693_UNCI.dcm (pydicom-data 1.0.0), head CT in HU. The reference is plain numpy.
"""

from __future__ import annotations

import importlib.util
import sys
import types
from pathlib import Path

import numpy as np
import onnx
import pydicom
import pytest
from pydicom.data import get_testdata_file

from radcds_inference.adapters.dicom.preprocess import prepare_series
from radcds_inference.domain.envelope import PreprocessingSpec

FOLDER = Path(__file__).resolve().parents[2] / "models" / "brain_window_onnx"


def _load(path: Path, name: str) -> types.ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


model = _load(FOLDER / "1" / "model.py", "brain_window_onnx_model_v1")
builder = _load(FOLDER / "build_model.py", "brain_window_onnx_build")


def test_committed_onnx_file_is_what_the_build_script_makes() -> None:
    assert (FOLDER / "1" / "model.onnx").read_bytes() == builder.build().SerializeToString()
    onnx.checker.check_model(onnx.load(FOLDER / "1" / "model.onnx"), full_check=True)


def test_real_head_ct_window_statistics_match_numpy_reference() -> None:
    path = get_testdata_file("693_UNCI.dcm")
    assert path is not None
    pixels = prepare_series([pydicom.dcmread(path)], PreprocessingSpec(max_size=0)).pixels
    session = model.load_session(FOLDER / "1" / model.ONNX_FILE)
    result = model.window_statistics(session, pixels)
    hu = pixels[0].astype(np.float64)
    windowed = np.clip((hu - 0.0) / 80.0, 0.0, 1.0)
    inside = (hu >= 0.0) & (hu <= 80.0)
    assert result.shape == (1, 2)
    # float32 accumulation over 262144 pixels in onnxruntime: about 1e-5 relative error.
    assert result[0, 0] == pytest.approx(windowed.mean(), rel=1e-4)
    assert result[0, 1] == pytest.approx(inside.mean(), rel=1e-4)


def test_batch_rows_are_independent() -> None:
    session = model.load_session(FOLDER / "1" / model.ONNX_FILE)
    batch = np.array([[[0, 40, 80, 120]], [[-1000, 0, 0, 0]]], dtype=np.int16)
    np.testing.assert_allclose(model.window_statistics(session, batch), [[0.625, 0.75], [0.0, 0.75]])


def test_two_dimensional_input_is_refused() -> None:
    session = model.load_session(FOLDER / "1" / model.ONNX_FILE)
    with pytest.raises(ValueError, match="batch, rows, columns"):
        model.window_statistics(session, np.zeros((4, 4), dtype=np.int16))
