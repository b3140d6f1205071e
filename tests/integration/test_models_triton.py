"""The real models/ repository served by the real tritonserver, compared with the in-process algorithms.

Starts its own tritonserver (from the nvidia-pytriton wheel) on ports 26000-26002 with
models/ as it is committed, manifest.json included, so it does not need the session stack.
Run it alone: ``flock /tmp/radcds-it.lock .venv/bin/python -m pytest tests/integration/test_models_triton.py``.

Real images: RG1_UNCI.dcm (PA chest CR) and 693_UNCI.dcm (head CT slice) from pydicom-data 1.0.0.
The positive head CT case is DERIVED from 693_UNCI.dcm by inserting a disc of 60 to 76 HU.
"""

from __future__ import annotations

import os
import shutil
import types
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pydicom
import pytest
import tritonclient.grpc as grpcclient
from pydicom.data import get_testdata_file

from radcds_devstack import processes
from radcds_devstack.stack import LocalStack, Ports
from radcds_devstack.testing import model_code
from radcds_inference.adapters.dicom.preprocess import PreparedSeries, prepare_series
from radcds_inference.adapters.triton.manifest import load_manifest

pytestmark = [pytest.mark.integration, pytest.mark.triton]

ROOT = Path(__file__).resolve().parents[2]
MODELS = ROOT / "models"
PORTS = Ports(triton_http=26000, triton_grpc=26001, triton_metrics=26002)


def _load(name: str) -> types.ModuleType:
    return model_code(MODELS, name)


chest = _load("chest_ctr")
head = _load("head_ct_hyperdensity")
window = _load("brain_window_onnx")


@pytest.fixture(scope="module")
def triton() -> Iterator[grpcclient.InferenceServerClient]:
    run_dir = ROOT / ".run" / f"models-it-{os.getpid()}"
    stack = LocalStack(root=ROOT, run_dir=run_dir, ports=PORTS)
    stack.triton_server.start()
    try:
        stack.triton_server.wait(timeout_s=180.0)
        client = grpcclient.InferenceServerClient(url=f"127.0.0.1:{PORTS.triton_grpc}")
        yield client
        client.close()
    finally:
        processes.stop("triton", run_dir)
        shutil.rmtree(run_dir, ignore_errors=True)


def _prepared(name: str, model: str) -> PreparedSeries:
    path = get_testdata_file(name)
    assert path is not None
    return prepare_series([pydicom.dcmread(path)], load_manifest(MODELS).entry(model).preprocessing)


def _infer(
    client: grpcclient.InferenceServerClient, model: str, inputs: dict[str, npt.NDArray[np.generic]], outputs: list[str]
) -> dict[str, npt.NDArray[np.generic]]:
    tensors = []
    for name, array in inputs.items():
        datatype = {np.dtype(np.int16): "INT16", np.dtype(np.float32): "FP32"}[array.dtype]
        tensor = grpcclient.InferInput(name, list(array.shape), datatype)
        tensor.set_data_from_numpy(array)
        tensors.append(tensor)
    result = client.infer(model, tensors, outputs=[grpcclient.InferRequestedOutput(o) for o in outputs])
    return {o: result.as_numpy(o) for o in outputs}


def _derived_positive(hu: npt.NDArray[np.int16]) -> npt.NDArray[np.int16]:
    """693_UNCI.dcm with an inserted disc of radius 7 mm at (260, 250), HU drawn from 60..76."""
    rows, columns = np.ogrid[: hu.shape[0], : hu.shape[1]]
    disc = ((rows - 260) * 0.478516) ** 2 + ((columns - 250) * 0.478516) ** 2 <= 7.0**2
    derived = hu.copy()
    derived[disc] = np.random.default_rng(693).integers(60, 77, size=int(disc.sum()), dtype=np.int16)
    return derived


def test_repository_with_manifest_all_models_ready(triton: grpcclient.InferenceServerClient) -> None:
    with urllib.request.urlopen(f"http://127.0.0.1:{PORTS.triton_http}/v2/health/ready", timeout=5) as response:
        assert response.status == 200
    for entry in load_manifest(MODELS).entries:
        assert triton.is_model_ready(entry.name, entry.version)


