"""STOW-RS store use case and routes, with a fake publisher port and SQLite."""

from __future__ import annotations

import io
from pathlib import Path

import pydicom
import pydicom.uid
import pytest
from fastapi.testclient import TestClient
from pydicom.data import get_testdata_file

from radcds.adapters.db.engine import make_engine, migrate, sqlite_url
from radcds.adapters.db.outbox import OutboxRelay, pending_count
from radcds.adapters.dicomweb.multipart import build_related, parse_content_type, split_parts
from radcds.domain.events import INSTANCE_STORED
from radcds_devstack.testing import RecordingPublisher
from radcds_imaging.adapters.part10 import (
    FAILURE_CANNOT_UNDERSTAND,
    FAILURE_DATASET_DOES_NOT_MATCH_SOP_CLASS,
    FAILURE_OUT_OF_RESOURCES,
)
from radcds_imaging.adapters.storage import FilesystemInstanceStore
from radcds_imaging.app import create_app
from radcds_imaging.handlers import ImagingService
from radcds_imaging.settings import ImagingSettings

# pydicom's CT_small.dcm: a 128x128 CT slice (pydicom test files).
CT_SMALL = Path(get_testdata_file("CT_small.dcm"))


@pytest.fixture
def service(tmp_path):
    engine = make_engine(sqlite_url(tmp_path / "imaging.db"))
    migrate(engine, chain="radcds_imaging.db")
    publisher = RecordingPublisher()
    store = FilesystemInstanceStore(tmp_path / "store")
    return (
        ImagingService(
            engine=engine,
            store=store,
            outbox=OutboxRelay(engine, publisher, name="imaging-outbox"),
            public_base_url="http://imaging.test",
        ),
        publisher,
        tmp_path / "store",
    )


def test_store_valid_instance_publishes_one_instance_stored_event(service):
    svc, publisher, _ = service
    outcome = svc.store_instances(parts=[CT_SMALL.read_bytes()])
    assert len(outcome.stored) == 1 and not outcome.failed
    ((kind, payload, _, subject),) = publisher.events
    ds = pydicom.dcmread(CT_SMALL)
    assert kind is INSTANCE_STORED
    assert subject == ds.StudyInstanceUID
    assert payload["instance"]["sopInstanceUid"] == ds.SOPInstanceUID
    assert payload["retrieveUrl"].startswith("http://imaging.test/dicom-web/studies/")


def test_same_sop_instance_twice_is_stored_once_and_announced_once(service):
    svc, publisher, store_root = service
    svc.store_instances(parts=[CT_SMALL.read_bytes()])
    again = svc.store_instances(parts=[CT_SMALL.read_bytes()])
    assert again.stored[0].duplicate
    assert len(publisher.events) == 1
    assert len(list(store_root.rglob("*.dcm"))) == 1


def test_non_dicom_part_fails_with_c000_and_nothing_is_stored(service):
    svc, publisher, store_root = service
    outcome = svc.store_instances(parts=[b"this is not DICOM"])
    assert [f.reason for f in outcome.failed] == [FAILURE_CANNOT_UNDERSTAND]
    assert not publisher.events and not list(store_root.rglob("*.dcm"))


def test_instance_without_study_uid_fails_with_a900(service, tmp_path):
    ds = pydicom.dcmread(CT_SMALL)
    del ds.StudyInstanceUID
    path = tmp_path / "nostudy.dcm"
    ds.save_as(path)
    outcome = service[0].store_instances(parts=[path.read_bytes()])
    assert outcome.failed[0].reason == FAILURE_DATASET_DOES_NOT_MATCH_SOP_CLASS
    assert "StudyInstanceUID" in outcome.failed[0].message


def test_instance_stored_while_the_broker_is_down_is_kept_and_announced_when_it_is_back(tmp_path):
    engine = make_engine(sqlite_url(tmp_path / "db.sqlite"))
    migrate(engine, chain="radcds_imaging.db")
    store = FilesystemInstanceStore(tmp_path / "store")
    publisher = RecordingPublisher(fail=True)
    svc = ImagingService(
        engine=engine,
        store=store,
        outbox=OutboxRelay(engine, publisher, name="imaging-outbox"),
        public_base_url="http://x",
    )
    outcome = svc.store_instances(parts=[CT_SMALL.read_bytes()])
    assert len(outcome.stored) == 1 and not outcome.failed
    ds = pydicom.dcmread(CT_SMALL)
    assert svc.retrieve_instance(study=ds.StudyInstanceUID, series=ds.SeriesInstanceUID, instance=ds.SOPInstanceUID)
    assert not publisher.events and pending_count(engine) == 1
    publisher.fail = False
    svc.outbox.drain()
    assert [e[1]["instance"]["sopInstanceUid"] for e in publisher.events] == [ds.SOPInstanceUID]
    assert pending_count(engine) == 0


