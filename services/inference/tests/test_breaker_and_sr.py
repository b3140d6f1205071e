"""Circuit breaker states, the DICOM SR (TID 1500) read back by dcmtk's dsrdump, and the findings payload.

The SR is built from the real head CT slice 693_UNCI.dcm (pydicom-data) with a DERIVED positive
result (a disc of 60-76 HU inserted by radcds_devstack.samples).
"""

from __future__ import annotations

import copy
import json
import shutil
import subprocess
from importlib import resources
from pathlib import Path

import jsonschema
import pydicom
import pytest

from radcds.domain import codes
from radcds.domain.events import ImagingFindingsProduced
from radcds.domain.findings import (
    ImageAnalysis,
    ImageLocation,
    InstanceReference,
    KeyImageReference,
    Measurement,
    ModelIdentity,
    StudyContext,
)
from radcds_devstack.samples import head_ct_with_hyperdense_disc
from radcds_inference.adapters.dicom.sr import (
    DEIDENTIFICATION_METHOD_NOT_STATED,
    NOT_FOR_DIAGNOSTIC_USE,
    QUALITATIVE_EVALUATIONS,
    derived_uid,
    measurement_report,
    part10_bytes,
)
from radcds_inference.adapters.triton.breaker import BreakerState, CircuitBreaker, CircuitOpen


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_breaker_opens_after_threshold_consecutive_failures_and_fails_fast():
    breaker = CircuitBreaker(name="t", failure_threshold=3, reset_timeout_s=10, clock=Clock())
    for _ in range(2):
        breaker.before_call()
        breaker.record_failure()
    assert breaker.state is BreakerState.CLOSED
    breaker.before_call()
    breaker.record_failure()
    assert breaker.state is BreakerState.OPEN
    with pytest.raises(CircuitOpen):
        breaker.before_call()


def test_breaker_success_resets_the_consecutive_count():
    breaker = CircuitBreaker(name="t", failure_threshold=2, reset_timeout_s=10, clock=Clock())
    breaker.record_failure()
    breaker.record_success()
    breaker.record_failure()
    assert breaker.state is BreakerState.CLOSED


def test_breaker_half_open_admits_one_trial_whose_outcome_decides():
    clock = Clock()
    breaker = CircuitBreaker(name="t", failure_threshold=1, reset_timeout_s=5, clock=clock)
    breaker.record_failure()
    clock.now = 5.0
    assert breaker.state is BreakerState.HALF_OPEN
    breaker.before_call()  # the trial
    with pytest.raises(CircuitOpen):
        breaker.before_call()  # a second caller waits for the trial
    breaker.record_failure()
    assert breaker.state is BreakerState.OPEN
    clock.now = 10.0
    breaker.before_call()
    breaker.record_success()
    assert breaker.state is BreakerState.CLOSED


@pytest.fixture(scope="module")
def positive_analysis():
    ds, _ = head_ct_with_hyperdense_disc()
    ref = InstanceReference(ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID, ds.SOPClassUID)
    analysis = ImageAnalysis(
        ref,
        StudyContext(patient_id=str(ds.PatientID)),
        ModelIdentity("head_ct_hyperdensity", "1"),
        measurements=(
            Measurement(codes.HYPERDENSE_REGION_COUNT, 1.0, codes.UNIT_COUNT),
            Measurement(codes.HYPERDENSE_REGION_AREA, 154.3, codes.UNIT_SQUARE_MILLIMETRE),
            Measurement(codes.HYPERDENSE_MAX_HU, 76.0, codes.UNIT_HOUNSFIELD),
        ),
        findings=(codes.INTRACRANIAL_HEMORRHAGE,),
        critical=True,
        location=ImageLocation("largest region centred at (row, column) (260, 250)", ((260.0, 250.0),)),
        key_image=KeyImageReference(ds.SOPInstanceUID, ds.SOPClassUID),
    )
    return ds, analysis


