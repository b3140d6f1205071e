"""fusion's assessment fills the report's comparison, recommendations and missing-context sections
in the DiagnosticReport (conclusion, presentedForm) and the ORU^R01, whichever arrives first, and the
report never waits for it (issue #11)."""

from __future__ import annotations

from typing import Any

import hl7
from sqlalchemy import Engine, select

from radcds.adapters.db.outbox import OutboxRelay
from radcds.adapters.fhir.report import diagnostic_report_id, imaging_study_id
from radcds.adapters.kafka.codec import DecodedEvent, decode, encode
from radcds.domain.events import ASSESSMENT_PRODUCED, REPORT_STORED, STUDY_AVAILABLE
from radcds_devstack.testing import RecordingPublisher, html_section, presented_html
from radcds_reporting.adapters.assessments import NO_MISSING_CONTEXT, PENDING
from radcds_reporting.adapters.hl7v2.config import MLLPDestination
from radcds_reporting.adapters.repository import FhirRepository
from radcds_reporting.db.tables import hl7_outbound_messages
from radcds_reporting.handlers import ReportingService
from radcds_reporting.use_cases.oru import ResultOutbox
from radcds_reporting.use_cases.signoff import ReportSignOff

from .conftest import STUDY, Clock, findings_event

DEST = MLLPDestination(host="127.0.0.1", port=6671)
COMPARISON = "Solid nodule, right upper lobe 8.0 mm, previously 6.0 mm on 2025-06-01: increased by 2.0 mm in 183 days."
RECOMMENDATION = "fleischner-2017 2017: Solid nodule 6-8 mm: CT at 6-12 months. Due by 2026-07-02."
MISSING = "Smoking history: the EHR did not answer in time."


def assessment_event(
    event_id: str,
    *,
    version: int = 1,
    study: str = STUDY,
    comparison: tuple[str, ...] = (COMPARISON,),
    missing: tuple[str, ...] = (MISSING,),
    critical: bool = False,
    confidence: list[dict[str, Any]] | None = None,
) -> DecodedEvent:
    """An ``assessment.produced`` event as fusion publishes it (validated by its JSON Schema)."""
    payload: dict[str, Any] = {
        "studyInstanceUid": study,
        "patientId": "patient-1",
        "version": version,
        "assessedAt": "2026-01-02T12:00:00Z",
        "comparisons": [{"code": "RID50149", "change": "increased", "text": COMPARISON}],
        "guidelines": [],
        "recommendations": [],
        "critical": critical,
        "confidence": confidence or [],
        "contextUsed": ["Patient age 67"],
        "missingContext": list(missing),
        "sections": {
            "comparison": list(comparison),
            "recommendations": [RECOMMENDATION],
            "missingContext": list(missing),
        },
    }
    if critical:
        payload["criticalReasons"] = ["Intracranial hemorrhage candidate, new since the prior head CT."]
    msg = encode(ASSESSMENT_PRODUCED, payload, event_id=event_id, source="/radcds/fusion", subject=study)
    return decode(list(msg.headers.items()), None, msg.value)


def study_available_event(event_id: str, *, study: str = STUDY) -> DecodedEvent:
    payload = {
        "studyInstanceUid": study,
        "version": 1,
        "isUpdate": False,
        "numberOfInstances": 1,
        "imagingStudy": {
            "resourceType": "ImagingStudy",
            "id": imaging_study_id(study),
            "status": "available",
            "subject": {"reference": "Patient/patient-1"},
            "description": "CT CHEST WO CONTRAST",
            "identifier": [{"system": "urn:dicom:uid", "value": f"urn:oid:{study}"}],
        },
    }
    msg = encode(STUDY_AVAILABLE, payload, event_id=event_id, source="/radcds/imaging", subject=study)
    return decode(list(msg.headers.items()), None, msg.value)


def _service(engine: Engine, clock: Clock) -> tuple[ReportingService, ResultOutbox]:
    results = ResultOutbox(engine=engine, destinations=[DEST], clock=clock)
    service = ReportingService(
        engine=engine,
        relay=OutboxRelay(engine, RecordingPublisher(), name="reporting-outbox"),
        consumer_group="g",
        clock=clock,
        results=results,
    )
    return service, results


