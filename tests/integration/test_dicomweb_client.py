"""An independent DICOMweb client, PyPI ``dicomweb-client`` (pinned in the dev group), against the running
imaging service: STOW-RS, QIDO-RS (studies, series, instances), WADO-RS metadata, frames (single- and
multi-frame, uncompressed and compressed) and rendered (PS3.18 10.4-10.6).

Files (pydicom-data 1.0.0): RG1_UNCI.dcm / RG1_J2KR.dcm (chest CR, 1955x1841, uncompressed / JPEG
2000 lossless), eCT_Supplemental.dcm (Enhanced CT, 2 frames, uncompressed), emri_small_RLE.dcm and
emri_small_jpeg_2k_lossless.dcm (Enhanced MR, 64x64, 10 frames, RLE / JPEG 2000 lossless). They go into
one fresh study, one series each, with fresh UIDs (pixels untouched). Expected frame bytes come from
pydicom: the native Pixel Data, ``pixel_array`` for decoded frames, ``generate_frames`` for encapsulated
ones.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pydicom
import pytest
import requests
from dicomweb_client.api import DICOMwebClient
from PIL import Image
from pydicom.data import get_testdata_file
from pydicom.encaps import generate_frames
from pydicom.uid import generate_uid

pytestmark = [pytest.mark.integration, pytest.mark.kafka]

FILES = [
    "RG1_UNCI.dcm",
    "RG1_J2KR.dcm",
    "eCT_Supplemental.dcm",
    "emri_small_RLE.dcm",
    "emri_small_jpeg_2k_lossless.dcm",
]
EXPLICIT_LE = "1.2.840.10008.1.2.1"


@dataclass(frozen=True)
class Sent:
    """One instance as sent: its data set (with pixels) and its UIDs."""

    ds: pydicom.Dataset

    @property
    def uids(self) -> tuple[str, str, str]:
        return str(self.ds.StudyInstanceUID), str(self.ds.SeriesInstanceUID), str(self.ds.SOPInstanceUID)

    def decoded(self) -> np.ndarray:
        arr = self.ds.pixel_array
        return arr if int(self.ds.get("NumberOfFrames", 1)) > 1 else arr[np.newaxis]

    def decoded_bytes(self, index: int) -> bytes:
        frame = self.decoded()[index]
        return np.ascontiguousarray(frame.astype(frame.dtype.newbyteorder("<"))).tobytes()

    def encapsulated(self) -> list[bytes]:
        return list(generate_frames(self.ds.PixelData, number_of_frames=int(self.ds.get("NumberOfFrames", 1))))


def _fresh(name: str, study_uid: str) -> pydicom.Dataset:
    ds = pydicom.dcmread(Path(get_testdata_file(name)))
    ds.StudyInstanceUID = study_uid
    ds.SeriesInstanceUID = generate_uid()
    ds.SOPInstanceUID = generate_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    return ds


@pytest.fixture(scope="module")
def client(stack) -> DICOMwebClient:
    return DICOMwebClient(url=f"http://{stack.host}:{stack.ports.imaging}/dicom-web")


@pytest.fixture(scope="module")
def sent(client) -> dict[str, Sent]:
    """The five files, stored by the client's STOW-RS into one new study."""
    study_uid = generate_uid()
    datasets = {name: _fresh(name, study_uid) for name in FILES}
    response = client.store_instances(datasets=list(datasets.values()))
    stored = {str(item.ReferencedSOPInstanceUID) for item in response.ReferencedSOPSequence}
    assert stored == {str(ds.SOPInstanceUID) for ds in datasets.values()}
    assert "FailedSOPSequence" not in response
    return {name: Sent(ds) for name, ds in datasets.items()}


def test_client_stow_then_qido_finds_the_study_its_five_series_and_each_instance(client, sent):
    study_uid = sent["RG1_UNCI.dcm"].uids[0]
    (study,) = client.search_for_studies(search_filters={"StudyInstanceUID": study_uid})
    assert pydicom.Dataset.from_json(study).StudyInstanceUID == study_uid
    series = [pydicom.Dataset.from_json(s) for s in client.search_for_series(study_instance_uid=study_uid)]
    assert {s.SeriesInstanceUID for s in series} == {x.uids[1] for x in sent.values()}
    assert {s.Modality for s in series} == {"CR", "CT", "MR"}
    for item in sent.values():
        study, series_uid, sop = item.uids
        (instance,) = client.search_for_instances(study_instance_uid=study, series_instance_uid=series_uid)
        assert pydicom.Dataset.from_json(instance).SOPInstanceUID == sop