@pytest.fixture
def client(tmp_path):
    settings = ImagingSettings(
        storage_dir=tmp_path / "store",
        public_base_url="http://testserver",
        max_request_bytes=2 * 1024 * 1024,
        dimse_enabled=False,  # the DIMSE door has its own tests; keep port 11112 free
    )
    app = create_app(settings, publisher=RecordingPublisher())
    with TestClient(app) as c:
        yield c


def _stow(client, parts, ctype='multipart/related; type="application/dicom"; boundary={b}', url="/dicom-web/studies"):
    body, boundary = build_related(parts)
    return client.post(url, content=body, headers={"Content-Type": ctype.format(b=boundary)})


def test_stow_all_stored_returns_200_with_referenced_sop_sequence(client):
    r = _stow(client, [("application/dicom", CT_SMALL.read_bytes())])
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("application/dicom+json")
    assert r.json()["00081199"]["Value"][0]["00081155"]["Value"] == [pydicom.dcmread(CT_SMALL).SOPInstanceUID]


def test_stow_some_failed_returns_202_with_failed_sop_sequence(client):
    r = _stow(client, [("application/dicom", CT_SMALL.read_bytes()), ("application/dicom", b"junk")])
    assert r.status_code == 202
    assert r.json()["00081198"]["Value"][0]["00081197"]["Value"] == [FAILURE_CANNOT_UNDERSTAND]


def test_stow_nothing_stored_returns_409(client):
    assert _stow(client, [("application/dicom", b"junk")]).status_code == 409


def test_stow_with_wrong_content_type_returns_415(client):
    r = client.post("/dicom-web/studies", content=b"x", headers={"Content-Type": "application/json"})
    assert r.status_code == 415


def test_stow_with_non_dicom_part_type_returns_415(client):
    assert _stow(client, [("text/plain", b"hello")]).status_code == 415


def test_stow_larger_than_limit_returns_413(client):
    assert _stow(client, [("application/dicom", b"\0" * (3 * 1024 * 1024))]).status_code == 413


def test_stow_to_study_url_with_other_study_fails_the_part(client):
    r = _stow(client, [("application/dicom", CT_SMALL.read_bytes())], url="/dicom-web/studies/1.2.3")
    assert r.status_code == 409


def test_wado_rs_returns_the_stored_bytes_as_multipart(client):
    _stow(client, [("application/dicom", CT_SMALL.read_bytes())])
    ds = pydicom.dcmread(CT_SMALL)
    r = client.get(
        f"/dicom-web/studies/{ds.StudyInstanceUID}/series/{ds.SeriesInstanceUID}/instances/{ds.SOPInstanceUID}"
    )
    assert r.status_code == 200
    _, params = parse_content_type(r.headers["content-type"])
    assert split_parts(r.content, params["boundary"])[0].content == CT_SMALL.read_bytes()


def test_health_and_metrics_endpoints_answer(client):
    assert client.get("/healthz").json() == {"status": "ok"}
    assert client.get("/metrics").status_code == 200


