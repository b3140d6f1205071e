"""Radiologist-entered structured findings (reporting's ``findings.entered``): mapped to fusion's nodules, stored
per report (a later version replaces them), assessed with Fleischner 2017, idempotent by event id, and an impossible
measurement refused for the dead-letter topic."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, date, datetime

import pytest

from radcds.adapters.kafka.codec import DecodedEvent, validate_payload
from radcds.domain import codes
from radcds.domain.events import (
    ASSESSMENT_PRODUCED,
    FINDINGS_ENTERED,
    RECOMMENDATION_CHANGED,
    EnteredNodule,
    StructuredFindingsEntered,
)
from radcds_devstack.testing import migrated_engine
from radcds_fusion.adapters.entered_findings import ImpossibleFinding, entered_findings
from radcds_fusion.domain.context import ClinicalContext, SmokingStatus
from radcds_fusion.domain.nodules import Composition
from radcds_fusion.handlers import FusionService, Knowledge
from radcds_fusion.knowledge import load_critical_policy, load_findings, load_guidelines

from .test_handlers import ROOT, Clock, outbox

#: A low-risk adult (never smoked, nothing else documented against): Fleischner 2017 low-risk management.
LOW_RISK = ClinicalContext(
    birth_date=date(1970, 3, 1),
    copd=False,
    known_cancer=False,
    immunosuppressed=False,
    smoking_status=SmokingStatus.NEVER,
)
RUL = codes.LUNG_SITES[0]
STUDY = "1.2.826.0.1.3680043.8.498.11"


@pytest.fixture
def engine(tmp_path):
    with migrated_engine("fusion", "sqlite", root=ROOT, scratch=tmp_path, label="e", chain="radcds_fusion.db") as e:
        yield e


@pytest.fixture
def service(engine):
    clock = Clock(datetime(2026, 12, 1, 10, tzinfo=UTC))
    knowledge = Knowledge(load_guidelines(), load_critical_policy(), load_findings())
    return FusionService(
        engine=engine, knowledge=knowledge, context=lambda p: LOW_RISK, consumer_group="fusion-test", clock=clock
    )


def solid(long_mm: float = 7.0, short_mm: float | None = 7.0, observation_id: str = "obs-1") -> EnteredNodule:
    return EnteredNodule(observation_id, codes.NODULE_FINDINGS[0], RUL, long_mm, "solid", short_mm)


def entered(event_id: str, *findings: EnteredNodule, version: str = "2", modalities=("CT",)) -> DecodedEvent:
    event = StructuredFindingsEntered(
        diagnostic_report_id="report-1",
        version_id=version,
        report_status="final",
        study_instance_uid=STUDY,
        patient_id="patient-1",
        entered_by="Practitioner/rad-1",
        findings=findings,
        study_date="2026-12-01",
        modalities=modalities,
        patient_identifier=("urn:oid:1.2.3", "MRN-1"),
    )
    payload = event.to_payload()
    validate_payload(FINDINGS_ENTERED, payload)
    return DecodedEvent(event_id, FINDINGS_ENTERED.type, "/radcds/reporting", STUDY, None, FINDINGS_ENTERED, payload)


def test_entered_nodule_maps_to_a_measured_nodule_of_the_radiologists_report():
    event = StructuredFindingsEntered.from_payload(entered("e1", solid(7.2, 6.8)).payload)
    mapped = entered_findings(event, today=date(2027, 1, 1))
    assert (mapped.source, mapped.modality, mapped.study_date) == ("radiologist:report-1", "CT", date(2026, 12, 1))
    assert (mapped.patient.id, mapped.patient.identifier) == ("patient-1", "MRN-1")
    (finding,) = mapped.findings
    assert finding.code == "427359005" and finding.body_site == "Upper lobe of right lung"
    assert finding.reference == "Observation/obs-1"
    assert finding.nodule is not None and finding.nodule.composition is Composition.SOLID
    assert finding.nodule.mean_diameter_mm == pytest.approx(7.0)


def test_part_solid_nodule_keeps_its_solid_part():
    part_solid = replace(solid(12.0, 10.0), composition="part-solid", solid_part_mm=5.0)
    event = StructuredFindingsEntered.from_payload(entered("e1", part_solid).payload)
    (finding,) = entered_findings(event, today=date(2027, 1, 1)).findings
    assert finding.nodule is not None and finding.nodule.solid_component_mm == 5.0


def test_seven_mm_solid_nodule_of_a_low_risk_adult_gets_fleischner_ct_at_6_to_12_months(service, engine):
    event = entered("e1", solid())
    service.handle(event)
    service.handle(event)  # redelivered: assessed once
    (assessment,) = outbox(engine, ASSESSMENT_PRODUCED)
    assert assessment["studyInstanceUid"] == STUDY
    assert assessment["comparisons"][0]["text"] == (
        "Solid nodule, Upper lobe of right lung 7.0 mm: no prior study to compare with."
    )
    assert assessment["sections"]["recommendations"][0] == (
        "fleischner-2017 1.0.0: CT at 6-12 months, then consider CT at 18-24 months. Due by 2027-12-01."
    )
    (made,) = outbox(engine, RECOMMENDATION_CHANGED)
    assert (made["state"], made["serviceRequest"]["occurrencePeriod"]) == (
        "proposed",
        {"start": "2027-06-01", "end": "2027-12-01"},
    )


def test_a_later_version_of_the_report_replaces_the_nodules_the_report_gave_before(service, engine):
    service.handle(entered("e1", solid(7.0, 7.0)))
    service.handle(entered("e2", solid(9.0, 9.0), version="3"))  # the radiologist corrected the size
    latest = outbox(engine, ASSESSMENT_PRODUCED)[-1]
    assert [c["text"] for c in latest["comparisons"]] == [
        "Solid nodule, Upper lobe of right lung 9.0 mm: no prior study to compare with."
    ]
    service.handle(entered("e3", version="4"))  # all findings removed from the report
    assert outbox(engine, ASSESSMENT_PRODUCED)[-1]["comparisons"] == []


def test_nodule_on_a_report_of_another_modality_is_not_given_a_ct_guideline(service, engine):
    service.handle(entered("e1", solid(), modalities=("CR",)))
    (assessment,) = outbox(engine, ASSESSMENT_PRODUCED)
    assert assessment["guidelines"] == [] and outbox(engine, RECOMMENDATION_CHANGED) == []


def test_impossible_measurement_fails_for_the_dead_letter_topic_and_stores_nothing(service, engine):
    impossible = solid(long_mm=5.0, short_mm=6.0)  # past the schema (sizes are positive), not past the domain
    with pytest.raises(ImpossibleFinding, match="short axis cannot exceed the long axis"):
        service.handle(entered("e1", impossible))
    assert outbox(engine, ASSESSMENT_PRODUCED) == []
