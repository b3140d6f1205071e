"""Unit tests for the Triton model models/pixel_statistics/1/model.py, without Triton.

model.py is loaded from its path with importlib (Triton loads it the same way, not as a package).
Real images come from pydicom-data / pydicom test files through radcds' prepare_image:
RG1_UNCI.dcm (chest CR, MONOCHROME1), 693_UNCI.dcm (head CT), CT_small.dcm (CT).
The Triton side of TritonPythonModel is exercised with a hand-written fake of
triton_python_backend_utils; the real server is covered by integration tests.
"""

from __future__ import annotations

import importlib.util
import json
import math
import sys
import types
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pydicom
import pytest
from pydicom.data import get_testdata_file

from radcds.adapters.dicom.pixels import prepare_image

MODEL_PATH = Path(__file__).resolve().parents[2] / "models" / "pixel_statistics" / "1" / "model.py"


def _load_model_module() -> types.ModuleType:
    spec = importlib.util.spec_from_file_location("pixel_statistics_model_v1", MODEL_PATH)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


model = _load_model_module()


def _prepared(name: str) -> npt.NDArray[np.int16]:
    path = get_testdata_file(name)
    assert path is not None, f"pydicom test file {name} is not installed"
    return prepare_image(pydicom.dcmread(path))


def _reference_percentile(values: npt.NDArray[np.float64], q: float) -> float:
    """Linear interpolation between order statistics (Hyndman and Fan type 7), by hand."""
    ordered = sorted(float(v) for v in values.ravel())
    rank = q / 100.0 * (len(ordered) - 1)
    lower = math.floor(rank)
    upper = min(lower + 1, len(ordered) - 1)
    return ordered[lower] + (rank - lower) * (ordered[upper] - ordered[lower])


def _reference_otsu(values: npt.NDArray[np.float64], bins: int = 256) -> float:
    """Brute-force Otsu: try every split of a `bins`-bin histogram, class statistics by loops."""
    flat = values.astype(np.float64).ravel()
    low, high = float(flat.min()), float(flat.max())
    width = (high - low) / bins
    index = np.minimum(((flat - low) / width).astype(np.int64), bins - 1)
    counts = [int(c) for c in np.bincount(index, minlength=bins)]
    centres = [low + (k + 0.5) * width for k in range(bins)]
    total = sum(counts)
    best_split, best_variance = -1, -1.0
    for split in range(bins - 1):
        n0 = sum(counts[: split + 1])
        n1 = total - n0
        if n0 == 0 or n1 == 0:
            continue
        mean0 = sum(c * x for c, x in zip(counts[: split + 1], centres[: split + 1], strict=True)) / n0
        mean1 = sum(c * x for c, x in zip(counts[split + 1 :], centres[split + 1 :], strict=True)) / n1
        variance = (n0 / total) * (n1 / total) * (mean0 - mean1) ** 2
        if variance > best_variance:
            best_split, best_variance = split, variance
    return low + (best_split + 1) * width


def _reference_statistics(image: npt.NDArray[np.int16]) -> npt.NDArray[np.float64]:
    values = image.astype(np.float64)
    mean = math.fsum(values.ravel()) / values.size
    sd = math.sqrt(math.fsum(((values - mean) ** 2).ravel()) / values.size)
    threshold = _reference_otsu(values)
    foreground = 100.0 * int((values > threshold).sum()) / values.size
    return np.array(
        [
            mean,
            sd,
            _reference_percentile(values, 5.0),
            _reference_percentile(values, 95.0),
            threshold,
            foreground,
        ]
    )


@pytest.mark.parametrize("name", ["RG1_UNCI.dcm", "693_UNCI.dcm", "CT_small.dcm"])
def test_compute_statistics_on_prepared_real_image_matches_reference(name: str) -> None:
    image = _prepared(name)

    statistics = model.compute_statistics(image)

    assert statistics.dtype == np.float32
    assert statistics.shape == (6,)
    np.testing.assert_allclose(statistics, _reference_statistics(image), rtol=1e-6, atol=1e-3)


def test_compute_statistics_on_head_ct_otsu_separates_padding_from_field_of_view() -> None:
    image = _prepared("693_UNCI.dcm")
    outside_field_of_view = 100.0 * np.count_nonzero(image < -2000) / image.size

    _, _, p05, p95, threshold, foreground = model.compute_statistics(image)

    # Pixel padding (about -3000 HU) is not masked, so it is the 5th percentile and Otsu splits
    # it from everything inside the field of view (air at -1000 HU included); bone is the 95th.
    assert p05 < -2000.0 < threshold < -1000.0
    assert p95 > 200.0
    assert foreground == pytest.approx(100.0 - outside_field_of_view, abs=0.5)


