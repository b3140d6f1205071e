"""CloudEvents binary-mode codec and payload schemas."""

from __future__ import annotations

import json

import pytest

from radcds.adapters.kafka.codec import InvalidEvent, decode, encode
from radcds.domain import codes
from radcds.domain.events import (
    FINDINGS_PRODUCED,
    INSTANCE_STORED,
    ImagingFindingsProduced,
    ImagingInstanceStored,
)
from radcds.domain.findings import ImageAnalysis, InstanceReference, Measurement, ModelIdentity, StudyContext

INSTANCE = InstanceReference("1.2.3", "1.2.3.4", "1.2.3.4.5", "1.2.840.10008.5.1.4.1.1.1")
CONTEXT = StudyContext(patient_id="PID1", accession_number="ACC1", modality="CR", study_date="20260101")


def _headers(message) -> list[tuple[str, bytes]]:
    return list(message.headers.items())


def test_instance_stored_round_trips_through_binary_mode_with_ce_headers():
    event = ImagingInstanceStored(INSTANCE, CONTEXT, "1.2.840.10008.1.2.1", "http://imaging/x", 100)
    message = encode(
        INSTANCE_STORED,
        event.to_payload(),
        event_id="e1",
        source="/radcds/imaging",
        subject=INSTANCE.study_instance_uid,
    )
    headers = dict(message.headers)
    assert headers["ce_type"] == INSTANCE_STORED.type.encode()
    assert headers["ce_id"] == b"e1"
    assert headers["ce_specversion"] == b"1.0"
    assert headers["content-type"] == b"application/json"
    assert message.key == INSTANCE.study_instance_uid
    decoded = decode(_headers(message), message.key.encode(), message.value)
    assert decoded.kind is INSTANCE_STORED
    assert ImagingInstanceStored.from_payload(decoded.payload) == event


def test_findings_round_trip_keeps_measurements_and_units():
    analysis = ImageAnalysis(
        INSTANCE,
        CONTEXT,
        ModelIdentity("pixel_statistics", "1"),
        measurements=(Measurement(codes.MEAN_PIXEL_VALUE, 12.5, "{pixel_value}"),),
    )
    message = encode(
        FINDINGS_PRODUCED,
        ImagingFindingsProduced(analysis).to_payload(),
        event_id="e2",
        source="/radcds/inference",
        subject="1.2.3",
    )
    decoded = decode(_headers(message), None, message.value)
    assert ImagingFindingsProduced.from_payload(decoded.payload).analysis == analysis


def test_encode_with_payload_breaking_schema_raises_invalid_event():
    payload = ImagingInstanceStored(INSTANCE, CONTEXT, "1.2.840.10008.1.2.1", "http://x/y", 1).to_payload()
    payload["instance"]["sopInstanceUid"] = "not a uid"
    with pytest.raises(InvalidEvent, match="instance/sopInstanceUid"):
        encode(INSTANCE_STORED, payload, event_id="e", source="/s", subject="1.2.3")


def test_decode_record_without_ce_type_raises_invalid_event():
    with pytest.raises(InvalidEvent, match="ce_type"):
        decode([("content-type", b"application/json")], None, b"{}")


def test_decode_record_with_unknown_type_raises_invalid_event():
    headers = [
        ("ce_type", b"org.example.other"),
        ("ce_id", b"1"),
        ("ce_source", b"/x"),
        ("ce_specversion", b"1.0"),
        ("content-type", b"application/json"),
    ]
    with pytest.raises(InvalidEvent, match="unknown event type"):
        decode(headers, None, b"{}")


def test_decode_record_with_non_json_value_raises_invalid_event():
    headers = [
        ("ce_type", FINDINGS_PRODUCED.type.encode()),
        ("ce_id", b"1"),
        ("ce_source", b"/x"),
        ("ce_specversion", b"1.0"),
        ("content-type", b"application/json"),
    ]
    with pytest.raises(InvalidEvent):
        decode(headers, None, b"{not json")


def test_decode_record_with_schema_invalid_payload_raises_invalid_event():
    headers = [
        ("ce_type", FINDINGS_PRODUCED.type.encode()),
        ("ce_id", b"1"),
        ("ce_source", b"/x"),
        ("ce_specversion", b"1.0"),
        ("content-type", b"application/json"),
    ]
    with pytest.raises(InvalidEvent, match="payload invalid"):
        decode(headers, None, json.dumps({"instance": {}}).encode())