def test_client_instance_metadata_carries_the_sent_tags(client, sent):
    for name in ("RG1_UNCI.dcm", "emri_small_jpeg_2k_lossless.dcm"):
        item = sent[name]
        study, series, sop = item.uids
        meta = pydicom.Dataset.from_json(client.retrieve_instance_metadata(study, series, sop))
        assert meta.SOPInstanceUID == sop and meta.SOPClassUID == item.ds.SOPClassUID
        assert (meta.Rows, meta.Columns) == (item.ds.Rows, item.ds.Columns)
        assert int(meta.get("NumberOfFrames", 1)) == int(item.ds.get("NumberOfFrames", 1))
        assert "PixelData" not in meta


def test_client_frame_of_single_frame_uncompressed_cr_is_its_pixel_data(client, sent):
    item = sent["RG1_UNCI.dcm"]
    (frame,) = client.retrieve_instance_frames(
        *item.uids, frame_numbers=[1], media_types=(("application/octet-stream", EXPLICIT_LE),)
    )
    assert frame == item.ds.PixelData


def test_client_frames_of_multiframe_uncompressed_ct_come_in_the_order_asked(client, sent):
    item = sent["eCT_Supplemental.dcm"]
    frames = client.retrieve_instance_frames(*item.uids, frame_numbers=[2, 1])
    assert frames == [item.decoded_bytes(1), item.decoded_bytes(0)]


def test_client_frames_of_multiframe_jpeg2000_mr_uncompressed_are_pydicoms_decoded_pixels(client, sent):
    item = sent["emri_small_jpeg_2k_lossless.dcm"]
    frames = client.retrieve_instance_frames(
        *item.uids, frame_numbers=[1, 5, 10], media_types=(("application/octet-stream", EXPLICIT_LE),)
    )
    assert frames == [item.decoded_bytes(0), item.decoded_bytes(4), item.decoded_bytes(9)]


def test_client_frames_of_multiframe_jpeg2000_mr_as_image_jp2_are_the_stored_frames(client, sent):
    item = sent["emri_small_jpeg_2k_lossless.dcm"]
    frames = client.retrieve_instance_frames(
        *item.uids, frame_numbers=[3, 7], media_types=(("image/jp2", "1.2.840.10008.1.2.4.90"),)
    )
    stored = item.encapsulated()
    assert frames == [stored[2], stored[6]]


def test_client_frames_of_multiframe_rle_mr_as_image_dicom_rle_are_the_stored_frames(client, sent):
    item = sent["emri_small_RLE.dcm"]
    frames = client.retrieve_instance_frames(
        *item.uids, frame_numbers=[10], media_types=(("image/x-dicom-rle", "1.2.840.10008.1.2.5"),)
    )
    assert frames == [item.encapsulated()[9]]


def test_client_frame_of_single_frame_jpeg2000_cr_with_any_syntax_is_the_stored_frame(client, sent):
    item = sent["RG1_J2KR.dcm"]
    (frame,) = client.retrieve_instance_frames(
        *item.uids, frame_numbers=[1], media_types=(("application/octet-stream", "*"),)
    )
    assert frame == item.encapsulated()[0]


def test_client_frames_in_an_unserved_syntax_raise_406_and_past_the_last_frame_404(client, sent):
    item = sent["emri_small_jpeg_2k_lossless.dcm"]
    with pytest.raises(requests.HTTPError) as refused:
        client.retrieve_instance_frames(*item.uids, frame_numbers=[1], media_types=(("image/jls",),))
    assert refused.value.response.status_code == 406
    with pytest.raises(requests.HTTPError) as missing:
        client.retrieve_instance_frames(*item.uids, frame_numbers=[11])
    assert missing.value.response.status_code == 404


def test_client_rendered_instance_and_frame_are_images_of_the_right_size_and_type(client, sent):
    cr = sent["RG1_UNCI.dcm"]
    png = Image.open(io.BytesIO(client.retrieve_instance_rendered(*cr.uids, media_types=("image/png",))))
    assert png.format == "PNG" and png.size == (int(cr.ds.Columns), int(cr.ds.Rows))
    mr = sent["emri_small_RLE.dcm"]
    jpeg = Image.open(
        io.BytesIO(client.retrieve_instance_frames_rendered(*mr.uids, frame_numbers=[3], media_types=("image/jpeg",)))
    )
    assert jpeg.format == "JPEG" and jpeg.size == (64, 64)


def test_client_retrieve_instance_returns_the_stored_data_set(client, sent):
    item = sent["emri_small_RLE.dcm"]
    ds = client.retrieve_instance(*item.uids)
    assert ds.SOPInstanceUID == item.uids[2]
    assert ds.PixelData == item.ds.PixelData
