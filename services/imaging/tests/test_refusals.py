"""Instances whose identity is missing or contradicts its File Meta are refused, by STOW-RS and C-STORE.

SOP Common (PS3.3 C.12.1) makes SOP Class UID (0008,0016) and SOP Instance UID (0008,0018) Type 1 in
the data set; PS3.10 7.1 makes the File Meta's Media Storage SOP Class/Instance UID copies of them.
STOW-RS answers 409 with a Failed SOP Sequence carrying a Failure Reason (PS3.18 10.5.3, Table
10.5.3-2); C-STORE answers a failure status (PS3.4 B.2.3). Nothing is stored and nothing announced.

Fixture: pydicom's ``CT_small.dcm`` (a 128x128 CT slice), altered in memory. The C-STORE SCU is real
pynetdicom sending the file as it is (``send_c_store`` of a path takes the UIDs from the File Meta).
"""

from __future__ import annotations

import io
from pathlib import Path

import pydicom
import pynetdicom._config
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from pydicom.data import get_testdata_file
from pydicom.uid import generate_uid
from pynetdicom import AE
from pynetdicom.sop_class import CTImageStorage  # type: ignore[attr-defined]
from sqlalchemy import func, select

from radcds.adapters.db.engine import make_engine, migrate, sqlite_url
from radcds.adapters.db.outbox import OutboxRelay, pending_count
from radcds.adapters.dicomweb.multipart import build_related
from radcds_devstack.testing import RecordingPublisher
from radcds_imaging.adapters.part10 import FAILURE_CANNOT_UNDERSTAND, FAILURE_DATASET_DOES_NOT_MATCH_SOP_CLASS
from radcds_imaging.adapters.storage import FilesystemInstanceStore
from radcds_imaging.api.dicomweb import dicomweb_router
from radcds_imaging.api.dimse import DimseConfig, DimseServer, store_port
from radcds_imaging.db.tables import dicom_instances
from radcds_imaging.handlers import ImagingService

CT_SMALL = Path(get_testdata_file("CT_small.dcm"))
MR_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.4"
BASE = "http://imaging.test"


def _without_sop_instance_uid() -> bytes:
    ds = pydicom.dcmread(CT_SMALL)
    del ds.SOPInstanceUID
    return _encode(ds)


def _class_disagreeing_with_file_meta() -> bytes:
    ds = pydicom.dcmread(CT_SMALL)
    ds.file_meta.MediaStorageSOPClassUID = MR_IMAGE_STORAGE
    return _encode(ds)


def _instance_disagreeing_with_file_meta() -> bytes:
    ds = pydicom.dcmread(CT_SMALL)
    ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    return _encode(ds)


def _encode(ds: pydicom.Dataset) -> bytes:
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=False)
    return out.getvalue()


BAD = [
    pytest.param(_without_sop_instance_uid, FAILURE_DATASET_DOES_NOT_MATCH_SOP_CLASS, id="no-sop-instance-uid"),
    pytest.param(_class_disagreeing_with_file_meta, FAILURE_DATASET_DOES_NOT_MATCH_SOP_CLASS, id="class-vs-meta"),
    pytest.param(_instance_disagreeing_with_file_meta, FAILURE_CANNOT_UNDERSTAND, id="instance-vs-meta"),
]


class Imaging:
    def __init__(self, root: Path) -> None:
        self.engine = make_engine(sqlite_url(root / "imaging.db"))
        migrate(self.engine, chain="radcds_imaging.db")
        self.store_root = root / "store"
        self.publisher = RecordingPublisher()
        self.service = ImagingService(
            engine=self.engine,
            store=FilesystemInstanceStore(self.store_root),
            outbox=OutboxRelay(self.engine, self.publisher, name="imaging-outbox"),
            public_base_url=BASE,
        )

    def assert_nothing_kept(self) -> None:
        with self.engine.connect() as conn:
            assert conn.execute(select(func.count()).select_from(dicom_instances)).scalar_one() == 0
        assert not list(self.store_root.rglob("*.dcm"))
        assert pending_count(self.engine) == 0
        self.service.outbox.drain()
        assert not self.publisher.events


@pytest.mark.parametrize(("make", "reason"), BAD)
def test_stow_of_instance_with_missing_or_contradicting_uids_answers_409_with_failure_reason(tmp_path, make, reason):
    imaging = Imaging(tmp_path)
    app = FastAPI()
    app.include_router(
        dicomweb_router(service=imaging.service, max_request_bytes=4 * 1024 * 1024, public_base_url=BASE)
    )
    body, boundary = build_related([("application/dicom", make())])
    response = TestClient(app).post(
        "/dicom-web/studies",
        content=body,
        headers={"Content-Type": f'multipart/related; type="application/dicom"; boundary={boundary}'},
    )
    assert response.status_code == 409
    (failed,) = response.json()["00081198"]["Value"]
    assert failed["00081197"] == {"vr": "US", "Value": [reason]}
    assert failed["00081155"]["Value"]  # the instance is named (from the File Meta when the data set lacks it)
    assert "00081199" not in response.json()
    imaging.assert_nothing_kept()


def test_stow_of_good_and_uidless_instances_stores_only_the_good_one_with_202(tmp_path):
    imaging = Imaging(tmp_path)
    outcome = imaging.service.store_instances(parts=[_without_sop_instance_uid(), CT_SMALL.read_bytes()])
    assert [f.reason for f in outcome.failed] == [FAILURE_DATASET_DOES_NOT_MATCH_SOP_CLASS]
    assert "SOPInstanceUID" in outcome.failed[0].message
    assert [s.sop_instance_uid for s in outcome.stored] == [pydicom.dcmread(CT_SMALL).SOPInstanceUID]


@pytest.mark.parametrize(("make", "reason"), BAD)
def test_c_store_of_instance_with_missing_or_contradicting_uids_answers_failure_status(
    tmp_path, monkeypatch, make, reason
):
    # pynetdicom then sends the file's data set as it is, with the command's UIDs from its File Meta
    # (pynetdicom._config.STORE_SEND_CHUNKED_DATASET), as a modality forwarding files would.
    monkeypatch.setattr(pynetdicom._config, "STORE_SEND_CHUNKED_DATASET", True)
    imaging = Imaging(tmp_path)
    config = DimseConfig(
        ae_title="RADCDS",
        host="127.0.0.1",
        port=0,
        allowed_calling_aets=frozenset({"RADCDS_TEST"}),
        max_associations=2,
        network_timeout_s=10.0,
        acse_timeout_s=10.0,
        dimse_timeout_s=10.0,
        stop_grace_s=2.0,
    )
    source = tmp_path / "bad.dcm"
    source.write_bytes(make())
    with DimseServer(config, store=store_port(imaging.service)) as server:
        ae = AE(ae_title="RADCDS_TEST")
        ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 10.0
        ae.add_requested_context(CTImageStorage)
        ae.add_requested_context(MR_IMAGE_STORAGE)
        assoc = ae.associate("127.0.0.1", server.address[1], ae_title="RADCDS")
        assert assoc.is_established
        status = assoc.send_c_store(source)
        assoc.release()
    assert status.Status == reason
    imaging.assert_nothing_kept()
