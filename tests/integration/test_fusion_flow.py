"""fusion in the real stack (Kafka, Triton, PostgreSQL, imaging, inference, reporting, fusion).

(a) Two chest radiographs of one patient (the real RG1_UNCI.dcm, fresh UIDs, a new Patient ID, the first dated
six months earlier: header DERIVED, pixels untouched) → inference's CTR for each → fusion compares the second
with the first: an ``assessment.produced`` event whose comparison line names the prior CTR and its date.
(b) A TID 1500 measurement SR (built with highdicom on pydicom's real CT_small.dcm, as another AI product would
store it) measuring an 8 mm solid nodule → STOW-RS into imaging → fusion reads it over WADO-RS → a Fleischner
recommendation, readable as a FHIR ServiceRequest at fusion's API; then a chest CT of the same patient arrives
(study.available) and closes it.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

import highdicom as hd
import httpx
import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.sr.codedict import codes as dcm_codes
from pydicom.uid import generate_uid

from radcds.adapters.fhir.report import patient_id_for
from radcds.devstack.demo import event_trail, stow
from radcds.devstack.samples import chest_cr, part10
from radcds.domain.events import ASSESSMENT_PRODUCED, RECOMMENDATION_CHANGED
from radcds.domain.findings import StudyContext

from .helpers import eventually, read_topic

pytestmark = [pytest.mark.integration, pytest.mark.kafka, pytest.mark.triton, pytest.mark.postgres]


def _assessment(stack, study_uid: str) -> dict[str, Any]:
    trail = event_trail(stack, study_uid, until_types={ASSESSMENT_PRODUCED.type}, timeout_s=180)
    return [e["payload"] for e in trail if e["type"] == ASSESSMENT_PRODUCED.type][-1]


def test_second_chest_radiograph_is_compared_with_the_first_ctr_of_the_patient(stack):
    patient = f"FUS-{uuid.uuid4().hex[:8]}"
    first, second = chest_cr(), chest_cr()
    for ds, day in ((first, "20260603"), (second, "20261201")):
        ds.PatientID = patient
        ds.StudyDate = day
    stow(stack, [part10(first)])
    earlier = _assessment(stack, first.StudyInstanceUID)
    assert earlier["sections"]["comparison"][0].endswith(": no prior study to compare with.")
    stow(stack, [part10(second)])
    later = _assessment(stack, second.StudyInstanceUID)
    (line,) = later["sections"]["comparison"]
    assert line.startswith("CTR 0.47, previously 0.47 on 2026-06-03: stable"), line
    assert later["missingContext"] == ["EHR context (no EHR configured)"]


def _nodule_sr(ct: pydicom.Dataset, long_mm: float, short_mm: float) -> pydicom.Dataset:
    region = hd.sr.ImageRegion(
        graphic_type=hd.sr.GraphicTypeValues.POLYLINE,
        graphic_data=np.array([[30.0, 30.0], [40.0, 30.0], [40.0, 40.0], [30.0, 40.0], [30.0, 30.0]]),
        source_image=hd.sr.SourceImageForRegion(ct.SOPClassUID, ct.SOPInstanceUID),
    )
    group = hd.sr.PlanarROIMeasurementsAndQualitativeEvaluations(
        tracking_identifier=hd.sr.TrackingIdentifier(uid=generate_uid(), identifier="nodule 1"),
        referenced_region=region,
        finding_type=hd.sr.CodedConcept("427359005", "SCT", "Solitary nodule of lung"),
        finding_sites=[hd.sr.FindingSite(hd.sr.CodedConcept("45653009", "SCT", "Upper lobe of right lung"))],
        measurements=[
            hd.sr.Measurement(
                hd.sr.CodedConcept("103339001", "SCT", "Long Axis"),
                long_mm,
                hd.sr.CodedConcept("mm", "UCUM", "millimeter"),
            ),
            hd.sr.Measurement(
                hd.sr.CodedConcept("103340004", "SCT", "Short Axis"),
                short_mm,
                hd.sr.CodedConcept("mm", "UCUM", "millimeter"),
            ),
        ],
        qualitative_evaluations=[
            hd.sr.QualitativeEvaluation(
                hd.sr.CodedConcept("C0439773", "UMLS", "Nodule composition"),
                hd.sr.CodedConcept("35702001", "SCT", "Solid"),
            )
        ],
    )
    observer = hd.sr.ObserverContext(
        observer_type=dcm_codes.DCM.Person,
        observer_identifying_attributes=hd.sr.PersonObserverIdentifyingAttributes(name="Reader^Ray"),
    )
    report = hd.sr.MeasurementReport(
        observation_context=hd.sr.ObservationContext(observer_person_context=observer),
        procedure_reported=hd.sr.CodedConcept("77477000", "SCT", "CT"),
        imaging_measurements=[group],
    )
    return hd.sr.Comprehensive3DSR(
        evidence=[ct],
        content=report,
        series_instance_uid=generate_uid(),
        series_number=90,
        sop_instance_uid=generate_uid(),
        instance_number=1,
        manufacturer="Another AI vendor",
    )


def test_measurement_sr_in_imaging_gives_a_recommendation_that_a_later_chest_ct_closes(stack):
    patient = f"FUS-{uuid.uuid4().hex[:8]}"
    ct = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    ct.PatientID = patient
    ct.StudyInstanceUID, ct.SeriesInstanceUID, ct.SOPInstanceUID = generate_uid(), generate_uid(), generate_uid()
    ct.file_meta.MediaStorageSOPInstanceUID = ct.SOPInstanceUID
    ct.StudyDate = "20261201"
    sr = _nodule_sr(ct, 8.2, 7.8)
    stow(stack, [part10(sr)])
    assessment = _assessment(stack, sr.StudyInstanceUID)
    assert assessment["sections"]["recommendations"][0].startswith("fleischner-2017 1.0.0: ")
    (rec,) = assessment["recommendations"]
    base = f"http://{stack.host}:{stack.ports.fusion}/fhir"
    subject = patient_id_for(StudyContext(patient_id=patient, issuer_of_patient_id=ct.get("IssuerOfPatientID", "")))
    found = httpx.get(
        f"{base}/ServiceRequest", params={"patient": f"Patient/{subject}", "status": "active"}, timeout=10
    ).json()
    assert [e["resource"]["id"] for e in found["entry"]] == [rec["id"]]

    follow_up = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    follow_up.PatientID = patient
    follow_up.BodyPartExamined = "CHEST"
    follow_up.StudyInstanceUID, follow_up.SeriesInstanceUID, follow_up.SOPInstanceUID = (
        generate_uid(),
        generate_uid(),
        generate_uid(),
    )
    follow_up.file_meta.MediaStorageSOPInstanceUID = follow_up.SOPInstanceUID
    follow_up.StudyDate = "20270615"
    stow(stack, [part10(follow_up)])

    def closed() -> bool:
        answer = httpx.get(f"{base}/ServiceRequest/{rec['id']}", timeout=10).json()
        return answer["status"] == "completed"

    eventually(closed, timeout_s=120, what="the recommendation closed by the follow-up chest CT")
    changes = [e for e in read_topic(stack, RECOMMENDATION_CHANGED.topic) if e.value and rec["id"] in e.value.decode()]
    states = [json.loads(e.value)["state"] for e in changes]
    assert states == ["proposed", "closed"]