def test_compute_statistics_on_two_level_image_returns_exact_values() -> None:
    image = np.full((10, 10), 100, dtype=np.int16)
    image.ravel()[:30] = 200

    mean, sd, p05, p95, threshold, foreground = model.compute_statistics(image)

    assert mean == pytest.approx(130.0)
    assert sd == pytest.approx(100.0 * math.sqrt(0.3 * 0.7), rel=1e-6)
    assert p05 == 100.0
    assert p95 == 200.0
    assert 100.0 < threshold < 200.0
    assert foreground == pytest.approx(30.0)


def test_compute_statistics_on_constant_image_returns_zero_spread_and_no_foreground() -> None:
    image = np.full((4, 7), -1000, dtype=np.int16)

    statistics = model.compute_statistics(image)

    np.testing.assert_array_equal(statistics, [-1000.0, 0.0, -1000.0, -1000.0, -1000.0, 0.0])


def test_compute_statistics_on_empty_image_raises_value_error() -> None:
    with pytest.raises(ValueError, match="no pixels"):
        model.compute_statistics(np.zeros((0, 5), dtype=np.int16))


class _FakeTensor:
    def __init__(self, name: str, array: npt.NDArray[Any]) -> None:
        self.name = name
        self.array = array

    def as_numpy(self) -> npt.NDArray[Any]:
        return self.array


class _FakeError:
    INVALID_ARG = 3

    def __init__(self, message: str, code: int = 0) -> None:
        self.message = message
        self.code = code


class _FakeResponse:
    def __init__(self, output_tensors: list[_FakeTensor], error: _FakeError | None = None) -> None:
        self.output_tensors = output_tensors
        self.error = error


class _FakeRequest:
    def __init__(self, image: npt.NDArray[np.int16]) -> None:
        self.inputs = {"IMAGE": _FakeTensor("IMAGE", image)}


def _fake_pb_utils() -> types.ModuleType:
    fake = types.ModuleType("triton_python_backend_utils")
    fake.Tensor = _FakeTensor  # type: ignore[attr-defined]
    fake.TritonError = _FakeError  # type: ignore[attr-defined]
    fake.InferenceResponse = _FakeResponse  # type: ignore[attr-defined]

    def get_input_tensor_by_name(request: _FakeRequest, name: str) -> _FakeTensor:
        return request.inputs[name]

    def get_output_config_by_name(config: dict[str, Any], name: str) -> dict[str, Any]:
        return next(o for o in config["output"] if o["name"] == name)

    def triton_string_to_numpy(data_type: str) -> type:
        return {"TYPE_FP32": np.float32, "TYPE_INT16": np.int16}[data_type]

    fake.get_input_tensor_by_name = get_input_tensor_by_name  # type: ignore[attr-defined]
    fake.get_output_config_by_name = get_output_config_by_name  # type: ignore[attr-defined]
    fake.triton_string_to_numpy = triton_string_to_numpy  # type: ignore[attr-defined]
    return fake


@pytest.fixture
def triton_model(monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setitem(sys.modules, "triton_python_backend_utils", _fake_pb_utils())
    instance = model.TritonPythonModel()
    config = {"output": [{"name": "STATISTICS", "data_type": "TYPE_FP32", "dims": [6]}]}
    instance.initialize({"model_config": json.dumps(config)})
    return instance


def test_execute_on_batch_returns_one_statistics_row_per_item(triton_model: Any) -> None:
    first = _prepared("CT_small.dcm")
    second = (first // 2).astype(np.int16)
    single = _prepared("693_UNCI.dcm")

    responses = triton_model.execute([_FakeRequest(np.stack([first, second])), _FakeRequest(single[np.newaxis])])

    assert [r.error for r in responses] == [None, None]
    batch_out = responses[0].output_tensors[0]
    assert batch_out.name == "STATISTICS"
    assert batch_out.array.shape == (2, 6)
    np.testing.assert_array_equal(batch_out.array[0], model.compute_statistics(first))
    np.testing.assert_array_equal(batch_out.array[1], model.compute_statistics(second))
    np.testing.assert_array_equal(responses[1].output_tensors[0].array, model.compute_statistics(single)[np.newaxis])


def test_execute_on_empty_image_returns_error_for_that_request_only(triton_model: Any) -> None:
    good = np.zeros((1, 4, 4), dtype=np.int16)
    empty = np.zeros((1, 0, 4), dtype=np.int16)

    responses = triton_model.execute([_FakeRequest(empty), _FakeRequest(good)])

    assert responses[0].error is not None
    assert "no pixels" in responses[0].error.message
    assert responses[0].error.code == _FakeError.INVALID_ARG
    assert responses[1].error is None
