"""Study assembly over the real stack: STOW-RS → quiet period → ImagingStudyAvailable on Kafka →
reporting serves the ImagingStudy; QIDO-RS finds the study."""

from __future__ import annotations

import io

import httpx
import pydicom
import pytest

from radcds.adapters.fhir.report import imaging_study_id
from radcds.domain.events import STUDY_AVAILABLE
from radcds_devstack.demo import chest_radiograph, stow, wait_for_event, with_fresh_uids
from radcds_imaging.domain.assembly import announcement_event_id

from .helpers import eventually, fhir

pytestmark = [pytest.mark.integration, pytest.mark.kafka, pytest.mark.postgres]


def test_stored_study_is_announced_after_the_quiet_period_and_served_as_r4_imaging_study(stack):
    data = with_fresh_uids(chest_radiograph())
    ds = pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True)
    stow(stack, [data])
    expected_id = announcement_event_id(ds.StudyInstanceUID, 1)
    event = wait_for_event(stack, STUDY_AVAILABLE.topic, expected_id, timeout_s=60)
    assert event["payload"]["version"] == 1 and event["payload"]["numberOfInstances"] == 1

    study_id = imaging_study_id(ds.StudyInstanceUID)
    study = eventually(
        lambda: (
            (s := fhir(stack, f"ImagingStudy/{study_id}")).get("resourceType") == "ImagingStudy"
            and s.get("endpoint")
            and s
        ),
        timeout_s=60,
        what="ImagingStudy from the study event",
    )
    assert study["identifier"][0]["value"] == f"urn:oid:{ds.StudyInstanceUID}"
    assert study["modality"][0]["code"] == "CR"
    assert study["series"][0]["uid"] == ds.SeriesInstanceUID


def test_qido_rs_finds_the_study_by_patient_id_and_modality(stack):
    data = with_fresh_uids(chest_radiograph())
    ds = pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True)
    stow(stack, [data])
    base = f"http://{stack.host}:{stack.ports.imaging}/dicom-web"
    r = httpx.get(
        f"{base}/studies",
        params={"StudyInstanceUID": ds.StudyInstanceUID, "ModalitiesInStudy": "CR"},
        headers={"Accept": "application/dicom+json"},
        timeout=10,
    )
    assert r.status_code == 200
    (match,) = r.json()
    assert match["0020000D"]["Value"] == [ds.StudyInstanceUID]
    assert match["00201208"]["Value"] == [1]
    none = httpx.get(f"{base}/studies", params={"StudyInstanceUID": "1.2.3.4.5.6.7"}, timeout=10)
    assert none.status_code == 204
