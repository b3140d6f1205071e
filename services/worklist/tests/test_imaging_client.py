"""The worklist's client of imaging's DICOMweb, against imaging's real app in process (SQLite, a filesystem store,
real DICOM files from pydicom's test data stored over STOW-RS): instance metadata as DICOM JSON, the acquisition
attributes monitoring watches, and a rendered PNG frame."""

from __future__ import annotations

from io import BytesIO
from pathlib import Path

import httpx
import pydicom
import pytest
from fastapi.testclient import TestClient
from PIL import Image
from pydicom.data import get_testdata_file

from radcds.adapters.dicomweb.multipart import build_related
from radcds_devstack.testing import RecordingPublisher
from radcds_imaging.app import create_app
from radcds_imaging.settings import ImagingSettings
from radcds_worklist.adapters.imaging import ImagingClient, ImagingUnavailable, acquisition_of

ROOT = "http://testserver/dicom-web"


def _file(name: str) -> Path:
    found = get_testdata_file(name)
    assert found is not None, name
    return Path(found)


def _uids(name: str) -> tuple[str, str, str]:
    ds = pydicom.dcmread(_file(name), stop_before_pixels=True)
    return str(ds.StudyInstanceUID), str(ds.SeriesInstanceUID), str(ds.SOPInstanceUID)


@pytest.fixture(scope="module")
def imaging(tmp_path_factory):
    """imaging's app holding CT_small.dcm (GE CT, 120 kVp, 5 mm) and RG1_UNCI.dcm (Philips CR, 150 kVp)."""
    root = tmp_path_factory.mktemp("imaging")
    settings = ImagingSettings(
        storage_dir=root / "store",
        database_url=f"sqlite:///{root / 'imaging.db'}",
        public_base_url="http://testserver",
        dimse_enabled=False,
    )
    with TestClient(create_app(settings, publisher=RecordingPublisher())) as client:
        body, boundary = build_related(
            [("application/dicom", _file(n).read_bytes()) for n in ("CT_small.dcm", "RG1_UNCI.dcm")]
        )
        stored = client.post(
            "/dicom-web/studies",
            content=body,
            headers={"Content-Type": f'multipart/related; type="application/dicom"; boundary={boundary}'},
        )
        assert stored.status_code == 200, stored.text
        yield client


def test_instance_metadata_of_a_stored_ct_is_its_dicom_json_object(imaging):
    study, series, sop = _uids("CT_small.dcm")
    dataset = ImagingClient(imaging, dicomweb_url=ROOT).instance_metadata(study, series, sop)
    assert dataset["00080018"] == {"vr": "UI", "Value": [sop]}


def test_acquisition_of_a_ct_reads_manufacturer_model_kvp_slice_thickness_and_age(imaging):
    acquisition = ImagingClient(imaging, dicomweb_url=ROOT).acquisition(*_uids("CT_small.dcm"))
    assert acquisition.manufacturer == "GE MEDICAL SYSTEMS"
    assert acquisition.manufacturer_model == "RHAPSODE"
    assert acquisition.kvp == 120.0
    assert acquisition.slice_thickness_mm == 5.0
    assert acquisition.patient_age == "000Y"


def test_acquisition_of_a_cr_without_slice_thickness_or_age_keeps_birth_and_study_dates(imaging):
    acquisition = ImagingClient(imaging, dicomweb_url=ROOT).acquisition(*_uids("RG1_UNCI.dcm"))
    assert (acquisition.manufacturer, acquisition.kvp) == ("Philips Medical Systems", 150.0)
    assert acquisition.slice_thickness_mm is None and acquisition.patient_age == ""
    assert (acquisition.patient_birth_date, acquisition.study_date) == ("19400305", "20040826")


def test_rendered_frame_with_a_viewport_is_a_png_that_fits_it(imaging):
    image = ImagingClient(imaging, dicomweb_url=ROOT).rendered(*_uids("RG1_UNCI.dcm"), viewport=(256, 256))
    assert image.media_type == "image/png"
    with Image.open(BytesIO(image.content)) as png:
        assert png.format == "PNG" and max(png.size) <= 256


