"""FHIR R4 ImagingStudy built from real DICOM headers follows the R4 mapping field by field.

Files (all shipped by registry packages, see /work/shared/notes/data.md):
- pydicom-data: RG1_UNCI.dcm (CR chest PA), 693_UNCI.dcm (head CT slice, CQ500), eCT_Supplemental.dcm
  (enhanced CT, 2 frames), MR2_UNCI.dcm (MR shoulder);
- pydicom: CT_small.dcm (CT), dicomdirtests/ (3 patient folders with CR, CT and MR series, read via DICOMDIR).
Expected values are read from each file in the test, not copied from the mapping's output.
"""

from __future__ import annotations

import copy
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset
from pydicom.fileset import FileSet

from radcds.adapters.fhir.report import imaging_study_id
from radcds.adapters.fhir.resources import validate_resource
from radcds.domain import codes
from radcds_imaging.adapters.imaging_study import (
    ENDPOINT_CONNECTION_TYPE,
    fhir_datetime,
    imaging_study_from_instances,
    instance_attributes,
)

WADO = "http://imaging.test/dicom-web"
PATIENT = "Patient/p1"
FILES = ["RG1_UNCI.dcm", "693_UNCI.dcm", "CT_small.dcm", "eCT_Supplemental.dcm", "MR2_UNCI.dcm"]
#: Body Part Examined of the files that have one, with the SNOMED CT code of PS3.16 Annex L.
EXPECTED_BODY_SITE = {"CHEST": "51185008", "CSPINE": "122494005", "HEAD": "69536005"}


def _read(name: str) -> Dataset:
    return pydicom.dcmread(get_testdata_file(name), stop_before_pixels=True)


def _expected_datetime(date: str, time: str, offset: str) -> datetime:
    whole, _, fraction = time.partition(".")
    moment = datetime.strptime(date + whole.ljust(6, "0"), "%Y%m%d%H%M%S")
    if fraction:
        moment = moment.replace(microsecond=int(fraction.ljust(6, "0")[:6]))
    if offset:
        sign = -1 if offset.startswith("-") else 1
        tz = timezone(sign * timedelta(hours=int(offset[1:3]), minutes=int(offset[3:5])))
    else:
        tz = UTC
    return moment.replace(tzinfo=tz)


def _display(pn: pydicom.valuerep.PersonName) -> str:
    parts = (pn.name_prefix, pn.given_name, pn.middle_name, pn.family_name, pn.name_suffix)
    return " ".join(p for p in parts if p)


def _study(*datasets: Dataset) -> dict:
    return imaging_study_from_instances(
        [instance_attributes(ds) for ds in datasets], wado_base_url=WADO, patient_reference=PATIENT
    )


@pytest.mark.parametrize("name", FILES)
def test_single_instance_study_maps_study_level_fields_from_the_file(name):
    ds = _read(name)
    study = _study(ds)

    assert study == validate_resource(study)
    assert study["resourceType"] == "ImagingStudy"
    assert study["id"] == imaging_study_id(ds.StudyInstanceUID)
    assert study["status"] == "available"
    assert study["subject"] == {"reference": PATIENT}
    assert study["identifier"][0] == {
        "use": "official",
        "system": "urn:dicom:uid",
        "value": f"urn:oid:{ds.StudyInstanceUID}",
    }
    accession = [i for i in study["identifier"] if i.get("type", {}).get("coding", [{}])[0].get("code") == "ACSN"]
    if ds.get("AccessionNumber"):
        assert [i["value"] for i in accession] == [ds.AccessionNumber]
        assert accession[0]["type"]["coding"][0]["system"] == codes.V2_0203
    else:
        assert accession == []
    if ds.get("StudyDate"):
        expected = _expected_datetime(ds.StudyDate, ds.StudyTime, ds.get("TimezoneOffsetFromUTC", ""))
        assert datetime.fromisoformat(study["started"]) == expected
    else:
        assert "started" not in study
    assert [(m["system"], m["code"]) for m in study["modality"]] == [(codes.DICOM_DCM, ds.Modality)]
    assert (study["numberOfSeries"], study["numberOfInstances"]) == (1, 1)
    assert study.get("description") == (ds.get("StudyDescription") or None)
    if ds.get("ReferringPhysicianName"):
        assert study["referrer"] == {"display": _display(ds.ReferringPhysicianName)}
    else:
        assert "referrer" not in study


