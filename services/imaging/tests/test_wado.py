"""WADO-RS metadata and rendered routes (PS3.18 10.4) over real stored instances.

Fixtures: pydicom's own ``CT_small.dcm`` (CT 128x128) and pydicom-data 1.0.0 files found offline by
``get_testdata_file``: ``RG1_UNCI.dcm`` / ``RG1_J2KR.dcm`` (PA chest CR 1955x1841, MONOCHROME1,
uncompressed / JPEG 2000 lossless), ``693_UNCI.dcm`` (head CT 512x512), ``emri_small_RLE.dcm`` /
``emri_small_jpeg_2k_lossless.dcm`` / ``emri_small_jpeg_ls_lossless.dcm`` (enhanced MR 64x64,
10 frames) and ``color3d_jpeg_baseline.dcm`` (ultrasound, JPEG baseline YBR_FULL_422, 120 frames).
Variants of one file share their UIDs, so each goes into its own service.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
from fastapi.testclient import TestClient
from PIL import Image

from radcds.adapters.dicomweb.multipart import parse_content_type, split_parts
from radcds_imaging.adapters.rendering import Window, apply_window

from .conftest import BASE, wado_client
from .conftest import testdata_path as _path
from .conftest import testdata_uids as _uids


def _client(root: Path, *names: str) -> TestClient:
    """An app with only the WADO router, over SQLite and a filesystem store holding ``names``."""
    return wado_client(root, *(_path(n).read_bytes() for n in names))


def _instance_url(name: str) -> str:
    study, series, sop = _uids(name)
    return f"/dicom-web/studies/{study}/series/{series}/instances/{sop}"


def _image(response: Any) -> Image.Image:
    assert response.status_code == 200, response.text
    return Image.open(io.BytesIO(response.content))


def _pixels(response: Any) -> np.ndarray:
    return np.asarray(_image(response)).astype(np.int16)


def _linear_window(values: np.ndarray, center: float, width: float) -> np.ndarray:
    """PS3.3 C.11.2.1.2.1 LINEAR window onto 0..255, written out independently of the code under test."""
    scaled = ((values - (center - 0.5)) / (width - 1) + 0.5) * 255.0
    return np.clip(np.rint(scaled), 0, 255).astype(np.int16)


# --- metadata ---


def test_series_metadata_of_stored_ct_returns_dicom_json_without_inline_pixel_data(tmp_path):
    client = _client(tmp_path, "CT_small.dcm")
    study, series, sop = _uids("CT_small.dcm")
    response = client.get(f"/dicom-web/studies/{study}/series/{series}/metadata")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/dicom+json")
    (instance,) = response.json()
    assert instance["00080018"] == {"vr": "UI", "Value": [sop]}
    assert instance["0020000D"]["Value"] == [study]
    assert instance["00080060"]["Value"] == ["CT"]
    assert instance["00280010"]["Value"] == [128]
    assert "7FE00010" not in instance
    assert not any("InlineBinary" in attr and len(attr["InlineBinary"]) > 2048 for attr in instance.values())


def test_metadata_bulk_data_uri_of_large_binary_value_resolves_to_its_bytes(tmp_path):
    client = _client(tmp_path, "CT_small.dcm")
    study, series, _ = _uids("CT_small.dcm")
    (instance,) = client.get(f"/dicom-web/studies/{study}/series/{series}/metadata").json()
    bulk = {tag: attr["BulkDataURI"] for tag, attr in instance.items() if "BulkDataURI" in attr}
    assert bulk, "CT_small.dcm has a private OB value over the threshold"
    tag, uri = next(iter(bulk.items()))
    assert uri.startswith(f"{BASE}{_instance_url('CT_small.dcm')}/bulkdata/")
    response = client.get(uri.removeprefix(BASE))
    assert response.status_code == 200
    media, params = parse_content_type(response.headers["content-type"])
    assert media == "multipart/related"
    (part,) = split_parts(response.content, params["boundary"])
    assert part.content == pydicom.dcmread(_path("CT_small.dcm"))[int(tag, 16)].value


def test_study_metadata_returns_one_object_per_instance(tmp_path):
    client = _client(tmp_path, "CT_small.dcm", "693_UNCI.dcm")
    study, _, sop = _uids("CT_small.dcm")
    response = client.get(f"/dicom-web/studies/{study}/metadata")
    assert response.status_code == 200
    assert [i["00080018"]["Value"][0] for i in response.json()] == [sop]


def test_metadata_of_unknown_study_or_series_returns_404(tmp_path):
    client = _client(tmp_path, "CT_small.dcm")
    study, _, _ = _uids("CT_small.dcm")
    assert client.get("/dicom-web/studies/1.2.3/metadata").status_code == 404
    assert client.get(f"/dicom-web/studies/{study}/series/1.2.3/metadata").status_code == 404


# --- rendered ---


def test_rendered_ct_png_matches_reference_window_at_full_size(tmp_path):
    client = _client(tmp_path, "693_UNCI.dcm")
    image = _image(client.get(f"{_instance_url('693_UNCI.dcm')}/frames/1/rendered"))
    assert image.format == "PNG" and image.mode == "L" and image.size == (512, 512)
    ds = pydicom.dcmread(_path("693_UNCI.dcm"))
    hu = ds.pixel_array.astype(np.float64) * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
    reference = _linear_window(hu, float(ds.WindowCenter), float(ds.WindowWidth))
    assert np.abs(np.asarray(image).astype(np.int16) - reference).max() <= 1


def test_rendered_with_viewport_shrinks_keeping_aspect(tmp_path):
    client = _client(tmp_path, "RG1_UNCI.dcm")
    image = _image(client.get(f"{_instance_url('RG1_UNCI.dcm')}/rendered", params={"viewport": "256,256"}))
    # 1841 columns x 1955 rows fitted into 256x256.
    assert image.size == (241, 256)


def test_rendered_monochrome1_cr_is_inverted_like_reference(tmp_path):
    client = _client(tmp_path, "RG1_UNCI.dcm")
    rendered = _pixels(client.get(f"{_instance_url('RG1_UNCI.dcm')}/frames/1/rendered"))
    ds = pydicom.dcmread(_path("RG1_UNCI.dcm"))
    reference = 255 - _linear_window(ds.pixel_array.astype(np.float64), float(ds.WindowCenter), float(ds.WindowWidth))
    assert rendered.shape == (1955, 1841)
    assert np.abs(rendered - reference).max() <= 1
    # Not inverting would give the complement: far from the rendered image.
    assert np.abs(rendered - (255 - reference)).mean() > 20


def test_rendered_jpeg2000_cr_equals_uncompressed_variant(tmp_path):
    plain = _client(tmp_path / "plain", "RG1_UNCI.dcm")
    j2k = _client(tmp_path / "j2k", "RG1_J2KR.dcm")
    a = _pixels(plain.get(f"{_instance_url('RG1_UNCI.dcm')}/rendered", params={"viewport": "512,512"}))
    b = _pixels(j2k.get(f"{_instance_url('RG1_J2KR.dcm')}/rendered", params={"viewport": "512,512"}))
    assert a.shape == b.shape
    # The two files' stored values differ slightly (mean |diff| about 50 of 32767), so allow a few levels.
    assert np.abs(a - b).max() <= 3
    assert np.abs(a - b).mean() < 0.5


def test_rendered_multiframe_mr_frames_agree_across_rle_jpeg2000_and_jpegls(tmp_path):
    names = ["emri_small_RLE.dcm", "emri_small_jpeg_2k_lossless.dcm", "emri_small_jpeg_ls_lossless.dcm"]
    ds = pydicom.dcmread(_path(names[0]))
    for frame in (1, 10):
        reference = _pixels_of_frame(ds, frame)
        for i, name in enumerate(names):
            client = _client(tmp_path / f"{i}", name)
            rendered = _pixels(client.get(f"{_instance_url(name)}/frames/{frame}/rendered"))
            assert rendered.shape == (64, 64), name
            assert np.abs(rendered - reference).max() <= 1, (name, frame)


def _pixels_of_frame(ds: pydicom.Dataset, frame: int) -> np.ndarray:
    """Full-range min-max scaling of one frame (no window in these files)."""
    values = ds.pixel_array[frame - 1].astype(np.float64)
    low, high = values.min(), values.max()
    return np.clip(np.rint((values - low) * 255.0 / (high - low)), 0, 255).astype(np.int16)


def test_rendered_frames_of_multiframe_mr_differ(tmp_path):
    client = _client(tmp_path, "emri_small_RLE.dcm")
    url = _instance_url("emri_small_RLE.dcm")
    first = _pixels(client.get(f"{url}/frames/1/rendered"))
    last = _pixels(client.get(f"{url}/frames/10/rendered"))
    assert np.abs(first - last).mean() > 1


def test_rendered_jpeg_baseline_colour_frame_is_rgb_like_decoded_frame(tmp_path):
    client = _client(tmp_path, "color3d_jpeg_baseline.dcm")
    image = _image(client.get(f"{_instance_url('color3d_jpeg_baseline.dcm')}/frames/1/rendered"))
    assert image.mode == "RGB" and image.size == (640, 480)
    reference = pydicom.pixels.pixel_array(str(_path("color3d_jpeg_baseline.dcm")), index=0).astype(np.int16)
    assert np.abs(np.asarray(image).astype(np.int16) - reference).max() <= 1


def test_rendered_with_accept_jpeg_returns_jpeg(tmp_path):
    client = _client(tmp_path, "CT_small.dcm")
    response = client.get(f"{_instance_url('CT_small.dcm')}/rendered", headers={"Accept": "image/jpeg"})
    assert response.headers["content-type"] == "image/jpeg"
    image = _image(response)
    assert image.format == "JPEG" and image.size == (128, 128)


def test_rendered_with_wildcard_accept_defaults_to_png(tmp_path):
    client = _client(tmp_path, "CT_small.dcm")
    response = client.get(f"{_instance_url('CT_small.dcm')}/rendered", headers={"Accept": "*/*"})
    assert response.headers["content-type"] == "image/png"
    assert _image(response).size == (128, 128)


def test_rendered_with_accept_gif_returns_406(tmp_path):
    client = _client(tmp_path, "CT_small.dcm")
    response = client.get(f"{_instance_url('CT_small.dcm')}/rendered", headers={"Accept": "image/gif"})
    assert response.status_code == 406


def test_rendered_frame_zero_or_past_last_returns_400(tmp_path):
    client = _client(tmp_path, "emri_small_RLE.dcm")
    url = _instance_url("emri_small_RLE.dcm")
    assert client.get(f"{url}/frames/0/rendered").status_code == 400
    assert client.get(f"{url}/frames/11/rendered").status_code == 400
    assert client.get(f"{url}/frames/x/rendered").status_code == 400


def test_rendered_malformed_viewport_returns_400(tmp_path):
    client = _client(tmp_path, "CT_small.dcm")
    url = f"{_instance_url('CT_small.dcm')}/rendered"
    assert client.get(url, params={"viewport": "0,10"}).status_code == 400
    assert client.get(url, params={"viewport": "abc"}).status_code == 400


def _ct_small_hu() -> np.ndarray:
    """CT_small.dcm in Hounsfield units: stored values through Rescale Slope and Intercept (PS3.3 C.11.1.1.2)."""
    ds = pydicom.dcmread(_path("CT_small.dcm"))
    return ds.pixel_array.astype(np.float64) * float(ds.RescaleSlope) + float(ds.RescaleIntercept)


def test_rendered_ct_with_brain_window_follows_linear_formula_in_hounsfield_units(tmp_path):
    client = _client(tmp_path, "CT_small.dcm")
    rendered = _pixels(client.get(f"{_instance_url('CT_small.dcm')}/rendered", params={"window": "40,80,linear"}))
    hu = _ct_small_hu()
    assert rendered.shape == hu.shape
    assert np.abs(rendered - _linear_window(hu, 40.0, 80.0)).max() <= 1
    # The window is in HU: air and bone saturate, and brain-range values (0..79 HU) are spread over 0..255.
    assert (rendered[hu <= 0] == 0).all() and (rendered[hu > 79] == 255).all()
    inside = (hu > 0) & (hu <= 79)
    assert inside.sum() > 1000 and 0 < rendered[inside].mean() < 255


def test_rendered_ct_without_window_differs_from_brain_window(tmp_path):
    # CT_small.dcm has no window of its own: unwindowed it shows its full range, so a window must change it.
    client = _client(tmp_path, "CT_small.dcm")
    url = f"{_instance_url('CT_small.dcm')}/rendered"
    plain = _pixels(client.get(url))
    windowed = _pixels(client.get(url, params={"window": "40,80,linear"}))
    assert np.abs(plain - windowed).mean() > 20


def test_rendered_frame_with_linear_exact_window_follows_its_formula(tmp_path):
    client = _client(tmp_path, "CT_small.dcm")
    url = f"{_instance_url('CT_small.dcm')}/frames/1/rendered"
    rendered = _pixels(client.get(url, params={"window": "400,1500,linear-exact"}))
    hu = _ct_small_hu()
    # PS3.3 C.11.2.1.3.2: ((x - c) / w + 0.5) * (ymax - ymin) + ymin, clamped at c -/+ w/2.
    expected = np.clip(np.rint(((hu - 400.0) / 1500.0 + 0.5) * 255.0), 0, 255)
    assert np.abs(rendered - expected).max() <= 1


def test_rendered_with_sigmoid_window_follows_its_formula(tmp_path):
    client = _client(tmp_path, "CT_small.dcm")
    url = f"{_instance_url('CT_small.dcm')}/rendered"
    rendered = _pixels(client.get(url, params={"window": "40,400,sigmoid"}))
    hu = _ct_small_hu()
    # PS3.3 C.11.2.1.3.1: (ymax - ymin) / (1 + exp(-4 (x - c) / w)) + ymin.
    expected = np.rint(255.0 / (1.0 + np.exp(-4.0 * (hu - 40.0) / 400.0)))
    assert np.abs(rendered - expected).max() <= 1


def test_rendered_with_window_on_colour_instance_leaves_it_unchanged(tmp_path):
    client = _client(tmp_path, "color3d_jpeg_baseline.dcm")
    url = f"{_instance_url('color3d_jpeg_baseline.dcm')}/frames/1/rendered"
    assert np.array_equal(_pixels(client.get(url)), _pixels(client.get(url, params={"window": "40,80,linear"})))


def test_rendered_with_malformed_window_returns_400_naming_the_problem(tmp_path):
    client = _client(tmp_path, "CT_small.dcm")
    url = f"{_instance_url('CT_small.dcm')}/rendered"
    for value, words in (
        ("40,80", "center,width,function"),
        ("40,80,linear,1", "center,width,function"),
        ("brain,80,linear", "numbers"),
        ("40,80,cubic", "linear, linear-exact, sigmoid"),
        ("40,0.5,linear", "at least 1"),
        ("40,0,sigmoid", "above 0"),
        ("40,nan,linear-exact", "finite"),
    ):
        response = client.get(url, params={"window": value})
        assert response.status_code == 400, value
        assert "invalid window" in response.json()["error"] and words in response.json()["error"], value


def test_linear_window_of_width_one_is_a_threshold_at_center_minus_half():
    # PS3.3 C.11.2.1.2.1 with w = 1: x <= c - 0.5 gives ymin, x > c - 0.5 gives ymax.
    out = apply_window(np.array([99.0, 99.5, 99.6, 100.0]), Window(center=100.0, width=1.0))
    assert out.tolist() == [0.0, 0.0, 255.0, 255.0]


def test_linear_exact_window_ends_are_ymin_and_ymax_at_center_plus_minus_half_width():
    out = apply_window(np.array([-10.0, 0.0, 10.0, 10.1]), Window(center=0.0, width=20.0, function="linear-exact"))
    assert out.tolist() == [0.0, 127.5, 255.0, 255.0]


def test_rendered_instance_without_image_returns_400(tmp_path):
    # pydicom's test-SR.dcm: a Comprehensive SR, which has no pixel data.
    client = _client(tmp_path, "test-SR.dcm")
    assert client.get(f"{_instance_url('test-SR.dcm')}/rendered").status_code == 400


def test_rendered_unknown_instance_returns_404(tmp_path):
    client = _client(tmp_path, "CT_small.dcm")
    study, series, _ = _uids("CT_small.dcm")
    response = client.get(f"/dicom-web/studies/{study}/series/{series}/instances/1.2.3/frames/1/rendered")
    assert response.status_code == 404
