"""The worklist's read model built from the events (SQLite): a study arrives, its findings, fusion's assessment,
reporting's report and critical-result states, and its order's priority, in any order; a redelivered event changes
nothing; unknown events are ignored; each change reaches the live stream once."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import create_engine

from radcds.adapters.db.engine import migrate
from radcds.adapters.kafka.codec import DecodedEvent, decode, encode
from radcds.domain import codes
from radcds.domain.events import (
    ASSESSMENT_PRODUCED,
    CRITICAL_RESULT_ESCALATED,
    FINDINGS_PRODUCED,
    ORDER_EVALUATED,
    ORDER_RECEIVED,
    REPORT_STORED,
    STUDY_AVAILABLE,
    CriticalResultEscalated,
    DiagnosticReportStored,
    EventKind,
    ImagingFindingsProduced,
    ImagingOrderReceived,
)
from radcds.domain.findings import ImageAnalysis, InstanceReference, Measurement, ModelIdentity, StudyContext
from radcds_worklist.adapters.db.live import live_since
from radcds_worklist.adapters.db.studies import WorklistRepository
from radcds_worklist.domain.worklist import CriticalState, WorklistFilter, finding_id
from radcds_worklist.handlers import CRITICAL_RESULT_ACKNOWLEDGED_TYPE, WorklistService

STUDY = "1.2.826.0.1.3680043.2.1125.7"
CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
NOW = datetime(2026, 12, 1, 12, tzinfo=UTC)


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def kafka_event(kind: EventKind, payload: dict[str, Any], event_id: str, subject: str = STUDY) -> DecodedEvent:
    """An event as it comes off Kafka (encoded, validated and decoded)."""
    msg = encode(kind, payload, event_id=event_id, source="/test", subject=subject)
    return decode(list(msg.headers.items()), None, msg.value)


def study_available(event_id: str = "s1", study: str = STUDY, *, accession: str = "ACC-7") -> DecodedEvent:
    imaging_study = {
        "resourceType": "ImagingStudy",
        "id": "is-1",
        "status": "available",
        "identifier": [
            {"system": "urn:dicom:uid", "value": f"urn:oid:{study}"},
            {"type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": "ACSN"}]},
             "value": accession},
        ],
        "modality": [{"system": "http://dicom.nema.org/resources/ontology/DCM", "code": "CT"},
                     {"system": "http://dicom.nema.org/resources/ontology/DCM", "code": "SR"}],
        "subject": {"reference": "Patient/p-1"},
        "started": "2026-12-01T11:50:00Z",
        "description": "CT HEAD WO CONTRAST",
        "series": [{"uid": study + ".1", "modality": {"code": "CT"},
                    "bodySite": {"system": codes.SNOMED_CT, "code": "69536005", "display": "Head"}}],
    }  # fmt: skip
    payload = {
        "studyInstanceUid": study,
        "version": 1,
        "isUpdate": False,
        "numberOfInstances": 1,
        "imagingStudy": imaging_study,
    }
    return kafka_event(STUDY_AVAILABLE, payload, event_id, study)


def findings(event_id: str = "f1", study: str = STUDY, *, critical: bool = False, model: str = "head_ct_hyperdensity"):
    analysis = ImageAnalysis(
        InstanceReference(study, study + ".1", study + ".1.1", CT_IMAGE_STORAGE),
        StudyContext(
            patient_id="MRN-7",
            accession_number="ACC-7",
            modality="CT",
            study_date="20261201",
            study_description="CT HEAD WO CONTRAST",
            patient_name="Doe^Jane",
        ),
        ModelIdentity(model, "1"),
        measurements=(Measurement(codes.HYPERDENSE_MEAN_HU, 62.0, codes.UNIT_HOUNSFIELD),),
        findings=(codes.INTRACRANIAL_HEMORRHAGE,) if critical else (),
        critical=critical,
    )
    return kafka_event(FINDINGS_PRODUCED, ImagingFindingsProduced(analysis).to_payload(), event_id, study)


def report_stored(event_id: str = "r1", study: str = STUDY, *, status: str = "preliminary", version: str = "1", **kw):
    report = DiagnosticReportStored("dr-7", study, status, ("obs-1",), version_id=version, **kw)
    return kafka_event(REPORT_STORED, report.to_payload(), event_id, study)


def assessment(event_id: str, version: int, *, critical: bool = False, study: str = STUDY) -> DecodedEvent:
    payload = {
        "studyInstanceUid": study,
        "patientId": "p-1",
        "version": version,
        "assessedAt": "2026-12-01T12:00:00Z",
        "comparisons": [],
        "guidelines": [],
        "recommendations": [],
        "critical": critical,
        "confidence": [],
        "contextUsed": [],
        "missingContext": [],
        "sections": {"comparison": [f"version {version}"], "recommendations": [], "missingContext": []},
    }
    return kafka_event(ASSESSMENT_PRODUCED, payload, event_id, study)


@pytest.fixture
def engine(tmp_path):
    engine = create_engine(f"sqlite:///{tmp_path / 'w.db'}")
    migrate(engine, chain="radcds_worklist.db")
    return engine


@pytest.fixture
def clock():
    return Clock(NOW)


@pytest.fixture
def service(engine, clock):
    return WorklistService(engine=engine, consumer_group="worklist-test", clock=clock)


def entry(engine, study: str = STUDY):
    with engine.connect() as conn:
        return WorklistRepository(conn).entry(study, now=NOW)


def test_an_available_study_is_on_the_list_with_what_its_imaging_study_says(service, engine):
    service.handle(study_available())
    e = entry(engine)
    assert (e.accession_number, e.modality, e.body_part, e.study_description, e.study_date) == (
        "ACC-7",
        "CT",
        "Head",
        "CT HEAD WO CONTRAST",
        "20261201",
    )
    assert e.received_at == NOW and e.order_priority == "routine" and e.report_status == ""
    (live,) = live_since(engine, 0)
    assert live.kind == "study" and live.data["entry"]["studyUid"] == STUDY


def test_findings_before_the_study_create_the_row_and_the_study_fills_in_the_rest(service, engine, clock):
    service.handle(findings(critical=True))
    e = entry(engine)
    assert (e.patient_name, e.patient_id, e.modality, e.body_part) == ("Doe, Jane", "MRN-7", "CT", "")
    assert e.critical and e.critical_since is not None
    assert e.findings.models == ("head_ct_hyperdensity 1",) and e.findings.codes == ("Intracranial hemorrhage",)
    clock.now = NOW + timedelta(minutes=1)
    service.handle(study_available())
    e = entry(engine)
    assert e.body_part == "Head" and e.patient_name == "Doe, Jane" and e.received_at == NOW
    assert [ev.kind for ev in live_since(engine, 0)] == ["study", "finding", "critical", "study"]


def test_a_redelivered_event_changes_nothing_and_is_announced_once(service, engine):
    event = findings(critical=True)
    service.handle(event)
    service.handle(event)
    service.handle(findings("f1-again", critical=True))  # the same analysis, another event id
    with engine.connect() as conn:
        rows = WorklistRepository(conn).findings(STUDY)
    assert [r["finding_id"] for r in rows] == [finding_id(STUDY, STUDY + ".1", "head_ct_hyperdensity")]
    assert [ev.kind for ev in live_since(engine, 0)] == ["study", "finding", "critical"]


def test_report_stored_sets_report_and_an_older_version_changes_nothing(service, engine):
    service.handle(study_available())
    service.handle(report_stored("r2", status="final", version="2", results_interpreter="Practitioner/dr-ada"))
    service.handle(report_stored("r1", status="preliminary", version="1"))
    e = entry(engine)
    assert (e.report_id, e.report_status, e.report_version, e.results_interpreter) == (
        "dr-7",
        "final",
        "2",
        "Practitioner/dr-ada",
    )
    with engine.connect() as conn:
        assert WorklistRepository(conn).entries(WorklistFilter(), now=NOW) == []  # signed: off the default list


def test_critical_result_goes_notified_escalated_acknowledged_and_never_back(service, engine):
    service.handle(report_stored(critical=True, communication_ids=("comm-1",)))
    assert entry(engine).critical_state is CriticalState.NOTIFIED and entry(engine).critical
    escalated = CriticalResultEscalated(
        "comm-1", "comm-2", "dr-7", STUDY, "Practitioner/backup", "2026-12-01T12:00:00Z", "2026-12-01T12:30:00Z"
    )
    service.handle(kafka_event(CRITICAL_RESULT_ESCALATED, escalated.to_payload(), "esc-1"))
    assert entry(engine).critical_state is CriticalState.ESCALATED
    # reporting's acknowledgement, declared in the kernel by another change: built by hand, as the consumer
    # will decode it once its kind is registered
    ack_kind = EventKind(CRITICAL_RESULT_ACKNOWLEDGED_TYPE, REPORT_STORED.topic, "critical-result-acknowledged.v1.json")
    ack = {
        "communicationId": "comm-1",
        "diagnosticReportId": "dr-7",
        "studyInstanceUid": STUDY,
        "acknowledgedBy": "Practitioner/dr-ed",
        "acknowledgedAt": "2026-12-01T12:40:00Z",
    }
    service.handle(DecodedEvent("ack-1", ack_kind.type, "/radcds/reporting", STUDY, None, ack_kind, ack))
    service.handle(report_stored("r9", critical=True, communication_ids=("comm-1",), version="1"))
    assert entry(engine).critical_state is CriticalState.ACKNOWLEDGED
    kinds = [ev.kind for ev in live_since(engine, 0)]
    assert kinds == ["study", "report", "critical", "critical", "critical"]


def test_an_order_before_its_study_gives_the_study_its_priority(service, engine):
    order = ImagingOrderReceived("sr-7", "active", "NW", accession_number="ACC-7")
    payload = order.to_payload() | {"priority": "stat"}  # the optional field added alongside, read defensively
    kind = ORDER_RECEIVED
    event = DecodedEvent("o1", kind.type, "/radcds/reporting", "sr-7", None, kind, payload)
    service.handle(event)
    assert entry(engine) is None  # an order alone is no study to read
    service.handle(study_available())
    # until ImagingOrderReceived declares ``priority`` the field is dropped on decoding and the order is routine
    declared = "priority" in ImagingOrderReceived.__dataclass_fields__
    assert entry(engine).order_priority == ("stat" if declared else "routine")
    with engine.connect() as conn:
        assert WorklistRepository(conn).study(STUDY)["service_request_id"] == "sr-7"


def test_an_order_after_its_study_is_tied_to_it_and_a_cancel_makes_it_routine(service, engine):
    service.handle(study_available())

    order = ImagingOrderReceived("sr-7", "active", "NW", accession_number="ACC-7")
    service.handle(kafka_event(ORDER_RECEIVED, order.to_payload(), "o1", "sr-7"))
    with engine.connect() as conn:
        assert WorklistRepository(conn).study(STUDY)["service_request_id"] == "sr-7"
    cancel = ImagingOrderReceived("sr-7", "revoked", "CA", accession_number="ACC-7")
    service.handle(kafka_event(ORDER_RECEIVED, cancel.to_payload(), "o2", "sr-7"))
    assert entry(engine).order_priority == "routine"


def test_newest_assessment_is_kept_and_a_critical_one_flags_the_study(service, engine):
    service.handle(assessment("a2", 2, critical=True))
    service.handle(assessment("a1", 1))
    with engine.connect() as conn:
        row = WorklistRepository(conn).study(STUDY)
    assert row["assessment"]["version"] == 2 and row["critical"]


def test_unknown_events_are_ignored(service, engine):
    kind = ORDER_EVALUATED
    service.handle(DecodedEvent("x", kind.type, "/radcds/referral", "s", None, kind, {}))
    other = EventKind("org.example.unknown.v1", "t", "none.json")
    service.handle(DecodedEvent("y", other.type, "/x", "s", None, other, {}))
    assert live_since(engine, 0) == []