def _report(engine: Engine, study: str = STUDY) -> dict[str, Any] | None:
    with engine.connect() as conn:
        return FhirRepository(conn).read("DiagnosticReport", diagnostic_report_id(study))


def _orus(engine: Engine) -> list[hl7.Message]:
    with engine.connect() as conn:
        rows = conn.execute(select(hl7_outbound_messages.c.payload).order_by(hl7_outbound_messages.c.id)).scalars()
        return [hl7.parse(p) for p in rows]


def _section_text(message: hl7.Message, loinc: str) -> list[str]:
    return [str(obx[5]) for obx in message.segments("OBX") if str(obx[3]).startswith(loinc + "^")]


def _report_events(engine: Engine) -> int:
    from radcds.adapters.db.tables import event_outbox

    with engine.connect() as conn:
        return len(
            conn.execute(select(event_outbox.c.event_id).where(event_outbox.c.event_type == REPORT_STORED.type)).all()
        )


def test_report_written_before_the_assessment_says_its_context_sections_are_pending(engine, clock):
    service, _ = _service(engine, clock)
    service.handle(findings_event("f1", STUDY + ".1.1"))

    dr = _report(engine)
    assert dr is not None and dr["meta"]["versionId"] == "1"
    html = presented_html(dr)
    for key in ("comparison", "recommendations", "missing-context"):
        assert PENDING in html_section(html, key)
    (oru,) = _orus(engine)
    assert _section_text(oru, "18834-2") == [PENDING]  # comparison
    assert _section_text(oru, "18783-1") == [PENDING]  # recommendation
    assert "Comparison:" not in dr["conclusion"]


def test_assessment_arriving_after_the_report_writes_a_new_version_with_the_sections_and_a_new_oru(engine, clock):
    service, _ = _service(engine, clock)
    service.handle(findings_event("f1", STUDY + ".1.1"))
    clock.advance(seconds=5)
    service.handle(assessment_event("a1"))

    dr = _report(engine)
    assert dr is not None and dr["meta"]["versionId"] == "2" and dr["status"] == "preliminary"
    assert f"Comparison: {COMPARISON}" in dr["conclusion"]
    assert f"Recommendation: {RECOMMENDATION}" in dr["conclusion"]
    assert f"Missing clinical context: {MISSING}" in dr["conclusion"]
    html = presented_html(dr)
    assert "previously 6.0 mm on 2025-06-01: increased by 2.0 mm" in html_section(html, "comparison")
    assert "CT at 6-12 months. Due by 2026-07-02." in html_section(html, "recommendations")
    assert "did not answer in time" in html_section(html, "missing-context")
    assert PENDING not in html
    first, second = _orus(engine)
    assert str(second.segment("OBR")[25]) == "P"
    assert _section_text(second, "18834-2") == [COMPARISON]
    assert _section_text(second, "18783-1") == [RECOMMENDATION]
    assert [str(obx[5]) for obx in second.segments("OBX") if "missing-context" in str(obx[3])] == [MISSING]
    assert str(first.segment("MSH")[10]) != str(second.segment("MSH")[10])
    assert _report_events(engine) == 2


def test_assessment_arriving_first_is_in_the_first_report_the_findings_write(engine, clock):
    service, _ = _service(engine, clock)
    service.handle(assessment_event("a1", missing=()))
    assert _report(engine) is None  # neither findings nor the study yet: the assessment waits
    service.handle(findings_event("f1", STUDY + ".1.1"))

    dr = _report(engine)
    assert dr is not None and dr["meta"]["versionId"] == "1"
    assert COMPARISON in html_section(presented_html(dr), "comparison")
    assert NO_MISSING_CONTEXT in html_section(presented_html(dr), "missing-context")
    (oru,) = _orus(engine)
    assert _section_text(oru, "18834-2") == [COMPARISON]


