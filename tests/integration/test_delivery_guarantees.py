"""At-least-once delivery: dead-lettering of poison records and SIGKILL of a consumer mid-stream."""

from __future__ import annotations

import os
import signal
import uuid

import psycopg
import pytest

from radcds.adapters.kafka.codec import encode
from radcds.adapters.kafka.consumer import DLT_ERROR, DLT_ERROR_CLASS, DLT_GROUP, DLT_OFFSET, DLT_PARTITION, DLT_TOPIC
from radcds.domain import codes
from radcds.domain.events import FINDINGS_PRODUCED, REPORT_STORED, ImagingFindingsProduced, dead_letter_topic
from radcds.domain.findings import ImageAnalysis, InstanceReference, Measurement, ModelIdentity, StudyContext
from radcds_devstack import processes
from radcds_devstack.demo import event_trail

from .helpers import eventually, fhir, producer, read_topic

pytestmark = [pytest.mark.integration, pytest.mark.kafka, pytest.mark.postgres]


def _study_uid() -> str:
    return f"2.25.{uuid.uuid4().int}"


def _findings_message(study_uid: str, event_id: str):
    analysis = ImageAnalysis(
        InstanceReference(study_uid, study_uid + ".1", study_uid + ".1.1", "1.2.840.10008.5.1.4.1.1.2"),
        StudyContext(patient_id="ITEST", modality="CT", study_date="20260101"),
        ModelIdentity("pixel_statistics", "1"),
        measurements=(Measurement(codes.MEAN_PIXEL_VALUE, 42.0, codes.UNIT_HOUNSFIELD),),
    )
    return encode(
        FINDINGS_PRODUCED,
        ImagingFindingsProduced(analysis).to_payload(),
        event_id=event_id,
        source="/itest",
        subject=study_uid,
    )


def _send(p, message) -> None:
    key = message.key.encode() if isinstance(message.key, str) else message.key
    p.send(FINDINGS_PRODUCED.topic, key=key, value=message.value, headers=list(message.headers.items())).get(30)


def test_malformed_event_lands_in_dead_letter_topic_and_later_events_are_processed(stack):
    study_uid = _study_uid()
    p = producer(stack)
    bad_headers = [
        ("ce_type", FINDINGS_PRODUCED.type.encode()),
        ("ce_id", b"poison-1"),
        ("ce_source", b"/itest"),
        ("ce_specversion", b"1.0"),
        ("ce_subject", study_uid.encode()),
        ("content-type", b"application/json"),
    ]
    meta = p.send(
        FINDINGS_PRODUCED.topic, key=study_uid.encode(), value=b'{"instance": "truncated', headers=bad_headers
    ).get(30)
    _send(p, _findings_message(study_uid, str(uuid.uuid4())))  # same key: same partition, after the poison
    p.close()

    trail = event_trail(stack, study_uid, until_types={REPORT_STORED.type}, timeout_s=120)
    assert trail[-1]["payload"]["studyInstanceUid"] == study_uid

    groups = [b"radcds-fusion", b"radcds-reporting", b"radcds-worklist"]

    def dead_lettered() -> list:  # type: ignore[type-arg]
        found = [
            r
            for r in read_topic(stack, dead_letter_topic(FINDINGS_PRODUCED.topic))
            if dict(r.headers).get("ce_id") == b"poison-1"
        ]
        return found if len(found) >= len(groups) else []

    poisoned = eventually(dead_lettered, timeout_s=60, what="the poison in every group's dead letters")
    # Each consumer group of the topic (reporting, fusion, worklist) dead-letters the record it cannot read, once.
    assert sorted(dict(r.headers)[DLT_GROUP] for r in poisoned) == groups
    dlt = [r for r in poisoned if dict(r.headers)[DLT_GROUP] == b"radcds-reporting"]
    assert len(dlt) == 1
    headers = dict(dlt[0].headers)
    assert headers[DLT_TOPIC] == FINDINGS_PRODUCED.topic.encode()
    assert headers[DLT_PARTITION] == str(meta.partition).encode()
    assert headers[DLT_OFFSET] == str(meta.offset).encode()
    assert headers[DLT_ERROR_CLASS] == b"InvalidEvent"
    assert headers[DLT_ERROR]
    assert dlt[0].value == b'{"instance": "truncated'


def test_sigkill_of_reporting_mid_stream_loses_no_event_and_duplicates_no_report(stack):
    before = fhir(stack, "DiagnosticReport", _count=0)["total"]
    studies = [_study_uid() for _ in range(150)]
    event_ids = [str(uuid.uuid4()) for _ in studies]
    p = producer(stack)
    for study, event_id in zip(studies, event_ids, strict=True):
        _send(p, _findings_message(study, event_id))
    for study, event_id in list(zip(studies, event_ids, strict=True))[:20]:  # redelivered duplicates
        _send(p, _findings_message(study, event_id))
    p.flush()
    p.close()

    eventually(
        lambda: fhir(stack, "DiagnosticReport", _count=0)["total"] >= before + 10,
        timeout_s=120,
        interval_s=0.05,
        what="first reports",
    )
    pid = processes.pid_of("reporting", stack.run_dir)
    assert pid is not None
    os.killpg(pid, signal.SIGKILL)
    processes.stop("reporting", stack.run_dir, timeout_s=5)
    assert fhir_total_or_none(stack) is None  # really down
    stack.start_service("reporting")
    stack.wait_service("reporting")

    eventually(
        lambda: fhir(stack, "DiagnosticReport", _count=0)["total"] >= before + len(studies),
        timeout_s=180,
        what="every report",
    )
    assert fhir(stack, "DiagnosticReport", _count=0)["total"] == before + len(studies)

    dsn = f"postgresql://postgres@{stack.host}:{stack.ports.postgres}/radcds_reporting"
    with psycopg.connect(dsn) as conn:
        rows = conn.execute(
            "SELECT study_instance_uid, count(*) FROM fhir_resources WHERE resource_type = 'DiagnosticReport' "
            "AND study_instance_uid = ANY(%s) GROUP BY study_instance_uid",
            (studies,),
        ).fetchall()
        processed = conn.execute(
            "SELECT count(*) FROM processed_events WHERE event_id = ANY(%s)", (event_ids,)
        ).fetchone()[0]
    assert len(rows) == len(studies)
    assert all(count == 1 for _, count in rows)
    assert processed == len(studies)


def fhir_total_or_none(stack) -> int | None:
    try:
        return int(fhir(stack, "DiagnosticReport", _count=0)["total"])
    except Exception:
        return None