def test_rendered_frame_passes_the_window_and_viewport_through_to_imaging(imaging):
    seen: list[httpx.Request] = []
    imaging.event_hooks["request"] = [seen.append]
    try:
        image = ImagingClient(imaging, dicomweb_url=ROOT + "/").rendered(
            *_uids("CT_small.dcm"), frame=1, window="40,80,linear", viewport=(64, 64)
        )
    finally:
        imaging.event_hooks["request"] = []
    (request,) = seen
    assert request.url.path.endswith("/instances/" + _uids("CT_small.dcm")[2] + "/frames/1/rendered")
    assert request.url.params["window"] == "40,80,linear" and request.url.params["viewport"] == "64,64"
    assert request.headers["accept"] == "image/png"
    assert image.content.startswith(b"\x89PNG")


def test_metadata_of_an_instance_imaging_does_not_hold_raises_lookup_error(imaging):
    study, series, _ = _uids("CT_small.dcm")
    with pytest.raises(LookupError):
        ImagingClient(imaging, dicomweb_url=ROOT).instance_metadata(study, series, "1.2.3.4.5")


def test_imaging_unreachable_raises_imaging_unavailable():
    with httpx.Client(timeout=0.5) as http:
        client = ImagingClient(http, dicomweb_url="http://127.0.0.1:9/dicom-web")
        with pytest.raises(ImagingUnavailable, match="unreachable"):
            client.instance_metadata("1.2", "1.2.3", "1.2.3.4")


def test_numeric_strings_in_dicom_json_are_read_and_garbage_left_empty():
    acquisition = acquisition_of(
        {"00180060": {"vr": "DS", "Value": ["120.0"]}, "00180050": {"vr": "DS", "Value": ["x"]}}
    )
    assert acquisition.kvp == 120.0 and acquisition.slice_thickness_mm is None and acquisition.manufacturer == ""


def test_monitoring_profiles_a_findings_event_from_imagings_real_metadata(imaging, tmp_path):
    from sqlalchemy import create_engine, select

    from radcds.adapters.db.engine import migrate
    from radcds.adapters.kafka.codec import DecodedEvent
    from radcds.domain import codes
    from radcds.domain.events import FINDINGS_PRODUCED, ImagingFindingsProduced
    from radcds.domain.findings import ImageAnalysis, InstanceReference, Measurement, ModelIdentity, StudyContext
    from radcds.runtime.metrics import ServiceMetrics
    from radcds_worklist.db.tables import input_profiles
    from radcds_worklist.use_cases.monitoring import MonitoringDesk

    engine = create_engine(f"sqlite:///{tmp_path / 'w.db'}")
    migrate(engine, chain="radcds_worklist.db")
    study, series, sop = _uids("CT_small.dcm")
    analysis = ImageAnalysis(
        InstanceReference(study, series, sop, "1.2.840.10008.5.1.4.1.1.2"),
        StudyContext(patient_id="P", modality="CT"),
        ModelIdentity("head_ct_hyperdensity", "1"),
        measurements=(Measurement(codes.HYPERDENSE_REGION_COUNT, 0.0, "{count}"),),
    )
    payload = ImagingFindingsProduced(analysis).to_payload()
    desk = MonitoringDesk(
        engine=engine, acquisitions=ImagingClient(imaging, dicomweb_url=ROOT), metrics=ServiceMetrics(), declared={}
    )
    event = DecodedEvent("e1", FINDINGS_PRODUCED.type, "/radcds/inference", study, None, FINDINGS_PRODUCED, payload)
    desk.handle(event)
    with engine.connect() as conn:
        row = conn.execute(select(input_profiles)).one()
    assert (row.manufacturer, row.manufacturer_model, row.kvp, row.slice_thickness_mm) == (
        "GE MEDICAL SYSTEMS",
        "RHAPSODE",
        120.0,
        5.0,
    )
    assert row.patient_age_years == 0.0  # Patient's Age 000Y