def test_chest_ctr_served_real_cr_matches_in_process(triton: grpcclient.InferenceServerClient) -> None:
    series = _prepared("RG1_UNCI.dcm", "chest_ctr")
    spacing = np.array([[0.8, 0.8]], dtype=np.float32)  # illustrative: RG1 carries Pixel Spacing 0
    served = _infer(
        triton,
        "chest_ctr",
        {"IMAGE": series.pixels, "PIXEL_SPACING": spacing},
        ["STATUS", "MEASUREMENTS", "LOCATIONS"],
    )
    expected = chest.measure_ctr(series.pixels[0])
    assert served["STATUS"].tolist() == [[chest.STATUS_MEASURED]]
    np.testing.assert_array_equal(served["MEASUREMENTS"][0], expected.measurements((0.8, 0.8)))
    np.testing.assert_array_equal(served["LOCATIONS"][0], expected.locations())
    assert 0.40 < float(served["MEASUREMENTS"][0][0]) < 0.60


def test_head_ct_served_real_slice_and_derived_positive_in_one_batch_match_in_process(
    triton: grpcclient.InferenceServerClient,
) -> None:
    """The second slice is DERIVED from the real one by inserting a 7 mm disc of 60..76 HU."""
    series = _prepared("693_UNCI.dcm", "head_ct_hyperdensity")
    assert series.pixel_spacing_mm is not None
    assert series.slice_thickness_mm is not None
    real = series.pixels[0]
    batch = np.ascontiguousarray(np.stack([real, _derived_positive(real)]))
    spacing_tuple = (*series.pixel_spacing_mm, series.slice_thickness_mm)
    spacing = np.array([spacing_tuple, spacing_tuple], dtype=np.float32)
    served = _infer(
        triton, "head_ct_hyperdensity", {"IMAGE": batch, "SPACING": spacing}, ["STATUS", "MEASUREMENTS", "LOCATIONS"]
    )
    # The served model gets float32 spacing; compute in process from the same float32 values.
    spacing32 = tuple(float(v) for v in spacing[0])
    for i, image in enumerate(batch):
        expected = head.find_hyperdensities(image, spacing32)
        assert int(served["STATUS"][i][0]) == expected.status
        np.testing.assert_array_equal(served["MEASUREMENTS"][i], expected.measurements())
        np.testing.assert_array_equal(served["LOCATIONS"][i], expected.locations())
    assert served["MEASUREMENTS"][0][0] == 0  # real slice: negative
    assert served["MEASUREMENTS"][1][0] == 1  # derived: one region
    assert served["LOCATIONS"][1][:2].tolist() == [260, 250]  # centroid, then bounding box and outline
    assert served["LOCATIONS"][0].tolist() == [-1] * len(head.LOCATION_NAMES)


def test_onnx_example_served_matches_onnxruntime_in_process(triton: grpcclient.InferenceServerClient) -> None:
    series = _prepared("693_UNCI.dcm", "brain_window_onnx")
    served = _infer(triton, "brain_window_onnx", {"IMAGE": series.pixels}, ["WINDOW_STATISTICS"])
    session = window.load_session(MODELS / "brain_window_onnx" / "1" / window.ONNX_FILE)
    np.testing.assert_array_equal(served["WINDOW_STATISTICS"], window.window_statistics(session, series.pixels))


def test_head_ct_served_bad_spacing_is_refused_as_invalid_argument(triton: grpcclient.InferenceServerClient) -> None:
    series = _prepared("693_UNCI.dcm", "head_ct_hyperdensity")
    with pytest.raises(Exception, match="SPACING must be three positive mm values"):
        _infer(
            triton,
            "head_ct_hyperdensity",
            {"IMAGE": series.pixels, "SPACING": np.zeros((1, 3), dtype=np.float32)},
            ["STATUS"],
        )
