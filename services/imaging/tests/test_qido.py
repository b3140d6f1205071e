"""QIDO-RS (PS3.18 10.6) over real DICOM files stored the way the STOW-RS handler stores them.

Files: pydicom's CT_small.dcm and MR_small.dcm, pydicom-data's RG1_UNCI.dcm (CR chest) and
693_UNCI.dcm (head CT, CQ500), and the 31 images of pydicom's dicomdirtests/ (3 patient folders,
2 Patient IDs, 6 studies of CR, CT and MR series), listed through its DICOMDIR. Expected results
are computed from the headers read here, not copied from the service.

Runs on SQLite; the ``postgres``-marked variant runs the same tests on a throwaway PostgreSQL.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from pathlib import Path

import pydicom
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset
from pydicom.fileset import FileSet
from sqlalchemy import Engine, insert, text

from radcds_imaging.adapters.db.indexing import record_attributes
from radcds_imaging.adapters.db.qido import QidoQueries, search
from radcds_imaging.adapters.dicom_json import parse_qido_query
from radcds_imaging.adapters.part10 import read_part10
from radcds_imaging.api.qido import qido_router
from radcds_imaging.db.tables import dicom_instances
from radcds_imaging.domain.qido import QidoLevel
from radcds_imaging.handlers import instance_row

ROOT = Path(__file__).resolve().parents[3]
BASE = "http://imaging.test"
SINGLE_FILES = ["CT_small.dcm", "MR_small.dcm", "RG1_UNCI.dcm", "693_UNCI.dcm"]
# Tags used in assertions (PS3.6).
PATIENT_ID, PATIENT_NAME, STUDY_UID, SERIES_UID, SOP_UID = "00100020", "00100010", "0020000D", "0020000E", "00080018"
STUDY_DATE, MODALITIES, ACCESSION, STUDY_DESCRIPTION = "00080020", "00080061", "00080050", "00081030"
N_SERIES, N_INSTANCES, N_SERIES_INSTANCES = "00201206", "00201208", "00201209"
RETRIEVE_URL, SERIES_NUMBER, INSTANCE_NUMBER, MODALITY = "00081190", "00200011", "00200013", "00080060"


def _paths() -> list[Path]:
    fs = FileSet(get_testdata_file("dicomdirtests/DICOMDIR"))
    return [Path(get_testdata_file(n)) for n in SINGLE_FILES] + [Path(i.path) for i in fs]


def store(conn, path: Path) -> Dataset:
    """What the STOW-RS handler does for a new instance: the dicom_instances row, then its attributes."""
    data = path.read_bytes()
    parsed = read_part10(data)
    ref = parsed.instance
    key = f"{ref.study_instance_uid}/{ref.series_instance_uid}/{ref.sop_instance_uid}.dcm"
    digest = hashlib.sha256(data).hexdigest()
    conn.execute(insert(dicom_instances).values(**instance_row(parsed, key, len(data), digest, datetime.now(UTC))))
    ds = pydicom.dcmread(path, stop_before_pixels=True)
    record_attributes(conn, ds, ref.sop_instance_uid)
    return ds


@pytest.fixture(scope="module")
def engine(imaging_db: Engine) -> Engine:
    """The module's migrated database (SQLite, and PostgreSQL under the integration marker; see conftest)."""
    return imaging_db


@pytest.fixture(scope="module")
def datasets(engine) -> list[Dataset]:
    with engine.begin() as conn:
        return [store(conn, p) for p in _paths()]


@pytest.fixture(scope="module")
def client(engine, datasets) -> TestClient:
    app = FastAPI()
    app.include_router(
        qido_router(queries=QidoQueries(engine, public_base_url=BASE), default_limit=100, max_limit=1000)
    )
    return TestClient(app)


def _values(dataset: dict, tag: str) -> list:
    return dataset.get(tag, {}).get("Value", [])


def _studies(datasets: list[Dataset], keep=lambda ds: True) -> set[str]:
    return {ds.StudyInstanceUID for ds in datasets if keep(ds)}


def _study_uids(response) -> set[str]:
    assert response.status_code == 200, response.text
    return {_values(d, STUDY_UID)[0] for d in response.json()}


def test_all_files_were_loaded(datasets):
    assert len(datasets) == 4 + 31
    assert len(_studies(datasets)) == 4 + 6


def test_search_for_studies_by_patient_id_returns_that_patients_studies(client, datasets):
    r = client.get("/dicom-web/studies", params={"PatientID": "98890234"})
    assert r.headers["content-type"].startswith("application/dicom+json")
    assert _study_uids(r) == _studies(datasets, lambda ds: ds.PatientID == "98890234")
    assert len(_study_uids(r)) == 4


