"""fusion's use cases on a migrated database (SQLite): findings events assessed against priors, measurement-SR
nodules giving a Fleischner recommendation, a study closing it, the overdue sweep with an injectable clock,
cancellation, and at-least-once redelivery handled once. Events are read back from the transactional outbox."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from pathlib import Path

import jsonschema
import pytest
from sqlalchemy import select

from radcds.adapters.db.tables import event_outbox
from radcds.adapters.kafka.codec import DecodedEvent, load_schema
from radcds.domain import codes
from radcds.domain.events import (
    ASSESSMENT_PRODUCED,
    FINDINGS_PRODUCED,
    RECOMMENDATION_CHANGED,
    STUDY_AVAILABLE,
    ImagingFindingsProduced,
)
from radcds.domain.findings import ImageAnalysis, InstanceReference, Measurement, ModelIdentity, StudyContext
from radcds_devstack.testing import migrated_engine
from radcds_fusion.adapters.sr_nodules import ReportedNodule
from radcds_fusion.domain.context import ClinicalContext, PatientRef, SmokingStatus
from radcds_fusion.domain.nodules import Composition, Nodule
from radcds_fusion.handlers import FusionService, InvalidTransition, Knowledge, RecommendationNotFound
from radcds_fusion.knowledge import load_critical_policy, load_findings, load_guidelines

ROOT = Path(__file__).resolve().parents[3]
SMOKER = ClinicalContext(
    birth_date=date(1961, 5, 2),
    copd=True,
    known_cancer=False,
    immunosuppressed=False,
    smoking_status=SmokingStatus.CURRENT,
    pack_years=30,
)


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def engine(tmp_path):
    with migrated_engine("fusion", "sqlite", root=ROOT, scratch=tmp_path, label="h", chain="radcds_fusion.db") as e:
        yield e


@pytest.fixture
def clock():
    return Clock(datetime(2026, 12, 1, 10, tzinfo=UTC))


@pytest.fixture
def service(engine, clock):
    knowledge = Knowledge(load_guidelines(), load_critical_policy(), load_findings())
    return FusionService(
        engine=engine, knowledge=knowledge, context=lambda p: SMOKER, consumer_group="fusion-test", clock=clock
    )


def findings_event(event_id: str, *, ctr: float, study_uid: str, study_date: str) -> DecodedEvent:
    analysis = ImageAnalysis(
        instance=InstanceReference(study_uid, study_uid + ".1", study_uid + ".1.1", "1.2.840.10008.5.1.4.1.1.1"),
        context=StudyContext(patient_id="MRN-1", issuer_of_patient_id="HOSP", modality="CR", study_date=study_date),
        model=ModelIdentity("chest_ctr", "1"),
        measurements=(Measurement(codes.CARDIOTHORACIC_RATIO, ctr, codes.UNIT_RATIO),),
    )
    payload = ImagingFindingsProduced(analysis).to_payload()
    return DecodedEvent(
        event_id, FINDINGS_PRODUCED.type, "/radcds/inference", study_uid, None, FINDINGS_PRODUCED, payload
    )


def outbox(engine, kind):
    with engine.connect() as conn:
        rows = conn.execute(
            select(event_outbox.c.payload).where(event_outbox.c.event_type == kind.type).order_by(event_outbox.c.seq)
        )
        payloads = [json.loads(r) for r in rows.scalars()]
    schema = load_schema(kind.schema)
    for p in payloads:
        jsonschema.validate(p, schema)
    return payloads


def test_chest_radiograph_ctr_is_compared_with_the_prior_ctr_held_by_fusion(service, engine):
    service.handle(findings_event("e1", ctr=0.44, study_uid="1.2.3.1", study_date="20260603"))
    service.handle(findings_event("e2", ctr=0.467, study_uid="1.2.3.2", study_date="20261201"))
    first, second = outbox(engine, ASSESSMENT_PRODUCED)
    assert first["sections"]["comparison"] == ["CTR 0.44: no prior study to compare with."]
    assert second["sections"]["comparison"] == ["CTR 0.47, previously 0.44 on 2026-06-03: stable."]
    assert second["comparisons"][0] | {"delta": round(second["comparisons"][0]["delta"], 3)} == {
        "code": "cardiothoracic-ratio",
        "change": "stable",
        "text": second["sections"]["comparison"][0],
        "value": 0.467,
        "priorValue": 0.44,
        "priorStudyDate": "2026-06-03",
        "delta": 0.027,
        "intervalDays": 181,
    }


def test_redelivered_findings_event_is_assessed_once(service, engine):
    event = findings_event("e1", ctr=0.44, study_uid="1.2.3.1", study_date="20260603")
    service.handle(event)
    service.handle(event)
    assert len(outbox(engine, ASSESSMENT_PRODUCED)) == 1


def nodule(long_mm: float, short_mm: float) -> ReportedNodule:
    n = Nodule(Composition.SOLID, long_mm, short_mm, location="Upper lobe of right lung")
    return ReportedNodule(
        n,
        ("SCT", "427359005", "Solitary nodule of lung"),
        "1.9.1",
        "nodule 1",
        ("SCT", "45653009", "Upper lobe of right lung"),
        None,
    )


PATIENT = PatientRef("patient-1", "MRN-1", "HOSP")


def record(service, event_id, study_uid, day, size):
    service.record_measurement_report(
        event_id=event_id,
        patient=PATIENT,
        study_uid=study_uid,
        study_date=day,
        sr_instance_uid=study_uid + ".99",
        nodules=[nodule(*size)],
    )


def test_grown_nodule_from_a_measurement_sr_gets_vdt_and_a_fleischner_recommendation(service, engine):
    record(service, "sr-1", "1.2.9.1", date(2026, 6, 4), (6.1, 5.9))
    record(service, "sr-2", "1.2.9.2", date(2026, 12, 1), (8.2, 7.8))
    latest = outbox(engine, ASSESSMENT_PRODUCED)[-1]
    assert latest["comparisons"][0]["change"] == "increased"
    assert latest["comparisons"][0]["volumeDoublingTimeDays"] == pytest.approx(144.6, abs=0.1)
    assert (
        latest["sections"]["recommendations"][0]
        == "fleischner-2017 1.0.0: CT at 6-12 months, then CT at 18-24 months. Due by 2027-12-01."
    )
    changes = outbox(engine, RECOMMENDATION_CHANGED)
    made = [c for c in changes if c["studyInstanceUid"] == "1.2.9.2"]
    assert len(made) == 1
    sr = made[0]["serviceRequest"]
    assert (sr["intent"], sr["status"], sr["occurrencePeriod"]) == (
        "proposal",
        "active",
        {"start": "2027-06-01", "end": "2027-12-01"},
    )


def test_reassessing_a_study_keeps_one_recommendation(service, engine):
    record(service, "sr-1", "1.2.9.2", date(2026, 12, 1), (8.2, 7.8))
    record(service, "sr-2", "1.2.9.2", date(2026, 12, 1), (8.4, 7.8))  # corrected SR of the same study
    assert len(outbox(engine, ASSESSMENT_PRODUCED)) == 2
    assert len(outbox(engine, RECOMMENDATION_CHANGED)) == 1


def study_available(event_id: str, *, started: str, modality="CT", body_site="51185008") -> DecodedEvent:
    from radcds.adapters.fhir.report import patient_id_for

    patient = patient_id_for(StudyContext(patient_id="MRN-1", issuer_of_patient_id="HOSP"))
    payload = {
        "studyInstanceUid": "1.2.10",
        "version": 1,
        "isUpdate": False,
        "numberOfInstances": 1,
        "imagingStudy": {
            "resourceType": "ImagingStudy",
            "subject": {"reference": f"Patient/{patient}"},
            "started": started,
            "modality": [{"code": modality}],
            "series": [{"bodySite": {"code": body_site}}],
        },
    }
    return DecodedEvent(event_id, STUDY_AVAILABLE.type, "/radcds/imaging", "1.2.10", None, STUDY_AVAILABLE, payload)


def recommend(service: FusionService, engine) -> str:
    """An 8 mm solid nodule of patient MRN-1 (issuer HOSP) measured on 2026-12-01: one Fleischner recommendation."""
    from radcds.adapters.fhir.report import patient_id_for

    patient = PatientRef(patient_id_for(StudyContext(patient_id="MRN-1", issuer_of_patient_id="HOSP")), "MRN-1", "HOSP")
    service.record_measurement_report(
        event_id="sr",
        patient=patient,
        study_uid="1.2.9.2",
        study_date=date(2026, 12, 1),
        sr_instance_uid="1.2.9.2.99",
        nodules=[nodule(8.2, 7.8)],
    )
    (made,) = outbox(engine, RECOMMENDATION_CHANGED)
    return str(made["recommendationId"])


@pytest.fixture
def recommended(service, engine):
    return recommend(service, engine)


def test_matching_chest_ct_closes_the_recommendation(service, engine, recommended):
    service.handle(study_available("s1", started="2027-06-10T09:00:00Z", body_site="69536005"))  # head CT: no
    assert len(outbox(engine, RECOMMENDATION_CHANGED)) == 1
    service.handle(study_available("s2", started="2027-06-10T09:00:00Z"))
    closed = outbox(engine, RECOMMENDATION_CHANGED)[-1]
    assert (closed["recommendationId"], closed["state"], closed["previousState"]) == (recommended, "closed", "proposed")
    assert closed["closedBy"] == "ImagingStudy/1.2.10"
    assert closed["serviceRequest"]["status"] == "completed"


def test_recommendation_becomes_overdue_once_its_due_date_has_passed(service, engine, clock, recommended):
    clock.now = datetime(2027, 12, 1, 23, tzinfo=UTC)
    assert service.sweep_overdue() == []
    clock.now = datetime(2027, 12, 2, 0, 30, tzinfo=UTC)
    (overdue,) = service.sweep_overdue()
    assert overdue.id == recommended
    assert service.sweep_overdue() == []  # idempotent
    last = outbox(engine, RECOMMENDATION_CHANGED)[-1]
    assert (last["state"], last["previousState"]) == ("overdue", "proposed")
    assert {"system": "https://radcds.example.org/fhir/CodeSystem/recommendation-state", "code": "overdue"} in last[
        "serviceRequest"
    ]["meta"]["tag"]
    # a late study still closes it
    service.handle(study_available("s3", started="2028-01-05T09:00:00Z"))
    assert outbox(engine, RECOMMENDATION_CHANGED)[-1]["state"] == "closed"


def test_cancel_records_reason_and_refuses_a_second_time(service, engine, recommended):
    cancelled = service.cancel(recommended, reason="enrolled in the screening programme", by="Practitioner/7")
    assert cancelled.cancel_reason == "enrolled in the screening programme"
    last = outbox(engine, RECOMMENDATION_CHANGED)[-1]
    assert (last["state"], last["cancelReason"], last["serviceRequest"]["status"]) == (
        "cancelled",
        "enrolled in the screening programme",
        "revoked",
    )
    with pytest.raises(InvalidTransition, match="cancelled"):
        service.cancel(recommended, reason="again", by="Practitioner/7")
    with pytest.raises(RecommendationNotFound):
        service.cancel("no-such-id", reason="x", by="Practitioner/7")


class FakeImaging:
    """Fake of our ImagingInstances port: serves data sets by WADO-RS URL."""

    def __init__(self, datasets):
        self.datasets = datasets
        self.calls = []

    def retrieve(self, url):
        self.calls.append(url)
        return self.datasets[url]


def instance_stored(event_id: str, *, sr, url: str, study_date: str = "20261201") -> DecodedEvent:
    from radcds.domain.events import INSTANCE_STORED, ImagingInstanceStored
    from radcds.domain.findings import InstanceReference, StudyContext

    stored = ImagingInstanceStored(
        instance=InstanceReference(sr.StudyInstanceUID, sr.SeriesInstanceUID, sr.SOPInstanceUID, sr.SOPClassUID),
        context=StudyContext(patient_id="MRN-1", issuer_of_patient_id="HOSP", modality="SR", study_date=study_date),
        transfer_syntax_uid="1.2.840.10008.1.2.1",
        retrieve_url=url,
        size_bytes=1000,
    )
    return DecodedEvent(
        event_id,
        INSTANCE_STORED.type,
        "/radcds/imaging",
        sr.StudyInstanceUID,
        None,
        INSTANCE_STORED,
        stored.to_payload(),
    )


@pytest.fixture
def sr_service(engine, clock):
    def build(datasets):
        imaging = FakeImaging(datasets)
        knowledge = Knowledge(load_guidelines(), load_critical_policy(), load_findings())
        service = FusionService(
            engine=engine,
            knowledge=knowledge,
            context=lambda p: SMOKER,
            consumer_group="fusion-test",
            clock=clock,
            instances=imaging,
        )
        return service, imaging

    return build


def test_measurement_sr_stored_in_imaging_is_read_and_assessed(sr_service, engine, ct, sr_kit):
    sr = sr_kit.roundtrip(
        sr_kit.sr_of(
            ct,
            [
                sr_kit.planar_group(
                    ct, "1.2.3.1", [sr_kit.measurement(sr_kit.LONG, 8.2), sr_kit.measurement(sr_kit.SHORT, 7.8)]
                )
            ],
        )
    )
    service, imaging = sr_service({"http://imaging/sr/1": sr})
    event = instance_stored("i1", sr=sr, url="http://imaging/sr/1")
    service.handle(event)
    service.handle(event)  # redelivered: assessed once
    (assessment,) = outbox(engine, ASSESSMENT_PRODUCED)
    assert assessment["studyInstanceUid"] == sr.StudyInstanceUID
    assert (
        assessment["comparisons"][0]["text"]
        == "Solid nodule, Upper lobe of right lung 8.0 mm: no prior study to compare with."
    )
    assert assessment["guidelines"][0]["id"] == "fleischner-2017"
    assert len(outbox(engine, RECOMMENDATION_CHANGED)) == 1
    assert imaging.calls == ["http://imaging/sr/1"]  # the duplicate was recognised before fetching


def test_radcds_own_sr_and_images_are_not_read_as_measurement_reports(sr_service, engine, ct, sr_kit):
    sr = sr_kit.roundtrip(
        sr_kit.sr_of(ct, [sr_kit.planar_group(ct, "1.2.3.1", [sr_kit.measurement(sr_kit.LONG, 8.2)])])
    )
    sr.Manufacturer = "radcds"
    service, imaging = sr_service({"http://imaging/sr/1": sr})
    service.handle(instance_stored("i1", sr=sr, url="http://imaging/sr/1"))
    assert outbox(engine, ASSESSMENT_PRODUCED) == []
    ct_event = instance_stored("i2", sr=ct, url="http://imaging/ct/1")
    service.handle(ct_event)  # a CT image: not an SR class, not even fetched
    assert imaging.calls == ["http://imaging/sr/1"]


def test_sr_without_a_measurement_report_is_skipped(sr_service, engine):
    import pydicom
    from pydicom.data import get_testdata_file

    basic_sr = pydicom.dcmread(get_testdata_file("test-SR.dcm"))  # a Comprehensive SR, not TID 1500
    service, imaging = sr_service({"http://imaging/sr/2": basic_sr})
    service.handle(instance_stored("i3", sr=basic_sr, url="http://imaging/sr/2"))
    assert imaging.calls == ["http://imaging/sr/2"]
    assert outbox(engine, ASSESSMENT_PRODUCED) == []


def test_measurement_report_with_an_impossible_nodule_fails_for_the_dead_letter_topic(sr_service, engine, ct, sr_kit):
    from radcds_fusion.adapters.sr_nodules import MeasurementReportError

    group = sr_kit.planar_group(
        ct, "1.2.3.5", [sr_kit.measurement(sr_kit.LONG, 4.0), sr_kit.measurement(sr_kit.SHORT, 6.0)]
    )
    sr = sr_kit.roundtrip(sr_kit.sr_of(ct, [group]))
    service, _ = sr_service({"http://imaging/sr/3": sr})
    with pytest.raises(MeasurementReportError, match="short axis cannot exceed"):
        service.handle(instance_stored("i4", sr=sr, url="http://imaging/sr/3"))
    assert outbox(engine, ASSESSMENT_PRODUCED) == []


def order_received(event_id: str, *, code: str, status: str = "active", patient: str | None = None) -> DecodedEvent:
    from radcds.adapters.fhir.report import patient_id_for
    from radcds.domain.codes import Coding
    from radcds.domain.events import ORDER_RECEIVED, ImagingOrderReceived

    subject = patient or patient_id_for(StudyContext(patient_id="MRN-1", issuer_of_patient_id="HOSP"))
    order = ImagingOrderReceived(
        service_request_id="order-1",
        status=status,
        order_control="NW" if status == "active" else "CA",
        placer_order_number="PLC-1",
        patient_id=subject,
        procedure_code=Coding("http://www.ama-assn.org/go/cpt", code, ""),
    )
    return DecodedEvent(
        event_id, ORDER_RECEIVED.type, "/radcds/reporting", "order-1", None, ORDER_RECEIVED, order.to_payload()
    )


def test_hl7_order_for_a_chest_ct_closes_the_recommendation(service, engine, recommended):
    service.handle(order_received("o0", code="71250", status="revoked"))  # a cancelled order closes nothing
    service.handle(order_received("o1", code="70450"))  # CT head: not the follow-up
    service.handle(order_received("o2", code="71250", patient="someone-else"))
    assert len(outbox(engine, RECOMMENDATION_CHANGED)) == 1
    service.handle(order_received("o3", code="71250"))
    closed = outbox(engine, RECOMMENDATION_CHANGED)[-1]
    assert (closed["recommendationId"], closed["state"], closed["closedBy"]) == (
        recommended,
        "closed",
        "ServiceRequest/order-1",
    )
