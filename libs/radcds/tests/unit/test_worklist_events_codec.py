"""The worklist's events (issue #13) through the CloudEvents binary-mode codec: feedback on an AI finding, keyed by
the study, and a model alert, keyed by the model name; payloads that break their schema are refused."""

from __future__ import annotations

import pytest

from radcds.adapters.kafka.codec import InvalidEvent, decode, encode
from radcds.domain.events import (
    EVENT_KINDS,
    FINDING_FEEDBACK_RECORDED,
    MODEL_ALERT_RAISED,
    SOURCE_WORKLIST,
    FindingFeedbackRecorded,
    ModelAlertRaised,
)
from radcds.domain.findings import ModelIdentity

STUDY = "1.2.826.0.1.3680043.8.498.1"
MODEL = ModelIdentity("chest_ctr", "1")


def _rejection(**changes) -> FindingFeedbackRecorded:
    fields = {
        "feedback_id": "0f6c3e2a-9b1d-5e47-8a3c-2d4e6f8a0b1c",
        "study_instance_uid": STUDY,
        "finding_id": "f-1",
        "model": MODEL,
        "action": "rejected",
        "practitioner": "Practitioner/dr-ada",
        "recorded_at": "2026-03-01T10:00:00+00:00",
        "finding_code": "8186001",
        "reason_code": "other",
        "reason_text": "pacemaker lead taken for the heart border",
        "diagnostic_report_id": "3a2b1c0d-0000-5000-8000-000000000001",
    }
    fields.update(changes)
    return FindingFeedbackRecorded(**fields)


def _round_trip(kind, payload, subject):
    message = encode(kind, payload, event_id="e-1", source=SOURCE_WORKLIST, subject=subject)
    assert message.key == subject
    return decode(list(message.headers.items()), message.key.encode(), message.value)


def test_rejection_with_every_field_round_trips_keyed_by_the_study():
    event = _rejection()
    decoded = _round_trip(FINDING_FEEDBACK_RECORDED, event.to_payload(), STUDY)
    assert decoded.kind is FINDING_FEEDBACK_RECORDED
    assert decoded.source == SOURCE_WORKLIST
    assert FindingFeedbackRecorded.from_payload(decoded.payload) == event


def test_acceptance_of_the_whole_analysis_leaves_the_optional_fields_out_and_decodes_them_empty():
    event = _rejection(action="accepted", finding_code="", reason_code="", reason_text="", diagnostic_report_id="")
    payload = event.to_payload()
    assert set(payload) == {
        "feedbackId",
        "studyInstanceUid",
        "findingId",
        "model",
        "action",
        "practitioner",
        "recordedAt",
    }
    decoded = _round_trip(FINDING_FEEDBACK_RECORDED, payload, STUDY)
    assert FindingFeedbackRecorded.from_payload(decoded.payload) == event


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("action", "ignored"),
        ("reasonCode", "dislike"),
        ("reasonText", "x" * 501),
        ("practitioner", "Patient/p1"),
        ("recordedAt", "yesterday"),
    ],
)
def test_feedback_payload_breaking_its_schema_raises_invalid_event(key, value):
    payload = _rejection().to_payload() | {key: value}
    with pytest.raises(InvalidEvent):
        encode(FINDING_FEEDBACK_RECORDED, payload, event_id="e", source=SOURCE_WORKLIST, subject=STUDY)


ALERT = ModelAlertRaised(
    alert_id="a-1",
    model=MODEL,
    metric="rejection-rate",
    value=0.4,
    threshold=0.3,
    window_studies=20,
    raised_at="2026-03-01T10:00:00+00:00",
)


def test_model_alert_round_trips_keyed_by_the_model_name():
    decoded = _round_trip(MODEL_ALERT_RAISED, ALERT.to_payload(), MODEL.name)
    assert decoded.kind is MODEL_ALERT_RAISED
    assert ModelAlertRaised.from_payload(decoded.payload) == ALERT


def test_model_alert_over_an_empty_window_raises_invalid_event():
    payload = ALERT.to_payload() | {"windowStudies": 0}
    with pytest.raises(InvalidEvent, match="windowStudies"):
        encode(MODEL_ALERT_RAISED, payload, event_id="e", source=SOURCE_WORKLIST, subject=MODEL.name)


def test_worklist_kinds_have_their_own_topics():
    assert EVENT_KINDS[FINDING_FEEDBACK_RECORDED.type].topic == "radcds.worklist.feedback.v1"
    assert EVENT_KINDS[MODEL_ALERT_RAISED.type].topic == "radcds.worklist.alerts.v1"