def test_complete_study_is_announced_once_with_its_imaging_study_and_late_instance_as_update(tmp_path):
    from datetime import UTC, datetime, timedelta

    from radcds.adapters.kafka.codec import validate_payload
    from radcds.domain.events import STUDY_AVAILABLE
    from radcds_imaging.adapters.announcer import StudyAnnouncer
    from radcds_imaging.adapters.db.assembly import StudyAssembler

    engine = make_engine(sqlite_url(tmp_path / "imaging.db"))
    migrate(engine, chain="radcds_imaging.db")
    publisher = RecordingPublisher()
    service = ImagingService(
        engine=engine,
        store=FilesystemInstanceStore(tmp_path / "store"),
        outbox=OutboxRelay(engine, publisher, name="imaging-outbox"),
        public_base_url="http://imaging.test",
    )
    clock = [datetime.now(UTC)]
    assembler = StudyAssembler(
        engine=engine,
        quiet_period=timedelta(seconds=30),
        wado_base_url="http://imaging.test/dicom-web",
        clock=lambda: clock[0],
    )
    announcer = StudyAnnouncer(assembler, publisher, interval_s=1)
    service.store_instances(parts=[CT_SMALL.read_bytes()])
    assert announcer.run_once() == 0  # quiet period not over
    clock[0] += timedelta(seconds=31)
    assert announcer.run_once() == 1
    assert announcer.run_once() == 0  # announced once
    studies = [e for e in publisher.events if e[0] is STUDY_AVAILABLE]
    ((kind, payload, _, subject),) = studies
    validate_payload(kind, payload)
    ds = pydicom.dcmread(CT_SMALL)
    assert subject == ds.StudyInstanceUID and payload["version"] == 1 and not payload["isUpdate"]
    study = payload["imagingStudy"]
    assert study["identifier"][0]["value"] == f"urn:oid:{ds.StudyInstanceUID}"
    assert study["numberOfInstances"] == 1 and study["modality"][0]["code"] == "CT"
    # a late instance of the same study (same file, new SOP Instance UID) → an update, not a second study
    ds.SOPInstanceUID = pydicom.uid.generate_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    late = tmp_path / "late.dcm"
    ds.save_as(late)
    service.store_instances(parts=[late.read_bytes()])
    clock[0] += timedelta(seconds=31)
    assert announcer.run_once() == 1
    update = [e for e in publisher.events if e[0] is STUDY_AVAILABLE][-1][1]
    assert update["version"] == 2 and update["isUpdate"] and update["numberOfInstances"] == 2


def test_store_when_disk_is_nearly_full_fails_with_a700_and_stores_nothing(tmp_path):
    from radcds_imaging.adapters.diskguard import DiskSpaceGuard

    engine = make_engine(sqlite_url(tmp_path / "imaging.db"))
    migrate(engine, chain="radcds_imaging.db")
    publisher = RecordingPublisher()
    full = DiskSpaceGuard(tmp_path, min_free_bytes=0, min_free_ratio=1.0)  # never satisfiable
    service = ImagingService(
        engine=engine,
        store=FilesystemInstanceStore(tmp_path / "store"),
        outbox=OutboxRelay(engine, publisher, name="imaging-outbox"),
        public_base_url="http://x",
        guard=full,
    )
    outcome = service.store_instances(parts=[CT_SMALL.read_bytes()])
    assert [f.reason for f in outcome.failed] == [FAILURE_OUT_OF_RESOURCES]
    assert "nearly full" in outcome.failed[0].message
    assert not publisher.events and not list((tmp_path / "store").rglob("*.dcm"))


@pytest.mark.parametrize("name", ["CT_small.dcm", "RG1_UNCI.dcm", "RG1_J2KR.dcm", "emri_small_RLE.dcm"])
@pytest.mark.parametrize("fraction", [0.5, 0.99])
def test_truncated_file_fails_with_c000_and_nothing_is_stored(service, name, fraction):
    svc, publisher, store_root = service
    data = Path(get_testdata_file(name)).read_bytes()
    outcome = svc.store_instances(parts=[data[: int(len(data) * fraction)]])
    assert [f.reason for f in outcome.failed] == [FAILURE_CANNOT_UNDERSTAND]
    assert "truncated" in outcome.failed[0].message
    assert not publisher.events and not list(store_root.rglob("*.dcm"))


@pytest.mark.parametrize("name", ["CT_small.dcm", "RG1_UNCI.dcm", "RG1_J2KR.dcm", "emri_small_RLE.dcm", "693_J2KR.dcm"])
def test_complete_files_in_every_syntax_are_stored(service, name):
    outcome = service[0].store_instances(parts=[Path(get_testdata_file(name)).read_bytes()])
    assert len(outcome.stored) == 1 and not outcome.failed


def test_app_serves_metadata_and_a_rendered_png_for_a_stored_instance(client):
    _stow(client, [("application/dicom", CT_SMALL.read_bytes())])
    ds = pydicom.dcmread(CT_SMALL)
    base = f"/dicom-web/studies/{ds.StudyInstanceUID}/series/{ds.SeriesInstanceUID}"
    metadata = client.get(f"{base}/metadata")
    assert metadata.status_code == 200 and metadata.json()[0]["00080018"]["Value"] == [ds.SOPInstanceUID]
    png = client.get(f"{base}/instances/{ds.SOPInstanceUID}/rendered", headers={"Accept": "image/png"})
    assert png.status_code == 200 and png.content.startswith(b"\x89PNG")