@pytest.mark.parametrize("name", FILES)
def test_single_instance_study_maps_series_and_instance_from_the_file(name):
    ds = _read(name)
    (series,) = _study(ds)["series"]

    assert series["uid"] == ds.SeriesInstanceUID
    assert series["number"] == int(ds.SeriesNumber)
    assert series["modality"]["system"] == codes.DICOM_DCM
    assert series["modality"]["code"] == ds.Modality
    assert series.get("description") == (ds.get("SeriesDescription") or None)
    assert series["numberOfInstances"] == 1
    body_part = ds.get("BodyPartExamined", "")
    if body_part:
        assert series["bodySite"] == {
            "system": codes.SNOMED_CT,
            "code": EXPECTED_BODY_SITE[body_part],
            "display": series["bodySite"]["display"],
        }
    else:
        assert "bodySite" not in series
    if ds.get("SeriesDate"):
        expected = _expected_datetime(ds.SeriesDate, ds.SeriesTime, ds.get("TimezoneOffsetFromUTC", ""))
        assert datetime.fromisoformat(series["started"]) == expected
    else:
        assert "started" not in series
    (instance,) = series["instance"]
    assert instance["uid"] == ds.SOPInstanceUID
    assert instance["sopClass"] == {"system": "urn:ietf:rfc:3986", "code": f"urn:oid:{ds.SOPClassUID}"}
    assert instance["number"] == int(ds.InstanceNumber)


def test_study_references_a_contained_wado_rs_endpoint():
    study = _study(_read("RG1_UNCI.dcm"))
    (endpoint,) = study["contained"]
    assert endpoint["resourceType"] == "Endpoint"
    assert study["endpoint"] == [{"reference": f"#{endpoint['id']}"}]
    assert endpoint["connectionType"] == {"system": ENDPOINT_CONNECTION_TYPE, "code": "dicom-wado-rs"}
    assert endpoint["address"] == WADO
    assert endpoint["status"] == "active"


def test_enhanced_ct_keeps_its_enhanced_sop_class_and_frame_count():
    ds = _read("eCT_Supplemental.dcm")
    attrs = instance_attributes(ds)
    assert attrs["number_of_frames"] == int(ds.NumberOfFrames) == 2
    (series,) = _study(ds)["series"]
    assert series["instance"][0]["sopClass"]["code"] == "urn:oid:1.2.840.10008.5.1.4.1.1.2.1"


def test_cr_chest_gets_snomed_chest_body_site_and_mr_without_body_part_gets_none():
    assert _read("RG1_UNCI.dcm").BodyPartExamined == "CHEST"
    assert _study(_read("RG1_UNCI.dcm"))["series"][0]["bodySite"]["code"] == "51185008"
    # MR2's "SHOULDER" is its Study Description (0008,1030); it has no Body Part Examined.
    assert "BodyPartExamined" not in _read("MR2_UNCI.dcm")
    assert "bodySite" not in _study(_read("MR2_UNCI.dcm"))["series"][0]


def _dicomdir_studies() -> dict[str, list[Dataset]]:
    fs = FileSet(get_testdata_file("dicomdirtests/DICOMDIR"))
    studies: dict[str, list[Dataset]] = {}
    for instance in fs:
        ds = pydicom.dcmread(Path(instance.path), stop_before_pixels=True)
        studies.setdefault(ds.StudyInstanceUID, []).append(ds)
    return studies