def test_sr_is_comprehensive_3d_tid1500_with_device_observer_and_key_image(positive_analysis):
    ds, analysis = positive_analysis
    sr = measurement_report(analysis, [ds], series_uid=derived_uid("s"), sop_instance_uid=derived_uid("i"))
    assert sr.SOPClassUID == "1.2.840.10008.5.1.4.1.1.88.34"  # Comprehensive 3D SR Storage
    assert sr.ContentTemplateSequence[0].TemplateIdentifier == "1500"
    assert sr.StudyInstanceUID == ds.StudyInstanceUID
    assert sr.Manufacturer == "radcds"
    assert NOT_FOR_DIAGNOSTIC_USE in sr.SeriesDescription
    again = measurement_report(analysis, [ds], series_uid=derived_uid("s"), sop_instance_uid=derived_uid("i"))
    assert again.SOPInstanceUID == sr.SOPInstanceUID  # deterministic


@pytest.mark.skipif(shutil.which("dsrdump") is None, reason="dcmtk's dsrdump is not installed (apt-get install dcmtk)")
def test_dsrdump_reads_the_sr_back_with_the_measurement_values(positive_analysis, tmp_path: Path):
    ds, analysis = positive_analysis
    sr = measurement_report(analysis, [ds], series_uid=derived_uid("s"), sop_instance_uid=derived_uid("i"))
    path = tmp_path / "sr.dcm"
    path.write_bytes(part10_bytes(sr))
    out = subprocess.run(["dsrdump", "+Pl", "+Pu", "+Pt", str(path)], capture_output=True, text=True, check=True).stdout
    assert "Comprehensive 3D SR" in out
    assert '"154.3" (mm2,UCUM' in out
    assert '"76.0" ([hnsf\'U],UCUM' in out
    assert '(1386000,SCT,"Intracranial hemorrhage")' in out
    assert '"Device Observer Manufacturer")="radcds"' in out
    assert NOT_FOR_DIAGNOSTIC_USE in out
    assert f'(CT image,"{ds.SOPInstanceUID}")' in out  # the key image (TID 1501 source image)
    assert "TID 1500" in out
    assert pydicom.dcmread(path).Modality == "SR"


def test_findings_payload_with_new_fields_validates_and_round_trips(positive_analysis):
    _, analysis = positive_analysis
    schema = json.loads(
        resources.files("radcds.schemas").joinpath("imaging-findings-produced.v1.json").read_text(encoding="utf-8")
    )
    payload = ImagingFindingsProduced(analysis).to_payload()
    jsonschema.validate(payload, schema)
    assert payload["critical"] is True
    assert payload["findings"] == [{"system": codes.SNOMED_CT, "code": "1386000", "display": "Intracranial hemorrhage"}]
    assert ImagingFindingsProduced.from_payload(payload).analysis == analysis


def test_findings_payload_of_the_first_release_still_validates_and_parses_with_defaults():
    old = {
        "instance": {
            "studyInstanceUid": "1.2",
            "seriesInstanceUid": "1.2.3",
            "sopInstanceUid": "1.2.3.4",
            "sopClassUid": "1.2.840.10008.5.1.4.1.1.2",
        },
        "context": {"patientId": "p"},
        "model": {"name": "pixel_statistics", "version": "1"},
        "measurements": [{"system": "s", "code": "c", "display": "d", "value": 1.0, "unit": "1"}],
    }
    schema = json.loads(
        resources.files("radcds.schemas").joinpath("imaging-findings-produced.v1.json").read_text(encoding="utf-8")
    )
    jsonschema.validate(old, schema)
    analysis = ImagingFindingsProduced.from_payload(old).analysis
    assert analysis.critical is False and analysis.findings == () and analysis.key_image is None


def _sr_of(ds, analysis):
    return measurement_report(analysis, [ds], series_uid=derived_uid("s"), sop_instance_uid=derived_uid("i"))


