"""WADO-RS Retrieve Frames (PS3.18 10.4.1.1.3, media types 8.7.3) and ``accept`` on rendered (8.3.3.1).

Real files from pydicom and pydicom-data 1.0.0 (see test_wado.py): single-frame RG1_UNCI / RG1_J2KR
(chest CR, uncompressed / JPEG 2000 lossless), 693_UNCI (head CT), JPEG-LL (JPEG lossless SV1),
MR_small_bigendian; multi-frame emri_small (RLE, JPEG 2000 lossless, JPEG-LS lossless; 10 frames),
eCT_Supplemental (Enhanced CT, 2 frames) and color3d_jpeg_baseline (120 frames, YBR_FULL_422).
Expected bytes come from pydicom itself: ``pixel_array`` for decoded frames, ``generate_frames`` for
the encapsulated ones.
"""

from __future__ import annotations

from io import BytesIO
from pathlib import Path

import numpy as np
import pydicom
import pytest
from fastapi.testclient import TestClient
from pydicom.encaps import generate_frames

from radcds.adapters.dicomweb.multipart import parse_accept, parse_content_type, split_parts

from .conftest import testdata_path as _path
from .conftest import testdata_uids as _uids
from .conftest import wado_client

OHIF_ACCEPT = "multipart/related; type=application/octet-stream; transfer-syntax=*"
UNCOMPRESSED = "application/octet-stream; transfer-syntax=1.2.840.10008.1.2.1"


def _client(root: Path, name: str) -> TestClient:
    return wado_client(root, _path(name).read_bytes())


def _instance_url(name: str) -> str:
    study, series, sop = _uids(name)
    return f"/dicom-web/studies/{study}/series/{series}/instances/{sop}"


def _frames(client: TestClient, name: str, frames: str, accept: str | None = None) -> list[tuple[str, bytes]]:
    headers = {"accept": accept} if accept is not None else {}
    response = client.get(f"{_instance_url(name)}/frames/{frames}", headers=headers)
    assert response.status_code == 200, response.text
    media, params = parse_content_type(response.headers["content-type"])
    assert media == "multipart/related"
    parts = split_parts(response.content, params["boundary"])
    assert params["type"] == parts[0].content_type
    return [(p.headers["content-type"], p.content) for p in parts]


def _decoded(name: str) -> np.ndarray:
    ds = pydicom.dcmread(_path(name))
    arr = ds.pixel_array
    return arr if "NumberOfFrames" in ds else arr[np.newaxis]


def _le(frame: np.ndarray) -> bytes:
    return np.ascontiguousarray(frame.astype(frame.dtype.newbyteorder("<"))).tobytes()


def _encapsulated(name: str) -> list[bytes]:
    ds = pydicom.dcmread(_path(name))
    return list(generate_frames(ds.PixelData, number_of_frames=int(ds.get("NumberOfFrames", 1))))


# --- uncompressed ---


def test_frame_of_single_frame_uncompressed_chest_cr_is_its_pixel_data_unchanged(tmp_path):
    client = _client(tmp_path, "RG1_UNCI.dcm")
    ((content_type, content),) = _frames(client, "RG1_UNCI.dcm", "1")
    assert content_type == UNCOMPRESSED
    assert content == pydicom.dcmread(_path("RG1_UNCI.dcm")).PixelData
    assert len(content) == 1955 * 1841 * 2


def test_frame_of_uncompressed_head_ct_with_ohif_accept_is_sent_uncompressed(tmp_path):
    client = _client(tmp_path, "693_UNCI.dcm")
    ((content_type, content),) = _frames(client, "693_UNCI.dcm", "1", OHIF_ACCEPT)
    assert content_type == UNCOMPRESSED
    assert content == _le(_decoded("693_UNCI.dcm")[0])


def test_frame_list_of_enhanced_ct_returns_each_frame_in_the_order_asked(tmp_path):
    client = _client(tmp_path, "eCT_Supplemental.dcm")
    parts = _frames(client, "eCT_Supplemental.dcm", "2,1")
    expected = _decoded("eCT_Supplemental.dcm")
    assert [c for c, _ in parts] == [UNCOMPRESSED, UNCOMPRESSED]
    assert [b for _, b in parts] == [_le(expected[1]), _le(expected[0])]


def test_frames_of_rle_multiframe_mr_are_decoded_to_pydicoms_pixels(tmp_path):
    client = _client(tmp_path, "emri_small_RLE.dcm")
    parts = _frames(client, "emri_small_RLE.dcm", "1,3,10", 'multipart/related; type="application/octet-stream"')
    expected = _decoded("emri_small_RLE.dcm")
    assert [b for _, b in parts] == [_le(expected[0]), _le(expected[2]), _le(expected[9])]
    assert all(c == UNCOMPRESSED for c, _ in parts)


def test_frame_of_jpeg2000_lossless_chest_cr_is_decoded_to_pydicoms_pixels(tmp_path):
    client = _client(tmp_path, "RG1_J2KR.dcm")
    ((content_type, content),) = _frames(client, "RG1_J2KR.dcm", "1", "multipart/related")
    assert content_type == UNCOMPRESSED
    assert content == _le(_decoded("RG1_J2KR.dcm")[0])
    assert len(content) == 1955 * 1841 * 2