def test_tag_as_query_key_matches_like_the_keyword(client):
    by_tag = client.get("/dicom-web/studies", params={PATIENT_ID: "77654033"})
    by_keyword = client.get("/dicom-web/studies", params={"PatientID": "77654033"})
    assert by_tag.json() == by_keyword.json()
    assert len(by_tag.json()) == 2


def test_study_date_single_value_and_ranges(client, datasets):
    def dated(low: str, high: str):
        return _studies(datasets, lambda ds: ds.get("StudyDate", "") and low <= ds.StudyDate <= high)

    assert _study_uids(client.get("/dicom-web/studies", params={"StudyDate": "20030505"})) == dated(
        "20030505", "20030505"
    )
    assert _study_uids(client.get("/dicom-web/studies", params={"StudyDate": "20010101-20030505"})) == dated(
        "20010101", "20030505"
    )
    assert _study_uids(client.get("/dicom-web/studies", params={"StudyDate": "-19991231"})) == dated(
        "00000000", "19991231"
    )
    assert _study_uids(client.get("/dicom-web/studies", params={"StudyDate": "20040101-"})) == dated(
        "20040101", "99999999"
    )
    # The head CT of CQ500 has no Study Date: a range never matches it.
    assert not any(ds.get("StudyDate") for ds in datasets if ds.PatientID == "CQ500-CT-310")


def test_modalities_in_study_matches_studies_with_a_series_of_that_modality(client, datasets):
    cr = client.get("/dicom-web/studies", params={"ModalitiesInStudy": "CR"})
    assert _study_uids(cr) == _studies(datasets, lambda ds: ds.Modality == "CR")
    both = client.get("/dicom-web/studies", params={"ModalitiesInStudy": "CR,MR"})
    assert _study_uids(both) == _studies(datasets, lambda ds: ds.Modality in ("CR", "MR"))
    for study in cr.json():
        assert "CR" in _values(study, MODALITIES)


def test_accession_number_exact_and_wildcard(client, datasets):
    exact = client.get("/dicom-web/studies", params={"AccessionNumber": "134"})
    assert _study_uids(exact) == _studies(datasets, lambda ds: ds.get("AccessionNumber") == "134")
    wild = client.get("/dicom-web/studies", params={"AccessionNumber": "exam*"})
    assert _study_uids(wild) == _studies(datasets, lambda ds: ds.get("AccessionNumber", "").startswith("exam"))
    assert len(_study_uids(wild)) == 1


def test_patient_id_wildcards_star_and_question_mark(client, datasets):
    star = client.get("/dicom-web/studies", params={"PatientID": "9889*"})
    assert _study_uids(star) == _studies(datasets, lambda ds: ds.PatientID.startswith("9889"))
    mark = client.get("/dicom-web/studies", params={"PatientID": "7765403?"})
    assert _study_uids(mark) == _studies(datasets, lambda ds: ds.PatientID == "77654033")
    # Text other than person names matches case-sensitively on SQLite and PostgreSQL alike.
    assert client.get("/dicom-web/studies", params={"PatientID": "cq500*"}).status_code == 204
    assert client.get("/dicom-web/studies", params={"PatientID": "CQ500*"}).status_code == 200


def test_patient_name_matches_ignoring_case(client, datasets):
    r = client.get("/dicom-web/studies", params={"PatientName": "doe^pet*"})
    assert _study_uids(r) == _studies(datasets, lambda ds: str(ds.PatientName) == "Doe^Peter")
    assert _values(r.json()[0], PATIENT_NAME) == [{"Alphabetic": "Doe^Peter"}]


def test_study_instance_uid_list_matching(client, datasets):
    uids = sorted(_studies(datasets))[:3]
    r = client.get("/dicom-web/studies", params={"StudyInstanceUID": ",".join(uids)})
    assert _study_uids(r) == set(uids)
    repeated = client.get(f"/dicom-web/studies?StudyInstanceUID={uids[0]}&StudyInstanceUID={uids[1]}")
    assert _study_uids(repeated) == set(uids[:2])


def test_study_level_counts_and_return_attributes(client, datasets):
    r = client.get("/dicom-web/studies")
    assert r.status_code == 200
    assert len(r.json()) == len(_studies(datasets))
    for study in r.json():
        uid = _values(study, STUDY_UID)[0]
        members = [ds for ds in datasets if ds.StudyInstanceUID == uid]
        assert _values(study, N_INSTANCES) == [len(members)]
        assert _values(study, N_SERIES) == [len({ds.SeriesInstanceUID for ds in members})]
        assert _values(study, MODALITIES) == sorted({ds.Modality for ds in members})
        assert _values(study, RETRIEVE_URL) == [f"{BASE}/dicom-web/studies/{uid}"]
        assert _values(study, PATIENT_ID) == [members[0].PatientID]
        assert study[N_INSTANCES]["vr"] == "IS"
        # PS3.18 Table 6.7.1-2: the standard return attributes are present, empty or not.
        for tag in ("00080020", "00080030", "00080050", "00080056", "00080090", "00100010", "00100030"):
            assert tag in study
        assert list(study) == sorted(study)


