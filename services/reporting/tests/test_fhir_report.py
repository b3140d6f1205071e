"""FHIR R4 resources built from an analysis validate as R4 and follow the mapping."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from radcds.adapters.fhir import report
from radcds.adapters.fhir.resources import InvalidResource, validate_resource
from radcds.domain import codes
from radcds.domain.findings import ImageAnalysis, InstanceReference, Measurement, ModelIdentity, StudyContext

REF = InstanceReference("1.2.826.0.1", "1.2.826.0.1.1", "1.2.826.0.1.1.1", "1.2.840.10008.5.1.4.1.1.1")
CTX = StudyContext(
    patient_id="PID-7",
    accession_number="ACC9",
    modality="CR",
    study_date="20040826",
    study_time="185059",
    study_description="CHEST PA",
)
NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)


def _analysis(**kw) -> ImageAnalysis:
    return ImageAnalysis(REF, CTX, ModelIdentity("pixel_statistics", "1"), **kw)


def test_measurements_become_r4_observations_derived_from_the_imaging_study():
    parts = report.analysis_resources(
        _analysis(measurements=(Measurement(codes.MEAN_PIXEL_VALUE, 10.0, "{pixel_value}"),)),
        existing_study=None,
        now=NOW,
    )
    (obs,) = parts.observations
    validated = validate_resource(obs)
    assert validated["status"] == "preliminary"
    assert validated["valueQuantity"] == {
        "value": 10.0,
        "unit": "{pixel_value}",
        "system": codes.UCUM,
        "code": "{pixel_value}",
    }
    assert validated["derivedFrom"] == [
        {"reference": f"ImagingStudy/{report.imaging_study_id(REF.study_instance_uid)}"}
    ]
    assert validated["effectiveDateTime"] == "2004-08-26T18:50:59Z"


def test_imaging_study_follows_the_r4_dicom_mapping():
    study = validate_resource(
        report.analysis_resources(
            _analysis(measurements=(Measurement(codes.MEAN_PIXEL_VALUE, 1.0, "1"),)), existing_study=None, now=NOW
        ).imaging_study
    )
    assert study["identifier"][0] == {"system": "urn:dicom:uid", "value": "urn:oid:1.2.826.0.1"}
    assert study["identifier"][1]["value"] == "ACC9"
    assert study["identifier"][1]["type"]["coding"][0]["code"] == "ACSN"
    assert study["status"] == "available"
    assert study["modality"] == [{"system": codes.DICOM_DCM, "code": "CR"}]
    assert study["numberOfSeries"] == 1 and study["numberOfInstances"] == 1
    assert study["series"][0]["instance"][0]["uid"] == REF.sop_instance_uid
    assert study["description"] == "CHEST PA"


def test_second_instance_of_a_study_merges_into_the_existing_imaging_study():
    first = report.analysis_resources(_analysis(not_analysed_reason="x"), existing_study=None, now=NOW).imaging_study
    other = InstanceReference(REF.study_instance_uid, "1.2.826.0.1.2", "1.2.826.0.1.2.1", REF.sop_class_uid)
    merged = report.analysis_resources(
        ImageAnalysis(other, CTX, ModelIdentity("pixel_statistics", "1"), not_analysed_reason="y"),
        existing_study=first,
        now=NOW,
    ).imaging_study
    assert merged["numberOfSeries"] == 2 and merged["numberOfInstances"] == 2


def test_not_analysed_becomes_observation_with_data_absent_reason_and_note():
    (obs,) = report.analysis_resources(
        _analysis(not_analysed_reason="not analysed: colour image"), existing_study=None, now=NOW
    ).observations
    validated = validate_resource(obs)
    assert validated["dataAbsentReason"]["coding"][0]["code"] == "not-performed"
    assert validated["note"] == [{"text": "not analysed: colour image"}]


def test_provenance_names_model_and_version_and_targets_observations():
    parts = report.analysis_resources(
        _analysis(measurements=(Measurement(codes.MEAN_PIXEL_VALUE, 1.0, "1"),)), existing_study=None, now=NOW
    )
    prov = validate_resource(parts.provenance)
    assert "pixel_statistics version 1" in prov["agent"][0]["who"]["display"]
    assert prov["target"] == [{"reference": f"Observation/{parts.observations[0]['id']}"}]


def test_ids_are_stable_for_the_same_input():
    a = report.analysis_resources(_analysis(not_analysed_reason="x"), existing_study=None, now=NOW)
    b = report.analysis_resources(_analysis(not_analysed_reason="x"), existing_study=None, now=NOW)
    assert a.observations[0]["id"] == b.observations[0]["id"]
    assert a.patient["id"] == b.patient["id"]


def test_r5_shaped_imaging_study_is_rejected_as_r4():
    # In R5 ImagingStudy.modality is a CodeableConcept list; R4 wants Codings.
    with pytest.raises(InvalidResource):
        validate_resource(
            {
                "resourceType": "ImagingStudy",
                "status": "available",
                "subject": {"reference": "Patient/1"},
                "modality": [{"coding": [{"system": codes.DICOM_DCM, "code": "CT"}]}],
            }
        )


@pytest.mark.parametrize(
    ("date", "time", "expected"),
    [
        ("20260101", "", "2026-01-01"),
        ("20260101", "1230", "2026-01-01T12:30:00Z"),
        ("20260101", "123015.5", "2026-01-01T12:30:15Z"),
        ("", "1230", None),
    ],
)
def test_dicom_date_and_time_map_to_fhir_datetime(date, time, expected):
    assert report.dicom_datetime(date, time) == expected


def test_critical_coded_finding_becomes_a_present_snomed_observation_interpreted_critical():
    from radcds.domain.findings import ImageLocation, KeyImageReference
    from radcds_reporting.adapters.fhir import reporting

    analysis = _analysis(
        measurements=(Measurement(codes.MEAN_PIXEL_VALUE, 1.0, "1"),),
        findings=(codes.INTRACRANIAL_HEMORRHAGE,),
        critical=True,
        location=ImageLocation("left parietal, slice 1"),
        key_image=KeyImageReference(REF.sop_instance_uid, REF.sop_class_uid, 1),
    )
    parts = report.analysis_resources(analysis, existing_study=None, now=NOW)
    finding = validate_resource(next(o for o in parts.observations if "valueCodeableConcept" in o))
    assert finding["code"]["coding"][0] == report.coding(codes.INTRACRANIAL_HEMORRHAGE)
    assert finding["valueCodeableConcept"]["coding"][0]["code"] == "52101004"
    assert finding["interpretation"][0]["coding"][0]["code"] == "AA"
    notes = [n["text"] for n in finding["note"]]
    assert "Location: left parietal, slice 1" in notes and any(REF.sop_instance_uid in n for n in notes)
    dr = reporting.diagnostic_report(
        report_id="r1",
        study=parts.imaging_study,
        observations=parts.observations,
        accession_number="ACC9",
        service_request=None,
        conclusion="x",
        presented_form=[],
        issued="2026-11-28T12:00:00Z",
    )
    assert [c["coding"][0]["code"] for c in dr["conclusionCode"]] == [codes.INTRACRANIAL_HEMORRHAGE.code]
    assert report.RULE_CRITICAL_RESULT in parts.provenance["policy"]
