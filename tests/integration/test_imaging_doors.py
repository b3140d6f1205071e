"""Both doors of the running imaging service with every listed test file: STOW-RS and DIMSE C-STORE
(dcmtk storescu), then QIDO-RS and WADO-RS read each instance back.

Files: pydicom-data's chest CR (uncompressed and JPEG 2000 lossless/lossy), head CT slice (and its
JPEG 2000 variant), enhanced multi-frame CT, enhanced MR (RLE, JPEG 2000, JPEG-LS), and pydicom's
CT_small. Each send gets fresh Study/Series/SOP Instance UIDs (pixels untouched), because several
variants share their UIDs and imaging stores one SOP Instance once.
"""

from __future__ import annotations

import io
import shutil
import subprocess
from pathlib import Path

import httpx
import pydicom
import pytest
from pydicom.data import get_testdata_file

from radcds.adapters.dicomweb.multipart import parse_content_type, split_parts
from radcds_devstack.demo import stow, with_fresh_uids

pytestmark = [pytest.mark.integration, pytest.mark.kafka]

FILES = [
    "RG1_UNCI.dcm",
    "RG1_J2KR.dcm",
    "RG1_J2KI.dcm",
    "693_UNCI.dcm",
    "693_J2KR.dcm",
    "eCT_Supplemental.dcm",
    "emri_small_RLE.dcm",
    "emri_small_jpeg_2k_lossless.dcm",
    "emri_small_jpeg_ls_lossless.dcm",
    "CT_small.dcm",
]


#: storescu option proposing a compressed transfer syntax, so the file is sent as it is (dcmtk 3.6).
STORESCU_PROPOSE = {
    "1.2.840.10008.1.2.4.90": "-xv",  # JPEG 2000 lossless
    "1.2.840.10008.1.2.4.91": "-xw",  # JPEG 2000
    "1.2.840.10008.1.2.4.80": "-xt",  # JPEG-LS lossless
    "1.2.840.10008.1.2.4.81": "-xu",  # JPEG-LS near-lossless
    "1.2.840.10008.1.2.5": "-xr",  # RLE
    "1.2.840.10008.1.2.4.70": "-xs",  # JPEG lossless SV1
    "1.2.840.10008.1.2.4.50": "-xy",  # JPEG baseline
}


def _fresh(name: str) -> tuple[bytes, pydicom.Dataset]:
    data = with_fresh_uids(Path(get_testdata_file(name)))
    return data, pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True)


def _read_back(stack, ds: pydicom.Dataset) -> bytes:
    base = f"http://{stack.host}:{stack.ports.imaging}/dicom-web"
    found = httpx.get(
        f"{base}/studies/{ds.StudyInstanceUID}/series/{ds.SeriesInstanceUID}/instances",
        headers={"Accept": "application/dicom+json"},
        timeout=10,
    )
    assert found.status_code == 200, found.text
    assert found.json()[0]["00080018"]["Value"] == [ds.SOPInstanceUID]
    r = httpx.get(
        f"{base}/studies/{ds.StudyInstanceUID}/series/{ds.SeriesInstanceUID}/instances/{ds.SOPInstanceUID}", timeout=30
    )
    assert r.status_code == 200
    _, params = parse_content_type(r.headers["content-type"])
    return split_parts(r.content, params["boundary"])[0].content


@pytest.mark.parametrize("name", FILES)
def test_every_listed_file_is_stored_over_stow_rs_and_read_back_unchanged(stack, name):
    data, ds = _fresh(name)
    response = stow(stack, [data])
    assert "00081198" not in response
    back = pydicom.dcmread(io.BytesIO(_read_back(stack, ds)))
    original = pydicom.dcmread(io.BytesIO(data))
    assert back.file_meta.TransferSyntaxUID == original.file_meta.TransferSyntaxUID
    assert back.PixelData == original.PixelData


@pytest.mark.parametrize("name", FILES)
def test_every_listed_file_is_stored_over_dimse_c_store_from_dcmtk(stack, name, tmp_path):
    storescu = shutil.which("storescu")
    assert storescu, "dcmtk is not installed (make deps installs it)"
    data, ds = _fresh(name)
    path = tmp_path / name
    path.write_bytes(data)
    # Propose the file's own (compressed) transfer syntax, so it is sent as it is.
    propose = STORESCU_PROPOSE.get(str(pydicom.dcmread(path, stop_before_pixels=True).file_meta.TransferSyntaxUID))
    args = [storescu, *([propose] if propose else []), "-aet", "RADCDS_ITEST", "-aec", "RADCDS"]
    run = subprocess.run(
        [*args, stack.host, str(stack.ports.dimse), str(path)], capture_output=True, text=True, timeout=120
    )
    assert run.returncode == 0, run.stderr
    back = pydicom.dcmread(io.BytesIO(_read_back(stack, ds)))
    assert back.SOPInstanceUID == ds.SOPInstanceUID
    assert back.PixelData == pydicom.dcmread(path).PixelData