def test_not_for_diagnostic_use_text_is_in_the_tid1500_qualitative_evaluations_container_not_at_the_root(
    positive_analysis,
):
    """PS3.16 TID 1500 has no TEXT row under the root; rows 12-14 are CONTAINER "Qualitative
    Evaluations" (C0034375, UMLS) > CONTAINS TEXT."""
    ds, analysis = positive_analysis
    sr = _sr_of(ds, analysis)
    root_contains = [
        (i.ValueType, i.ConceptNameCodeSequence[0].CodeValue)
        for i in sr.ContentSequence
        if i.RelationshipType == "CONTAINS"
    ]
    assert ("TEXT", "121106") not in root_contains  # only TID 1001 observation context TEXTs (HAS OBS CONTEXT)
    (container,) = [
        item
        for item in sr.ContentSequence
        if item.ConceptNameCodeSequence[0].CodeValue == QUALITATIVE_EVALUATIONS.value
    ]
    assert container.ValueType == "CONTAINER" and container.RelationshipType == "CONTAINS"
    assert container.ConceptNameCodeSequence[0].CodingSchemeDesignator == "UMLS"
    (text,) = container.ContentSequence
    assert text.ValueType == "TEXT" and text.RelationshipType == "CONTAINS"
    assert text.ConceptNameCodeSequence[0].CodeValue == "121106"  # DCM Comment
    assert text.TextValue.startswith(NOT_FOR_DIAGNOSTIC_USE) and "CRITICAL" in text.TextValue


def test_sr_using_99radcds_codes_identifies_the_scheme_in_coding_scheme_identification_sequence(positive_analysis):
    """PS3.3 C.12.1: a private scheme used in the SR has a Coding Scheme Identification Sequence item."""
    ds, analysis = positive_analysis
    sr = _sr_of(ds, analysis)
    items = {i.CodingSchemeDesignator: i for i in sr.CodingSchemeIdentificationSequence}
    assert set(items) >= {"99RADCDS"}
    assert items["99RADCDS"].CodingSchemeName == "radcds measurement codes"
    assert items["99RADCDS"].CodingSchemeResponsibleOrganization == "radcds project"


def test_sr_of_evidence_with_identity_removed_copies_the_deidentification_method_and_codes(positive_analysis):
    """PS3.3 C.7.1.1: Patient Identity Removed YES makes 0012,0063 / 0012,0064 Type 1C."""
    ds, analysis = positive_analysis
    evidence = copy.deepcopy(ds)
    evidence.DeidentificationMethod = "site pipeline v2"
    code = pydicom.Dataset()
    code.CodeValue, code.CodingSchemeDesignator, code.CodeMeaning = (
        "113100",
        "DCM",
        "Basic Application Confidentiality Profile",
    )
    evidence.DeidentificationMethodCodeSequence = [code]
    sr = _sr_of(evidence, analysis)
    assert sr.PatientIdentityRemoved == "YES"
    assert sr.DeidentificationMethod == "site pipeline v2"
    assert sr.DeidentificationMethodCodeSequence[0].CodeValue == "113100"


def test_sr_of_evidence_with_identity_removed_but_no_method_says_the_method_is_not_stated(positive_analysis):
    ds, analysis = positive_analysis
    evidence = copy.deepcopy(ds)
    del evidence.DeidentificationMethod
    sr = _sr_of(evidence, analysis)
    assert sr.PatientIdentityRemoved == "YES"
    assert sr.DeidentificationMethod == DEIDENTIFICATION_METHOD_NOT_STATED
    assert "DeidentificationMethodCodeSequence" not in sr


def test_sr_of_evidence_without_identity_removed_has_no_deidentification_method(positive_analysis):
    ds, analysis = positive_analysis
    evidence = copy.deepcopy(ds)
    for keyword in ("PatientIdentityRemoved", "DeidentificationMethod", "DeidentificationMethodCodeSequence"):
        evidence.pop(keyword, None)
    sr = _sr_of(evidence, analysis)
    assert "DeidentificationMethod" not in sr and "DeidentificationMethodCodeSequence" not in sr