def test_app_refuses_stow_when_the_disk_guard_says_full(tmp_path):
    settings = ImagingSettings(
        storage_dir=tmp_path / "store", public_base_url="http://testserver", min_free_ratio=1.0, dimse_enabled=False
    )
    with TestClient(create_app(settings, publisher=RecordingPublisher())) as c:
        r = _stow(c, [("application/dicom", CT_SMALL.read_bytes())])
    assert r.status_code == 409
    assert r.json()["00081198"]["Value"][0]["00081197"]["Value"] == [FAILURE_OUT_OF_RESOURCES]


def test_stow_of_a_transfer_syntax_outside_the_accepted_list_fails_with_c122(client, tmp_path):
    import io

    ds = pydicom.dcmread(get_testdata_file("emri_small_jpeg_2k_lossless.dcm"))
    ds.file_meta.TransferSyntaxUID = "1.2.840.10008.1.2.4.201"  # HTJ2K lossless: not in the accepted list
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    r = _stow(client, [("application/dicom", out.getvalue())])
    assert r.status_code == 409
    assert r.json()["00081198"]["Value"][0]["00081197"]["Value"] == [0xC122]


def _fresh_copies(n: int, tmp_path: Path) -> list[bytes]:
    """``n`` copies of CT_small.dcm, each with its own SOP Instance UID (same study and series)."""
    out = []
    for i in range(n):
        ds = pydicom.dcmread(CT_SMALL)
        ds.SOPInstanceUID = pydicom.uid.generate_uid()
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        path = tmp_path / f"copy{i}.dcm"
        ds.save_as(path)
        out.append(path.read_bytes())
    return out


def _batch_service(tmp_path: Path, publisher: RecordingPublisher) -> ImagingService:
    engine = make_engine(sqlite_url(tmp_path / "batch.db"))
    migrate(engine, chain="radcds_imaging.db")
    store = FilesystemInstanceStore(tmp_path / "store")
    return ImagingService(
        engine=engine,
        store=store,
        outbox=OutboxRelay(engine, publisher, name="imaging-outbox"),
        public_base_url="http://x",
    )


def test_request_of_several_parts_is_stored_in_one_batch_with_results_in_part_order(tmp_path):
    publisher = RecordingPublisher()
    svc = _batch_service(tmp_path, publisher)
    parts = _fresh_copies(3, tmp_path)
    outcome = svc.store_instances(parts=[parts[0], b"not DICOM", parts[1], parts[2]])
    uids = [pydicom.dcmread(io.BytesIO(p)).SOPInstanceUID for p in parts]
    assert [s.sop_instance_uid for s in outcome.stored] == uids
    assert [f.reason for f in outcome.failed] == [FAILURE_CANNOT_UNDERSTAND]
    assert publisher.batches == 1 and len(publisher.events) == 3
    assert len(list((tmp_path / "store").rglob("*.dcm"))) == 3


def test_batch_with_an_already_stored_and_a_repeated_instance_reports_both_as_duplicates(tmp_path):
    publisher = RecordingPublisher()
    svc = _batch_service(tmp_path, publisher)
    first, second = _fresh_copies(2, tmp_path)
    svc.store_instances(parts=[first])
    outcome = svc.store_instances(parts=[first, second, second])
    assert [s.duplicate for s in outcome.stored] == [True, False, True]
    assert len(publisher.events) == 2
    assert len(list((tmp_path / "store").rglob("*.dcm"))) == 2


def test_batch_whose_events_are_only_partly_acknowledged_keeps_the_rest_pending_in_order(tmp_path):
    publisher = RecordingPublisher(ack_limit=1)
    svc = _batch_service(tmp_path, publisher)
    parts = _fresh_copies(3, tmp_path)
    outcome = svc.store_instances(parts=parts)
    assert len(outcome.stored) == 3 and not outcome.failed
    assert len(list((tmp_path / "store").rglob("*.dcm"))) == 3
    assert len(publisher.events) == 1 and pending_count(svc.outbox._engine) == 2
    publisher.ack_limit = None
    svc.outbox.drain()
    published = [payload["instance"]["sopInstanceUid"] for _, payload, _, _ in publisher.events]
    assert published == [s.sop_instance_uid for s in outcome.stored]  # part order, nothing twice


def test_batch_with_the_broker_down_stores_every_part_and_keeps_their_events_pending(tmp_path):
    publisher = RecordingPublisher(fail=True)
    svc = _batch_service(tmp_path, publisher)
    outcome = svc.store_instances(parts=_fresh_copies(3, tmp_path))
    assert len(outcome.stored) == 3 and not outcome.failed
    assert len(list((tmp_path / "store").rglob("*.dcm"))) == 3
    assert pending_count(svc.outbox._engine) == 3 and not publisher.events
