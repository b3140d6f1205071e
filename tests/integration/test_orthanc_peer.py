"""Orthanc (an independent PACS, Debian ``orthanc`` + ``orthanc-dicomweb``) as a peer of the real imaging service.

(a) Orthanc forwards a study to our DIMSE SCP by C-STORE (``POST /modalities/radcds/store``), and our QIDO-RS
    finds it with every instance.
(b) The same study, held by both, compared through both DICOMweb implementations: QIDO-RS study attributes and
    the WADO-RS instance (SOP Instance UID and pixel data).

Images: RG1_UNCI.dcm (chest CR) and 693_UNCI.dcm (head CT) from pydicom-data 1.0.0, given one fresh study
(new Study, Series and SOP Instance UIDs) so the session stack never already holds them.
"""

from __future__ import annotations

import email.parser
import email.policy
import io
from collections.abc import Iterator
from typing import Any

import httpx
import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.uid import generate_uid

from radcds_devstack.stack import LocalStack

from .helpers import eventually
from .orthanc import OrthancServer, orthanc_binary

pytestmark = [pytest.mark.integration]

FILES = ("RG1_UNCI.dcm", "693_UNCI.dcm")
DICOM_JSON = {"Accept": "application/dicom+json"}
WADO_ACCEPT = {"Accept": 'multipart/related; type="application/dicom"'}
STUDY_UID, MODALITIES, N_INSTANCES = "0020000D", "00080061", "00201208"


def _one_study(names: tuple[str, ...]) -> tuple[str, list[bytes]]:
    """The files as one new study: fresh Study UID, one fresh Series UID per file, fresh SOP Instance UIDs.

    The patient is made the same too: Orthanc identifies a study by PatientID and Study Instance UID together.
    """
    study, patient_id = generate_uid(), f"RADCDS-PEER-{generate_uid()[-8:]}"
    out = []
    for name in names:
        path = get_testdata_file(name)
        if path is None:
            pytest.fail(f"{name} not found: install pydicom-data==1.0.0 (it ships the test images offline)")
        ds = pydicom.dcmread(path)
        ds.StudyInstanceUID = study
        ds.PatientID, ds.PatientName = patient_id, "Peer^Orthanc"
        ds.SeriesInstanceUID = generate_uid()
        ds.SOPInstanceUID = generate_uid()
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        buf = io.BytesIO()
        ds.save_as(buf, enforce_file_format=True)
        out.append(buf.getvalue())
    return study, out


def _multipart_dicom(response: httpx.Response) -> list[pydicom.Dataset]:
    """Parts of a multipart/related WADO-RS answer, read by the standard library's MIME parser."""
    assert response.status_code == 200, response.text[:500]
    head = f"Content-Type: {response.headers['content-type']}\r\n\r\n".encode()
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(head + response.content)
    assert message.is_multipart(), response.headers["content-type"]
    return [
        pydicom.dcmread(io.BytesIO(part.get_payload(decode=True)))
        for part in message.iter_parts()
        if part.get_content_type() == "application/dicom"
    ]


def _qido_study(base: str, study: str) -> dict[str, Any] | None:
    r = httpx.get(f"{base}/studies", params={"StudyInstanceUID": study}, headers=DICOM_JSON, timeout=30)
    if r.status_code == 204 or not r.content:
        return None
    assert r.status_code == 200, r.text[:500]
    matches = r.json()
    assert len(matches) <= 1, matches
    return matches[0] if matches else None


def _imaging_log(stack: LocalStack, lines: int = 40) -> str:
    path = stack.run_dir / "logs" / "imaging.log"
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return f"(no log at {path})"


def _wado(stack: LocalStack, url: str) -> httpx.Response:
    try:
        return httpx.get(url, headers=WADO_ACCEPT, timeout=60)
    except httpx.TransportError as exc:
        pytest.fail(f"WADO-RS {url}: {exc!r}\nimaging log:\n{_imaging_log(stack)}")


def _value(attrs: dict[str, Any], tag: str) -> list[Any]:
    return list(attrs.get(tag, {}).get("Value", []))