def test_assessment_of_a_study_without_ai_findings_gets_a_report_once_the_study_is_known(engine, clock):
    service, _ = _service(engine, clock)
    service.handle(assessment_event("a1"))
    service.handle(study_available_event("s1"))

    dr = _report(engine)
    assert dr is not None and "result" not in dr and dr["subject"] == {"reference": "Patient/patient-1"}
    assert COMPARISON in html_section(presented_html(dr), "comparison")
    assert dr["conclusion"].startswith(
        "Preliminary AI-generated result, not for diagnostic use. No radcds measurement."
    )
    (oru,) = _orus(engine)
    assert _section_text(oru, "18834-2") == [COMPARISON]
    # A later study.available (late instances) does not write the report again.
    service.handle(study_available_event("s2"))
    assert _report(engine)["meta"]["versionId"] == "1"  # type: ignore[index]


def test_assessment_of_a_known_study_writes_its_report_at_once(engine, clock):
    service, _ = _service(engine, clock)
    service.handle(study_available_event("s1"))
    assert _report(engine) is None
    service.handle(assessment_event("a1"))
    assert _report(engine) is not None


def test_redelivered_or_older_assessment_versions_write_nothing_new(engine, clock):
    service, _ = _service(engine, clock)
    service.handle(findings_event("f1", STUDY + ".1.1"))
    service.handle(assessment_event("a2", version=2, comparison=("Newest comparison.",)))
    service.handle(assessment_event("a2", version=2, comparison=("Newest comparison.",)))  # redelivered
    service.handle(assessment_event("a1", version=1, comparison=("Stale comparison.",)))  # late, older

    dr = _report(engine)
    assert dr is not None and dr["meta"]["versionId"] == "2"
    assert "Newest comparison." in dr["conclusion"] and "Stale" not in dr["conclusion"]
    assert len(_orus(engine)) == 2


def test_signed_report_is_not_rewritten_by_a_later_assessment(engine, clock):
    service, results = _service(engine, clock)
    service.handle(findings_event("f1", STUDY + ".1.1"))
    service.handle(assessment_event("a1"))
    signoff = ReportSignOff(
        engine=engine,
        relay=OutboxRelay(engine, RecordingPublisher(), name="reporting-outbox"),
        clock=clock,
        results=results,
    )
    report_id = diagnostic_report_id(STUDY)
    signed, _ = signoff.update(
        report_id=report_id,
        patch=[
            {"op": "replace", "path": "/status", "value": "final"},
            {"op": "add", "path": "/resultsInterpreter", "value": [{"reference": "Practitioner/rad-1"}]},
        ],
    )
    # Signing renders the report again with the assessment's sections.
    assert COMPARISON in html_section(presented_html(signed), "comparison")
    assert f"Comparison: {COMPARISON}" in signed["conclusion"]

    service.handle(assessment_event("a2", version=2, comparison=("After sign-off.",)))
    dr = _report(engine)
    assert dr is not None and dr["meta"]["versionId"] == signed["meta"]["versionId"]
    assert "After sign-off." not in dr["conclusion"]


def test_critical_assessment_and_low_confidence_are_said_in_the_sections(engine, clock):
    service, _ = _service(engine, clock)
    service.handle(findings_event("f1", STUDY + ".1.1"))
    service.handle(
        assessment_event(
            "a1",
            critical=True,
            confidence=[
                {
                    "code": "cardiothoracic-ratio",
                    "label": "CTR",
                    "level": "low",
                    "reasons": ["A pacemaker overlies the heart."],
                },
                {"code": "other", "level": "high", "reasons": []},
            ],
        )
    )
    html = presented_html(_report(engine))  # type: ignore[arg-type]
    recommendations = html_section(html, "recommendations")
    assert "CRITICAL: Intracranial hemorrhage candidate, new since the prior head CT." in recommendations
    assert "The care team must be told now." in recommendations
    assert "Confidence low (CTR): A pacemaker overlies the heart." in html_section(html, "comparison")
    assert "Confidence high" not in html