def test_frame_of_big_endian_mr_is_sent_little_endian(tmp_path):
    client = _client(tmp_path, "MR_small_bigendian.dcm")
    ((_, content),) = _frames(client, "MR_small_bigendian.dcm", "1")
    assert content == _le(_decoded("MR_small_bigendian.dcm")[0])
    assert content == pydicom.dcmread(_path("MR_small.dcm")).PixelData


# --- compressed as stored ---


@pytest.mark.parametrize("type_param", ["image/jp2", '"image/jp2"'])
def test_jpeg2000_frames_asked_as_image_jp2_quoted_or_not_are_the_stored_encapsulated_frames(tmp_path, type_param):
    client = _client(tmp_path, "emri_small_jpeg_2k_lossless.dcm")
    parts = _frames(client, "emri_small_jpeg_2k_lossless.dcm", "2,5", f"multipart/related; type={type_param}")
    stored = _encapsulated("emri_small_jpeg_2k_lossless.dcm")
    assert parts == [
        ("image/jp2; transfer-syntax=1.2.840.10008.1.2.4.90", stored[1]),
        ("image/jp2; transfer-syntax=1.2.840.10008.1.2.4.90", stored[4]),
    ]


def test_ohif_accept_on_jpeg2000_multiframe_returns_stored_frames_labelled_with_their_syntax(tmp_path):
    client = _client(tmp_path, "emri_small_jpeg_2k_lossless.dcm")
    parts = _frames(client, "emri_small_jpeg_2k_lossless.dcm", "1", OHIF_ACCEPT)
    assert parts == [("image/jp2; transfer-syntax=1.2.840.10008.1.2.4.90", _encapsulated(_j2k())[0])]


def _j2k() -> str:
    return "emri_small_jpeg_2k_lossless.dcm"


def test_rle_frames_asked_as_image_x_dicom_rle_are_the_stored_rle_segments(tmp_path):
    client = _client(tmp_path, "emri_small_RLE.dcm")
    parts = _frames(client, "emri_small_RLE.dcm", "10", "multipart/related; type=image/x-dicom-rle")
    assert parts == [("image/x-dicom-rle; transfer-syntax=1.2.840.10008.1.2.5", _encapsulated("emri_small_RLE.dcm")[9])]


def test_jpeg_ls_frame_with_explicit_stored_syntax_is_sent_as_stored(tmp_path):
    client = _client(tmp_path, "emri_small_jpeg_ls_lossless.dcm")
    accept = "multipart/related; type=image/jls; transfer-syntax=1.2.840.10008.1.2.4.80"
    ((content_type, content),) = _frames(client, "emri_small_jpeg_ls_lossless.dcm", "4", accept)
    assert content_type == "image/jls; transfer-syntax=1.2.840.10008.1.2.4.80"
    assert content == _encapsulated("emri_small_jpeg_ls_lossless.dcm")[3]


def test_colour_jpeg_baseline_frame_as_image_jpeg_is_the_stored_jpeg_and_decodes_to_rgb_uncompressed(tmp_path):
    name = "color3d_jpeg_baseline.dcm"
    client = _client(tmp_path, name)
    ((content_type, content),) = _frames(client, name, "2", "multipart/related; type=image/jpeg")
    assert content_type == "image/jpeg; transfer-syntax=1.2.840.10008.1.2.4.50"
    assert content == _encapsulated(name)[1]
    ((_, raw),) = _frames(client, name, "2")
    ds = pydicom.dcmread(_path(name))
    assert raw == np.ascontiguousarray(ds.pixel_array[1]).tobytes()
    assert len(raw) == 480 * 640 * 3


def test_any_part_type_gets_native_frames_of_an_uncompressed_instance_and_stored_ones_of_a_compressed(tmp_path):
    # dicomweb-client asks for frames with 'multipart/related; type="*/*"' when given no media type.
    accept = 'multipart/related; type="*/*"'
    native = _client(tmp_path / "native", "eCT_Supplemental.dcm")
    assert _frames(native, "eCT_Supplemental.dcm", "2", accept) == [
        (UNCOMPRESSED, _le(_decoded("eCT_Supplemental.dcm")[1]))
    ]
    compressed = _client(tmp_path / "rle", "emri_small_RLE.dcm")
    assert _frames(compressed, "emri_small_RLE.dcm", "2", accept) == [
        ("image/dicom-rle; transfer-syntax=1.2.840.10008.1.2.5", _encapsulated("emri_small_RLE.dcm")[1])
    ]


# --- refusals ---


@pytest.mark.parametrize(
    "accept",
    [
        "multipart/related; type=image/jls",  # not the stored syntax
        "multipart/related; type=application/octet-stream; transfer-syntax=1.2.840.10008.1.2.4.50",
        "multipart/related; type=image/jp2; transfer-syntax=1.2.840.10008.1.2.4.91",
        "image/png",
        "application/dicom+json",
    ],
)
def test_frames_in_a_representation_that_cannot_be_served_answer_406(tmp_path, accept):
    client = _client(tmp_path, _j2k())
    response = client.get(f"{_instance_url(_j2k())}/frames/1", headers={"accept": accept})
    assert response.status_code == 406
    assert "image/jp2" in response.json()["error"]


