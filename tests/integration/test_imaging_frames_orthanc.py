"""Our WADO-RS frames equal Orthanc's for the same instance (PS3.18 10.4.1.1.3).

Orthanc (Debian ``orthanc`` 1.10 + ``orthanc-dicomweb`` 1.7, see orthanc.py) is an independent PACS. Each
file goes to both, with the same fresh UIDs: to the running imaging service by STOW-RS, to Orthanc by its
REST ``POST /instances``. Then both answer the same frames request and the part bodies must be equal, byte
for byte: uncompressed (``application/octet-stream``) and "as stored" (``transfer-syntax=*``, what OHIF
asks). Orthanc 1.10 cannot decode JPEG 2000 to uncompressed (it answers 500), so those files are compared
as stored only.

Files (pydicom-data 1.0.0): RG1_UNCI (chest CR), 693_UNCI (head CT), eCT_Supplemental (Enhanced CT, 2
frames), emri_small RLE / JPEG-LS lossless / JPEG 2000 lossless (Enhanced MR, 10 frames), RG1_J2KR and
JPEG-LL (JPEG lossless SV1).
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import httpx
import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.uid import generate_uid

from radcds.adapters.dicomweb.multipart import parse_content_type, split_parts
from radcds_devstack.demo import stow
from radcds_devstack.stack import LocalStack

from .orthanc import OrthancServer, orthanc_binary

pytestmark = [pytest.mark.integration, pytest.mark.kafka]

UNCOMPRESSED = 'multipart/related; type="application/octet-stream"'
AS_STORED = "multipart/related; type=application/octet-stream; transfer-syntax=*"
#: file -> (frames asked, whether Orthanc decodes it to uncompressed)
FILES = {
    "RG1_UNCI.dcm": ("1", True),
    "693_UNCI.dcm": ("1", True),
    "eCT_Supplemental.dcm": ("2,1", True),
    "emri_small_RLE.dcm": ("1,4,10", True),
    "emri_small_jpeg_ls_lossless.dcm": ("2,9", True),
    "JPEG-LL.dcm": ("1", True),
    "emri_small_jpeg_2k_lossless.dcm": ("3,10", False),
    "RG1_J2KR.dcm": ("1", False),
}


def _fresh(name: str) -> bytes:
    ds = pydicom.dcmread(Path(get_testdata_file(name)))
    ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID = generate_uid(), generate_uid(), generate_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


@pytest.fixture(scope="module")
def orthanc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OrthancServer]:
    try:
        orthanc_binary()
    except RuntimeError as exc:
        pytest.fail(str(exc))
    with OrthancServer(tmp_path_factory.mktemp("orthanc-frames")) as server:
        yield server


@pytest.fixture(scope="module")
def both(stack: LocalStack, orthanc: OrthancServer) -> dict[str, str]:
    """Each file stored in both; file name -> instance path below ``/dicom-web``."""
    paths = {}
    for name in FILES:
        data = _fresh(name)
        ds = pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True)
        assert "00081198" not in stow(stack, [data])
        r = httpx.post(f"{orthanc.url}/instances", content=data, timeout=60)
        assert r.status_code == 200, r.text
        paths[name] = f"/studies/{ds.StudyInstanceUID}/series/{ds.SeriesInstanceUID}/instances/{ds.SOPInstanceUID}"
    return paths


def _frames(base: str, path: str, frames: str, accept: str) -> list[tuple[str, bytes]]:
    r = httpx.get(f"{base}{path}/frames/{frames}", headers={"Accept": accept}, timeout=120)
    assert r.status_code == 200, f"{base}: {r.status_code} {r.text[:300]}"
    _, params = parse_content_type(r.headers["content-type"])
    return [(p.headers.get("content-type", ""), p.content) for p in split_parts(r.content, params["boundary"])]


def _syntax(content_type: str) -> str:
    return parse_content_type(content_type)[1].get("transfer-syntax", "")


@pytest.mark.parametrize("name", [n for n, (_, decodes) in FILES.items() if decodes])
def test_uncompressed_frames_equal_orthancs_for_the_same_instance(stack, orthanc, both, name):
    ours = _frames(f"http://{stack.host}:{stack.ports.imaging}/dicom-web", both[name], FILES[name][0], UNCOMPRESSED)
    theirs = _frames(orthanc.dicomweb, both[name], FILES[name][0], UNCOMPRESSED)
    assert [b for _, b in ours] == [b for _, b in theirs]
    assert {_syntax(c) for c, _ in ours} == {_syntax(c) for c, _ in theirs} == {"1.2.840.10008.1.2.1"}


@pytest.mark.parametrize("name", list(FILES))
def test_frames_as_stored_equal_orthancs_with_the_same_transfer_syntax(stack, orthanc, both, name):
    ours = _frames(f"http://{stack.host}:{stack.ports.imaging}/dicom-web", both[name], FILES[name][0], AS_STORED)
    theirs = _frames(orthanc.dicomweb, both[name], FILES[name][0], AS_STORED)
    assert [b for _, b in ours] == [b for _, b in theirs]
    assert [_syntax(c) for c, _ in ours] == [_syntax(c) for c, _ in theirs]
    assert [c.split(";")[0] for c, _ in ours] == [c.split(";")[0] for c, _ in theirs]