def test_multi_series_study_counts_and_orders_series_and_instances():
    studies = _dicomdir_studies()
    mra = next(d for d in studies.values() if d[0].get("StudyDescription") == "Brain-MRA")
    study = _study(*mra)

    assert study["numberOfInstances"] == len(mra)
    assert study["numberOfSeries"] == len({d.SeriesInstanceUID for d in mra})
    assert [s["number"] for s in study["series"]] == sorted({int(d.SeriesNumber) for d in mra})
    for series in study["series"]:
        expected = sorted(int(d.InstanceNumber) for d in mra if d.SeriesInstanceUID == series["uid"])
        assert [i["number"] for i in series["instance"]] == expected
        assert series["numberOfInstances"] == len(expected)


def test_dicomdir_cr_and_ct_studies_map_body_parts_to_snomed():
    for datasets in _dicomdir_studies().values():
        study = _study(*datasets)
        for series in study["series"]:
            parts = {d.get("BodyPartExamined", "") for d in datasets if d.SeriesInstanceUID == series["uid"]}
            (part,) = parts
            if part:
                assert series["bodySite"]["code"] == EXPECTED_BODY_SITE[part]
            else:
                assert "bodySite" not in series
        assert sorted(m["code"] for m in study["modality"]) == sorted({d.Modality for d in datasets})


def test_study_of_instances_given_twice_counts_each_instance_once():
    ds = _read("CT_small.dcm")
    study = _study(ds, copy.deepcopy(ds))
    assert study["numberOfInstances"] == 1


def test_right_laterality_maps_to_snomed_right():
    # Derived from the real MR shoulder: the file has no Laterality (0020,0060); set it to R.
    ds = _read("MR2_UNCI.dcm")
    ds.Laterality = "R"
    (series,) = _study(ds)["series"]
    assert series["laterality"] == {"system": codes.SNOMED_CT, "code": "24028007", "display": "Right"}
    ds.Laterality = "L"
    assert _study(ds)["series"][0]["laterality"]["code"] == "7771000"


def test_procedure_code_sequence_becomes_procedure_code():
    # Derived from the real CR chest: the file has no Procedure Code Sequence (0008,1032); add one
    # SNOMED CT item (399208008 "Plain chest X-ray") and one local item without a known system.
    ds = _read("RG1_UNCI.dcm")
    sct, local = Dataset(), Dataset()
    sct.CodeValue, sct.CodingSchemeDesignator, sct.CodeMeaning = "399208008", "SCT", "Plain chest X-ray"
    local.CodeValue, local.CodingSchemeDesignator, local.CodeMeaning = "CXR-PA", "99RADCDS", "Chest PA"
    ds.ProcedureCodeSequence = [sct, local]
    study = _study(ds)
    assert study["procedureCode"] == [
        {
            "coding": [{"system": codes.SNOMED_CT, "code": "399208008", "display": "Plain chest X-ray"}],
            "text": "Plain chest X-ray",
        },
        {"coding": [{"code": "CXR-PA", "display": "Chest PA"}], "text": "Chest PA"},
    ]


def test_no_instances_or_several_studies_are_refused():
    with pytest.raises(ValueError, match="at least one instance"):
        imaging_study_from_instances([], wado_base_url=WADO, patient_reference=PATIENT)
    with pytest.raises(ValueError, match="2 studies"):
        _study(_read("CT_small.dcm"), _read("RG1_UNCI.dcm"))


@pytest.mark.parametrize(
    ("date", "time", "offset", "expected"),
    [
        ("20040826", "185059", "-0400", "2004-08-26T18:50:59-04:00"),
        ("20040826", "1851", "", "2004-08-26T18:51:00Z"),
        ("20061219", "111154.812", "-0500", "2006-12-19T11:11:54.812-05:00"),
        ("20040826", "", "", "2004-08-26"),
        ("", "185059", "", None),
        ("2004082", "185059", "", None),
    ],
)
def test_fhir_datetime_from_dicom_date_time_and_offset(date, time, offset, expected):
    assert fhir_datetime(date, time, offset) == expected