def test_jpeg_lossless_frame_asked_as_image_jpeg_without_syntax_answers_406_default_is_baseline(tmp_path):
    client = _client(tmp_path, "JPEG-LL.dcm")
    url = f"{_instance_url('JPEG-LL.dcm')}/frames/1"
    assert client.get(url, headers={"accept": "multipart/related; type=image/jpeg"}).status_code == 406
    accept = "multipart/related; type=image/jpeg; transfer-syntax=1.2.840.10008.1.2.4.70"
    ((content_type, content),) = _frames(client, "JPEG-LL.dcm", "1", accept)
    assert content_type == "image/jpeg; transfer-syntax=1.2.840.10008.1.2.4.70"
    assert content == _encapsulated("JPEG-LL.dcm")[0]


@pytest.mark.parametrize(
    ("name", "frames"), [("emri_small_RLE.dcm", "11"), ("emri_small_RLE.dcm", "1,11"), ("RG1_UNCI.dcm", "2")]
)
def test_frame_past_number_of_frames_answers_404(tmp_path, name, frames):
    client = _client(tmp_path, name)
    response = client.get(f"{_instance_url(name)}/frames/{frames}")
    assert response.status_code == 404
    assert "Number of Frames" in response.json()["error"]


@pytest.mark.parametrize("frames", ["0", "-1", "x", "1,,2", "1.5"])
def test_frame_number_zero_or_garbage_answers_400(tmp_path, frames):
    client = _client(tmp_path, "emri_small_RLE.dcm")
    assert client.get(f"{_instance_url('emri_small_RLE.dcm')}/frames/{frames}").status_code == 400


def test_frames_of_unknown_instance_answer_404(tmp_path):
    client = _client(tmp_path, "CT_small.dcm")
    study, series, _ = _uids("CT_small.dcm")
    assert client.get(f"/dicom-web/studies/{study}/series/{series}/instances/1.2.3/frames/1").status_code == 404


def test_frames_of_instance_without_pixel_data_answer_404(tmp_path):
    ds = pydicom.dcmread(_path("CT_small.dcm"))
    del ds.PixelData
    buffer = BytesIO()
    ds.save_as(buffer)
    client = wado_client(tmp_path, buffer.getvalue())
    response = client.get(f"{_instance_url('CT_small.dcm')}/frames/1")
    assert response.status_code == 404
    assert "Pixel Data" in response.json()["error"]


# --- Accept parsing ---


def test_accept_with_quoted_and_unquoted_type_parses_to_the_same_media_range():
    quoted, unquoted = (
        parse_accept('multipart/related; type="image/jp2"'),
        parse_accept("multipart/related; type=image/jp2"),
    )
    assert quoted == unquoted
    assert quoted[0].params == {"type": "image/jp2"}


def test_accept_ranges_come_best_quality_first_and_q0_is_dropped():
    ranges = parse_accept("image/png;q=0.5, image/jpeg, image/gif;q=0")
    assert [r.media_type for r in ranges] == ["image/jpeg", "image/png"]


# --- accept query parameter on rendered (PS3.18 8.3.3.1) ---


def test_rendered_with_accept_query_image_jpeg_answers_jpeg(tmp_path):
    client = _client(tmp_path, "CT_small.dcm")
    response = client.get(f"{_instance_url('CT_small.dcm')}/rendered", params={"accept": "image/jpeg"})
    assert response.status_code == 200
    assert response.headers["content-type"] == "image/jpeg"
    assert response.content[:2] == b"\xff\xd8"


def test_rendered_frame_accept_query_overrides_the_accept_header(tmp_path):
    client = _client(tmp_path, "emri_small_RLE.dcm")
    response = client.get(
        f"{_instance_url('emri_small_RLE.dcm')}/frames/3/rendered",
        params={"accept": "image/jpeg"},
        headers={"accept": "image/png"},
    )
    assert response.status_code == 200
    assert response.headers["content-type"] == "image/jpeg"


def test_rendered_with_accept_query_of_unsupported_type_answers_406(tmp_path):
    client = _client(tmp_path, "CT_small.dcm")
    response = client.get(f"{_instance_url('CT_small.dcm')}/rendered", params={"accept": "image/gif"})
    assert response.status_code == 406


def test_frames_accept_query_overrides_the_accept_header(tmp_path):
    client = _client(tmp_path, _j2k())
    response = client.get(
        f"{_instance_url(_j2k())}/frames/1",
        params={"accept": "multipart/related; type=image/jp2"},
        headers={"accept": "multipart/related; type=application/octet-stream"},
    )
    assert response.status_code == 200
    _, params = parse_content_type(response.headers["content-type"])
    (part,) = split_parts(response.content, params["boundary"])
    assert part.headers["content-type"] == "image/jp2; transfer-syntax=1.2.840.10008.1.2.4.90"
    assert part.content == _encapsulated(_j2k())[0]