def test_limit_and_offset_page_through_all_studies(client, datasets):
    first = client.get("/dicom-web/studies", params={"limit": 4})
    assert len(first.json()) == 4
    assert "additional results" in first.headers["warning"]
    rest = client.get("/dicom-web/studies", params={"limit": 100, "offset": 4})
    assert "warning" not in rest.headers
    assert _study_uids(first) | _study_uids(rest) == _studies(datasets)
    assert not _study_uids(first) & _study_uids(rest)
    assert client.get("/dicom-web/studies", params={"offset": 1000}).status_code == 204


def test_no_match_returns_204_without_body(client):
    r = client.get("/dicom-web/studies", params={"PatientID": "NOBODY"})
    assert r.status_code == 204
    assert r.content == b""


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"PatientWeightX": "1"}, "unknown query parameter 'PatientWeightX'"),
        ({"PatientWeight": "70"}, "PatientWeight cannot be matched"),
        ({"Modality": "CT"}, "Modality cannot be matched in a study-level search"),
        ({"StudyDate": "2003-05-05"}, "not a date or range"),
        ({"StudyDate": "20030506-20030505"}, "starts after it ends"),
        ({"StudyInstanceUID": "1.2.*"}, "is not a UID"),
        ({"limit": "ten"}, "limit='ten' is not an integer"),
        ({"limit": "0"}, "limit must be at least 1"),
        ({"includefield": "NoSuchAttribute"}, "includefield 'NoSuchAttribute'"),
        ({"PatientID": "1", "00100020": "2"}, "PatientID is given twice"),
    ],
)
def test_invalid_query_returns_400_with_a_message(client, params, message):
    r = client.get("/dicom-web/studies", params=params)
    assert r.status_code == 400
    assert message in r.json()["error"]


def test_unsupported_accept_returns_406(client):
    r = client.get("/dicom-web/studies", headers={"Accept": "multipart/related; type=application/dicom+xml"})
    assert r.status_code == 406
    ok = client.get("/dicom-web/studies", headers={"Accept": "application/dicom+json"}, params={"limit": 1})
    assert ok.status_code == 200


def test_includefield_adds_attributes_and_all_adds_every_kept_one(client):
    r = client.get("/dicom-web/studies", params={"PatientID": "77654033", "includefield": "StudyDescription"})
    descriptions = {_values(d, STUDY_DESCRIPTION)[0] for d in r.json()}
    assert descriptions == {"XR C Spine Comp Min 4 Views", "CT, HEAD/BRAIN WO CONTRAST"}
    plain = client.get("/dicom-web/studies", params={"PatientID": "77654033"})
    assert all(STUDY_DESCRIPTION not in d for d in plain.json())
    everything = client.get("/dicom-web/studies", params={"PatientID": "77654033", "includefield": "all"})
    assert all(STUDY_DESCRIPTION in d and "00100040" in d for d in everything.json())


def test_series_of_a_study_are_ordered_by_number_with_instance_counts(client, datasets):
    mra = next(ds for ds in datasets if ds.get("StudyDescription") == "Brain-MRA")
    r = client.get(f"/dicom-web/studies/{mra.StudyInstanceUID}/series")
    members = [ds for ds in datasets if ds.StudyInstanceUID == mra.StudyInstanceUID]
    numbers = [_values(s, SERIES_NUMBER)[0] for s in r.json()]
    assert numbers == sorted({int(ds.SeriesNumber) for ds in members})
    for s in r.json():
        uid = _values(s, SERIES_UID)[0]
        assert _values(s, N_SERIES_INSTANCES) == [sum(ds.SeriesInstanceUID == uid for ds in members)]
        assert _values(s, RETRIEVE_URL) == [f"{BASE}/dicom-web/studies/{mra.StudyInstanceUID}/series/{uid}"]
        assert PATIENT_ID not in s  # study attributes only when the path names no study


def test_search_for_series_by_modality_across_studies(client, datasets):
    r = client.get("/dicom-web/series", params={"Modality": "MR"})
    assert {_values(s, SERIES_UID)[0] for s in r.json()} == {
        ds.SeriesInstanceUID for ds in datasets if ds.Modality == "MR"
    }
    assert all(_values(s, PATIENT_ID) for s in r.json())  # study attributes included
    by_number = client.get("/dicom-web/series", params={"SeriesNumber": "700"})
    assert len(by_number.json()) == 1