@pytest.mark.parametrize("kind", [INSTANCE_STORED, FINDINGS_PRODUCED])
def test_payload_schemas_are_valid_draft_07_and_agree_with_a_second_validator(kind):
    # jsonschema is an independent implementation of the one fastjsonschema compiles.
    import jsonschema

    from radcds.adapters.kafka.codec import load_schema

    schema = load_schema(kind.schema)
    jsonschema.Draft7Validator.check_schema(schema)
    good = ImagingInstanceStored(INSTANCE, CONTEXT, "1.2.840.10008.1.2.1", "http://x/y", 1).to_payload()
    if kind is FINDINGS_PRODUCED:
        good = ImagingFindingsProduced(
            ImageAnalysis(INSTANCE, CONTEXT, ModelIdentity("m", "1"), not_analysed_reason="not analysed: x")
        ).to_payload()
    jsonschema.Draft7Validator(schema).validate(good)
    bad = json.loads(json.dumps(good))
    bad["instance"]["studyInstanceUid"] = "x y"
    assert not jsonschema.Draft7Validator(schema).is_valid(bad)
    with pytest.raises(InvalidEvent):
        encode(kind, bad, event_id="e", source="/s", subject="1.2.3")


def test_order_received_round_trips_keyed_by_service_request_and_refuses_unknown_order_control():
    from radcds.domain.events import ORDER_RECEIVED, ImagingOrderReceived

    event = ImagingOrderReceived("sr-1", "active", "NW", placer_order_number="PLC1", accession_number="ACC1")
    message = encode(ORDER_RECEIVED, event.to_payload(), event_id="e3", source="/radcds/reporting", subject="sr-1")
    decoded = decode(_headers(message), message.key.encode(), message.value)

    assert ORDER_RECEIVED.topic == "radcds.reporting.orders.v1"
    assert decoded.kind is ORDER_RECEIVED and message.key == "sr-1"
    assert ImagingOrderReceived.from_payload(decoded.payload) == event
    assert "fillerOrderNumber" not in decoded.payload  # empty optional fields are left out
    with pytest.raises(InvalidEvent):
        encode(ORDER_RECEIVED, event.to_payload() | {"orderControl": "ZZ"}, event_id="e", source="/s", subject="x")


def test_order_received_priority_round_trips_is_omitted_when_empty_and_refuses_hl7_codes():
    from radcds.domain.events import ORDER_RECEIVED, ImagingOrderReceived

    stat = ImagingOrderReceived("sr-1", "active", "XO", placer_order_number="PLC1", priority="stat")
    message = encode(ORDER_RECEIVED, stat.to_payload(), event_id="e4", source="/radcds/reporting", subject="sr-1")
    decoded = decode(_headers(message), message.key.encode(), message.value)
    assert decoded.payload["priority"] == "stat" and ImagingOrderReceived.from_payload(decoded.payload) == stat
    unset = ImagingOrderReceived("sr-1", "active", "NW", placer_order_number="PLC1")
    assert "priority" not in unset.to_payload()
    assert ImagingOrderReceived.from_payload(unset.to_payload()).priority == ""
    with pytest.raises(InvalidEvent):  # table 0027's S is not a FHIR request-priority
        encode(ORDER_RECEIVED, stat.to_payload() | {"priority": "S"}, event_id="e", source="/s", subject="x")


def test_critical_result_acknowledged_round_trips_on_the_reports_topic_and_needs_a_practitioner():
    from radcds.domain.events import CRITICAL_RESULT_ACKNOWLEDGED, CriticalResultAcknowledged

    event = CriticalResultAcknowledged(
        communication_id="comm-1",
        diagnostic_report_id="dr-1",
        study_instance_uid="1.2.3",
        acknowledged_by="PractitionerRole/ed-attending",
        acknowledged_at="2026-01-02T12:05:00.000Z",
    )
    message = encode(
        CRITICAL_RESULT_ACKNOWLEDGED, event.to_payload(), event_id="e5", source="/radcds/reporting", subject="1.2.3"
    )
    decoded = decode(_headers(message), message.key.encode(), message.value)

    assert CRITICAL_RESULT_ACKNOWLEDGED.type == "org.radcds.reporting.critical-result.acknowledged.v1"
    assert CRITICAL_RESULT_ACKNOWLEDGED.topic == "radcds.reporting.reports.v1"
    assert decoded.kind is CRITICAL_RESULT_ACKNOWLEDGED and message.key == "1.2.3"
    assert CriticalResultAcknowledged.from_payload(decoded.payload) == event
    for bad in ({"acknowledgedBy": "Patient/p1"}, {"acknowledgedAt": "yesterday"}, {"diagnosticReportId": ""}):
        with pytest.raises(InvalidEvent):
            encode(CRITICAL_RESULT_ACKNOWLEDGED, event.to_payload() | bad, event_id="e", source="/s", subject="x")
