"""Circuit breaker states, the DICOM SR (TID 1500) read back by dcmtk's dsrdump, and the findings payload.

The SR is built from the real head CT slice 693_UNCI.dcm (pydicom-data) with a DERIVED positive
result (a disc of 60-76 HU inserted by radcds.devstack.samples).
"""

from __future__ import annotations

import json
import shutil
import subprocess
from importlib import resources
from pathlib import Path

import jsonschema
import pydicom
import pytest

from radcds.adapters.dicom.sr import NOT_FOR_DIAGNOSTIC_USE, derived_uid, measurement_report, part10_bytes
from radcds.adapters.triton.breaker import BreakerState, CircuitBreaker, CircuitOpen
from radcds.devstack.samples import head_ct_with_hyperdense_disc
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