def test_instances_of_a_series_are_ordered_by_instance_number(client, datasets):
    angio = next(ds for ds in datasets if ds.get("SeriesNumber") == 700)
    url = f"/dicom-web/studies/{angio.StudyInstanceUID}/series/{angio.SeriesInstanceUID}/instances"
    r = client.get(url)
    members = [ds for ds in datasets if ds.SeriesInstanceUID == angio.SeriesInstanceUID]
    assert [_values(i, INSTANCE_NUMBER)[0] for i in r.json()] == sorted(int(ds.InstanceNumber) for ds in members)
    first = r.json()[0]
    sop = _values(first, SOP_UID)[0]
    assert _values(first, RETRIEVE_URL)[0].endswith(f"/series/{angio.SeriesInstanceUID}/instances/{sop}")
    assert _values(first, "00280010") == [next(ds.Rows for ds in members if ds.SOPInstanceUID == sop)]


def test_search_for_instances_by_sop_instance_uid_and_class(client, datasets):
    ct = next(ds for ds in datasets if ds.SOPClassUID == "1.2.840.10008.5.1.4.1.1.2")
    r = client.get("/dicom-web/instances", params={"SOPInstanceUID": ct.SOPInstanceUID})
    (instance,) = r.json()
    assert _values(instance, STUDY_UID) == [ct.StudyInstanceUID]
    assert _values(instance, MODALITY) == ["CT"]  # series attributes: no series in the path
    by_class = client.get("/dicom-web/instances", params={"SOPClassUID": ct.SOPClassUID, "limit": 1000})
    assert len(by_class.json()) == sum(ds.SOPClassUID == ct.SOPClassUID for ds in datasets)
    in_study = client.get(f"/dicom-web/studies/{ct.StudyInstanceUID}/instances")
    assert len(in_study.json()) == sum(ds.StudyInstanceUID == ct.StudyInstanceUID for ds in datasets)


def test_search_function_returns_dicom_json_without_http(engine, datasets):
    query = parse_qido_query(QidoLevel.STUDY, {"PatientID": "CQ500-CT-310"})
    (study,) = search(engine, query, BASE)
    assert _values(study, ACCESSION) == []
    assert study[ACCESSION] == {"vr": "SH"}
    assert "00080201" not in study  # TimezoneOffsetFromUTC: only when present


def test_instance_stored_before_attributes_existed_is_still_found(engine, client):
    # An instance stored before migration 0003 has a dicom_instances row and no attributes.
    path = Path(get_testdata_file("MR2_UNCI.dcm"))
    ds = pydicom.dcmread(path, stop_before_pixels=True)
    with engine.begin() as conn:
        store(conn, path)
        conn.execute(
            text("DELETE FROM dicom_instance_attributes WHERE sop_instance_uid = :uid"), {"uid": ds.SOPInstanceUID}
        )
    try:
        r = client.get("/dicom-web/studies", params={"PatientID": ds.PatientID})
        (study,) = r.json()
        assert study[PATIENT_NAME] == {"vr": "PN"}
        assert _values(study, N_INSTANCES) == [1]
    finally:
        with engine.begin() as conn:
            conn.execute(text("DELETE FROM dicom_instances WHERE sop_instance_uid = :uid"), {"uid": ds.SOPInstanceUID})


def test_parse_rejects_a_series_path_outside_instance_level():
    with pytest.raises(ValueError, match="only scopes an instance-level search"):
        parse_qido_query("series", {}, study_instance_uid="1.2", series_instance_uid="1.2.3")


def test_parse_caps_limit_with_a_warning_and_ignores_fuzzymatching_with_a_warning():
    q = parse_qido_query("study", [("limit", "5000"), ("fuzzymatching", "true")], max_limit=1000)
    assert q.limit == 1000
    assert len(q.warnings) == 2


def test_record_attributes_twice_replaces_the_values(engine, datasets):
    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"), stop_before_pixels=True)
    ds.StudyDescription = "RE-INDEXED"
    with engine.begin() as conn:
        record_attributes(conn, ds, ds.SOPInstanceUID)
    query = parse_qido_query("study", {"StudyDescription": "RE-INDEXED"})
    try:
        (study,) = search(engine, query, BASE)
        assert _values(study, STUDY_UID) == [ds.StudyInstanceUID]
    finally:
        original = pydicom.dcmread(get_testdata_file("CT_small.dcm"), stop_before_pixels=True)
        with engine.begin() as conn:
            record_attributes(conn, original, original.SOPInstanceUID)