@pytest.fixture(scope="module")
def orthanc(stack: LocalStack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[OrthancServer]:
    try:
        orthanc_binary()
    except RuntimeError as exc:
        pytest.fail(str(exc))
    server = OrthancServer(
        tmp_path_factory.mktemp("orthanc"), modalities={"radcds": ("RADCDS", stack.host, stack.ports.dimse)}
    )
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def forwarded(stack: LocalStack, orthanc: OrthancServer) -> dict[str, Any]:
    """Upload the study to Orthanc, then have Orthanc C-STORE it to our SCP; returns what both now hold."""
    study_uid, files = _one_study(FILES)
    parents = set()
    instances = []
    for data in files:
        r = httpx.post(f"{orthanc.url}/instances", content=data, timeout=60)
        assert r.status_code == 200, r.text[:500]
        body = r.json()
        assert body["Status"] == "Success", body
        parents.add(body["ParentStudy"])
        ds = pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True)
        instances.append((ds.SeriesInstanceUID, ds.SOPInstanceUID))
    assert len(parents) == 1, parents
    orthanc_study_id = parents.pop()
    r = httpx.post(f"{orthanc.url}/modalities/radcds/store", content=orthanc_study_id, timeout=120)
    assert r.status_code == 200, f"Orthanc C-STORE to radcds: {r.status_code} {r.text[:500]}\n{orthanc.tail_log()}"
    return {"study": study_uid, "instances": instances, "files": files, "orthanc_response": r.json()}


def test_orthanc_forwards_a_study_by_c_store_and_our_qido_finds_every_instance(stack, forwarded):
    ours = f"http://{stack.host}:{stack.ports.imaging}/dicom-web"
    study = eventually(
        lambda: (m := _qido_study(ours, forwarded["study"])) and _value(m, N_INSTANCES) == [len(FILES)] and m,
        timeout_s=30,
        interval_s=0.2,
        what=f"QIDO-RS finding study {forwarded['study']} with {len(FILES)} instances",
    )
    assert _value(study, STUDY_UID) == [forwarded["study"]]
    assert sorted(_value(study, MODALITIES)) == ["CR", "CT"]
    # Orthanc's job summary: both instances went out in one association to our AE.
    assert forwarded["orthanc_response"].get("InstancesCount", len(FILES)) == len(FILES)


def test_orthanc_and_radcds_agree_on_qido_study_attributes_and_wado_instances(stack, orthanc, forwarded):
    ours = f"http://{stack.host}:{stack.ports.imaging}/dicom-web"
    study_uid = forwarded["study"]
    mine = eventually(
        lambda: (m := _qido_study(ours, study_uid)) and _value(m, N_INSTANCES) == [len(FILES)] and m,
        timeout_s=30,
        interval_s=0.2,
        what="our QIDO-RS study",
    )
    theirs = _qido_study(orthanc.dicomweb, study_uid)
    assert theirs is not None, "Orthanc's QIDO-RS does not find the study"
    assert _value(mine, STUDY_UID) == _value(theirs, STUDY_UID) == [study_uid]
    assert sorted(_value(mine, MODALITIES)) == sorted(_value(theirs, MODALITIES)) == ["CR", "CT"]
    assert _value(mine, N_INSTANCES) == _value(theirs, N_INSTANCES) == [len(FILES)]

    for series_uid, sop_uid in forwarded["instances"]:
        path = f"/studies/{study_uid}/series/{series_uid}/instances/{sop_uid}"
        (from_ours,) = _multipart_dicom(_wado(stack, ours + path))
        (from_orthanc,) = _multipart_dicom(_wado(stack, orthanc.dicomweb + path))
        assert from_ours.SOPInstanceUID == from_orthanc.SOPInstanceUID == sop_uid
        assert from_ours.StudyInstanceUID == from_orthanc.StudyInstanceUID == study_uid
        # C-STORE may have re-encoded the transfer syntax; the decoded pixels must be identical.
        assert (from_ours.Rows, from_ours.Columns) == (from_orthanc.Rows, from_orthanc.Columns)
        assert (from_ours.pixel_array == from_orthanc.pixel_array).all()
        assert bytes(from_ours.PixelData) == bytes(from_orthanc.PixelData)
