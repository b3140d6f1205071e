"""Feedback on AI findings: the decision's rules (a rejection needs a coded reason, ``other`` needs words), and the
FeedbackDesk that records each decision once, as a row with its FHIR Observation, an event and a live change."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from fhir.resources.R4B.observation import Observation
from sqlalchemy import create_engine, insert, select, update

from radcds.adapters.db.engine import migrate
from radcds.adapters.db.tables import event_outbox
from radcds.domain import codes
from radcds.domain.events import FINDING_FEEDBACK_RECORDED, ImagingFindingsProduced
from radcds.domain.findings import ImageAnalysis, InstanceReference, Measurement, ModelIdentity, StudyContext
from radcds.runtime.metrics import ServiceMetrics
from radcds_worklist.adapters.db.live import live_since
from radcds_worklist.db.tables import finding_feedback, model_alerts, worklist_findings, worklist_studies
from radcds_worklist.domain.access import Forbidden, Role, User
from radcds_worklist.domain.feedback import (
    REASON_TEXT_MAX,
    Action,
    AiFinding,
    FindingDecision,
    InvalidFeedback,
    RejectionReason,
)
from radcds_worklist.domain.monitoring import Acquisition
from radcds_worklist.domain.worklist import finding_id as analysis_finding_id
from radcds_worklist.use_cases.feedback import FeedbackDesk, FindingNotFound
from radcds_worklist.use_cases.monitoring import MonitoringDesk

STUDY = "1.2.826.0.1.3680043.8.498.20"
MODEL = ModelIdentity("chest_ctr", "1")
ADA = User("issuer|ada", "Dr Ada Lovelace", frozenset({Role.RADIOLOGIST}), "Practitioner/dr-ada")
FINDING = AiFinding("f-1", STUDY, MODEL, "8186001", "Cardiomegaly")


# ---- the decision (pure) ---------------------------------------------------------------------------------------


def test_the_five_rejection_reasons_have_their_codes_and_only_other_needs_text():
    assert [r.value for r in RejectionReason] == [
        "false-positive",
        "wrong-location",
        "wrong-measurement",
        "artefact-or-device",
        "other",
    ]
    assert [r.needs_text for r in RejectionReason] == [False, False, False, False, True]
    assert RejectionReason.ARTEFACT_OR_DEVICE.display == "Artefact or device"


def test_rejection_without_a_reason_is_invalid():
    with pytest.raises(InvalidFeedback, match="needs a reason"):
        FindingDecision(FINDING, Action.REJECTED, ADA)


@pytest.mark.parametrize("text", ["", "   "])
def test_rejection_for_other_reason_without_words_is_invalid(text):
    with pytest.raises(InvalidFeedback, match="needs a text"):
        FindingDecision(FINDING, Action.REJECTED, ADA, RejectionReason.OTHER, text)


def test_reason_text_over_the_limit_is_invalid_and_at_the_limit_is_kept_stripped():
    with pytest.raises(InvalidFeedback, match="at most"):
        FindingDecision(FINDING, Action.REJECTED, ADA, RejectionReason.OTHER, "x" * (REASON_TEXT_MAX + 1))
    decision = FindingDecision(FINDING, Action.REJECTED, ADA, RejectionReason.OTHER, f"  {'x' * REASON_TEXT_MAX}  ")
    assert decision.reason_text == "x" * REASON_TEXT_MAX


@pytest.mark.parametrize("action", [Action.ACCEPTED, Action.EDITED])
def test_acceptance_or_edit_with_a_rejection_reason_is_invalid(action):
    with pytest.raises(InvalidFeedback, match="no rejection reason"):
        FindingDecision(FINDING, action, ADA, RejectionReason.FALSE_POSITIVE)


def test_a_finding_without_id_or_study_is_invalid():
    with pytest.raises(InvalidFeedback):
        AiFinding("", STUDY, MODEL)
    with pytest.raises(InvalidFeedback):
        AiFinding("f-1", "", MODEL)


def test_the_same_named_request_always_gets_the_same_feedback_id_and_an_unnamed_one_none():
    first = FindingDecision(FINDING, Action.ACCEPTED, ADA, request_id="req-1")
    again = FindingDecision(FINDING, Action.ACCEPTED, ADA, request_id="req-1")
    other = FindingDecision(FINDING, Action.ACCEPTED, ADA, request_id="req-2")
    assert first.deterministic_id() == again.deterministic_id() != other.deterministic_id()
    assert FindingDecision(FINDING, Action.ACCEPTED, ADA).deterministic_id() is None


def test_analysis_finding_id_is_deterministic_per_study_series_and_model():
    assert analysis_finding_id("1.2", "1.2.3", "chest_ctr") == analysis_finding_id("1.2", "1.2.3", "chest_ctr")
    assert analysis_finding_id("1.2", "1.2.3", "chest_ctr") != analysis_finding_id("1.2", "1.2.4", "chest_ctr")


# ---- the desk over the database ---------------------------------------------------------------------------------

VIEWER = User("issuer|vi", "Viewer", frozenset({Role.VIEWER}), "Practitioner/vi")
NOW = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)


class NoImaging:
    def acquisition(self, study: str, series: str, instance: str) -> Acquisition:
        raise LookupError("not needed here")


@pytest.fixture
def engine(tmp_path):
    engine = create_engine(f"sqlite:///{tmp_path / 'w.db'}")
    migrate(engine, chain="radcds_worklist.db")
    return engine


def _store_finding(engine, n: int, *, study: str = STUDY, not_analysed: str = "") -> str:
    series = f"{study}.{n}"
    instance = InstanceReference(study, series, series + ".1", "1.2.840.10008.5.1.4.1.1.1")
    measurements = () if not_analysed else (Measurement(codes.CARDIOTHORACIC_RATIO, 0.56, codes.UNIT_RATIO),)
    analysis = ImageAnalysis(
        instance,
        StudyContext(patient_id="MRN7", modality="CR"),
        MODEL,
        measurements=measurements,
        findings=() if not_analysed else (codes.CARDIOMEGALY,),
        not_analysed_reason=not_analysed,
    )
    finding_id = analysis_finding_id(study, series, MODEL.name)
    with engine.begin() as conn:
        conn.execute(
            insert(worklist_findings).values(
                finding_id=finding_id,
                study_uid=study,
                series_uid=series,
                sop_instance_uid=series + ".1",
                model_name=MODEL.name,
                model_version=MODEL.version,
                critical=False,
                not_analysed_reason=not_analysed,
                data=ImagingFindingsProduced(analysis).to_payload(),
                produced_at=NOW,
            )
        )
    return finding_id


def _outbox(engine) -> list[dict]:
    with engine.connect() as conn:
        rows = conn.execute(select(event_outbox).where(event_outbox.c.event_type == FINDING_FEEDBACK_RECORDED.type))
        return [json.loads(r.payload) | {"_subject": r.subject} for r in rows]


def test_a_rejection_is_one_row_with_its_observation_one_event_keyed_by_study_and_one_live_change(engine):
    desk = FeedbackDesk(engine=engine, clock=lambda: NOW)
    finding_id = _store_finding(engine, 1)
    finding = desk.finding(finding_id, "8186001")
    assert finding.display == "Cardiomegaly" and finding.patient_ref.startswith("Patient/")
    decision = FindingDecision(finding, Action.REJECTED, ADA, RejectionReason.ARTEFACT_OR_DEVICE, report_id="r-1")

    feedback_id = desk.record(decision)

    with engine.connect() as conn:
        row = conn.execute(select(finding_feedback)).one()
    assert (row.feedback_id, row.action, row.reason_code, row.practitioner) == (
        feedback_id,
        "rejected",
        "artefact-or-device",
        "Practitioner/dr-ada",
    )
    observation = Observation.model_validate(row.resource)
    assert observation.focus[0].reference.startswith("Observation/")  # reporting's Observation of the finding
    (event,) = _outbox(engine)
    assert (
        event["_subject"] == STUDY and event["findingCode"] == "8186001" and event["reasonCode"] == "artefact-or-device"
    )
    assert event["diagnosticReportId"] == "r-1" and event["model"] == {"name": "chest_ctr", "version": "1"}
    (live,) = live_since(engine, 0)
    assert live.kind == "feedback" and live.data["action"] == "rejected" and "MRN7" not in json.dumps(live.data)


def test_the_same_request_repeated_records_one_decision(engine):
    desk = FeedbackDesk(engine=engine)
    finding = desk.finding(_store_finding(engine, 1))
    named = FindingDecision(finding, Action.ACCEPTED, ADA, request_id="form-1")
    assert desk.record(named) == desk.record(named)
    unnamed = FindingDecision(finding, Action.REJECTED, ADA, RejectionReason.OTHER, "lead")
    assert desk.record(unnamed) == desk.record(
        FindingDecision(finding, Action.REJECTED, ADA, RejectionReason.OTHER, "lead")
    )
    assert len(_outbox(engine)) == 2


def test_a_viewer_may_not_record_a_decision_and_an_unknown_finding_is_not_found(engine):
    desk = FeedbackDesk(engine=engine)
    finding = desk.finding(_store_finding(engine, 1))
    with pytest.raises(Forbidden):
        desk.record(FindingDecision(finding, Action.ACCEPTED, VIEWER))
    with pytest.raises(FindingNotFound):
        desk.finding("no-such-finding")
    with pytest.raises(FindingNotFound):
        desk.finding(finding.finding_id, "no-such-code")
    forged = AiFinding(finding.finding_id, STUDY, ModelIdentity("other_model", "9"))
    with pytest.raises(FindingNotFound):
        desk.record(FindingDecision(forged, Action.ACCEPTED, ADA))
    assert _outbox(engine) == []


def test_accepting_the_draft_accepts_each_analysed_undecided_finding_once(engine):
    desk = FeedbackDesk(engine=engine)
    rejected = _store_finding(engine, 1)
    accepted = _store_finding(engine, 2)
    _store_finding(engine, 3, not_analysed="not a PA view")
    desk.record(FindingDecision(desk.finding(rejected), Action.REJECTED, ADA, RejectionReason.FALSE_POSITIVE))

    ids = desk.record_accepted_for_study(study_uid=STUDY, user=ADA, report_id="r-1")
    again = desk.record_accepted_for_study(study_uid=STUDY, user=ADA, report_id="r-1")

    assert len(ids) == 1 and again == []
    with engine.connect() as conn:
        rows = conn.execute(select(finding_feedback.c.finding_id, finding_feedback.c.action)).all()
    assert sorted(rows) == sorted([(rejected, "rejected"), (accepted, "accepted")])
    with pytest.raises(Forbidden):
        desk.record_accepted_for_study(study_uid=STUDY, user=VIEWER, report_id="r-1")


def test_a_rejection_crossing_the_rejection_threshold_raises_an_alert_in_the_same_transaction(engine):
    metrics = ServiceMetrics()
    monitoring = MonitoringDesk(engine=engine, acquisitions=NoImaging(), metrics=metrics, declared={}, min_studies=1)
    desk = FeedbackDesk(engine=engine, monitoring=monitoring)
    with engine.begin() as conn:
        conn.execute(insert(worklist_studies).values(study_uid=STUDY, received_at=NOW, updated_at=NOW))
    finding = desk.finding(_store_finding(engine, 1))
    desk.record(FindingDecision(finding, Action.REJECTED, ADA, RejectionReason.FALSE_POSITIVE))
    with engine.begin() as conn:
        conn.execute(update(worklist_studies).values(report_status="final"))
    with engine.connect() as conn:
        metrics_raised = sorted(r.metric for r in conn.execute(select(model_alerts)).all())
    assert metrics_raised == ["rejection-rate"]  # the study was not signed yet: no disagreement to measure
    labels = {"model": MODEL.name, "version": MODEL.version, "metric": "rejection-rate"}
    assert metrics.registry.get_sample_value("radcds_worklist_model_alerts_total", labels) == 1.0
    assert monitoring.model_monitoring(MODEL).recent.agreement.disagreement_rate == 1.0  # signed now
