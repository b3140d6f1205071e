"""Patient demographics from HL7 v2 orders: kept on the FHIR Patient and sent back in the ORU's PID.

HL7 v2.5.1 3.4.2 PID: PID-3 (CX with CX.4 assigning authority), PID-5 (XPN, required), PID-7,
PID-8 (table 0001). Rule agreed with the FHIR side: EHR order demographics are authoritative, the
order path creates or updates the Patient; the ORU's PID is built from the stored Patient.
Fixtures: ORM texts from test_hl7_wiring.py (written for those tests); Patients below written here.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from radcds.adapters.db.outbox import OutboxRelay
from radcds.adapters.fhir.report import patient_id_for
from radcds.domain.findings import StudyContext
from radcds_devstack.testing import RecordingPublisher
from radcds_reporting.adapters.hl7v2.ack import ErrorCode, HL7MessageError
from radcds_reporting.adapters.hl7v2.config import DestinationOptions
from radcds_reporting.adapters.hl7v2.orders import parse_order_message
from radcds_reporting.adapters.hl7v2.oru import TextLayout, build_oru_r01
from radcds_reporting.adapters.repository import FhirRepository
from radcds_reporting.handlers import ReportingService
from radcds_reporting.use_cases.oru import ResultOutbox, result_from_report

from .conftest import STUDY, findings_event
from .test_hl7_wiring import DEST, OBSERVATIONS, ORDER, ORM_NEW, _queued, _report, _store

ORDER_PATIENT_ID = patient_id_for(StudyContext(patient_id="PID-1", issuer_of_patient_id="HOSP"))
NOW = datetime(2026, 1, 2, 12, 30, tzinfo=UTC)


def _patient(engine) -> dict:
    with engine.connect() as conn:
        found = FhirRepository(conn).read("Patient", ORDER_PATIENT_ID)
    assert found is not None
    return found


def test_order_pid_demographics_are_kept_on_the_patient(engine):
    _store(engine).store(parse_order_message(ORM_NEW))

    patient = _patient(engine)
    assert patient["name"] == [{"use": "official", "family": "DOE", "given": ["JANE"]}]
    assert patient["gender"] == "female" and patient["birthDate"] == "1970-01-01"
    [mr] = patient["identifier"]
    assert mr["value"] == "PID-1" and mr["system"] == "urn:radcds:issuer:HOSP"
    assert mr["assigner"] == {"display": "HOSP"}


def test_a_later_order_updates_the_patient_because_order_demographics_are_authoritative(engine):
    _store(engine).store(parse_order_message(ORM_NEW))
    change = (
        ORM_NEW.replace("|UT-ORM-1|", "|UT-ORM-XO|")
        .replace("DOE^JANE||19700101|F", "DOE-SMITH^JANE^ANN||19700102|F")
        .replace("ORC|NW|", "ORC|XO|")
    )
    _store(engine).store(parse_order_message(change))

    patient = _patient(engine)
    assert patient["name"] == [{"use": "official", "family": "DOE-SMITH", "given": ["JANE", "ANN"]}]
    assert patient["birthDate"] == "1970-01-02" and patient["meta"]["versionId"] == "2"


def test_order_without_pid7_and_pid8_keeps_what_the_patient_had(engine):
    _store(engine).store(parse_order_message(ORM_NEW))
    bare = (
        ORM_NEW.replace("|UT-ORM-1|", "|UT-ORM-2|")
        .replace("DOE^JANE||19700101|F", "DOE^JANE")
        .replace("ORC|NW|", "ORC|XO|")
    )
    _store(engine).store(parse_order_message(bare))

    patient = _patient(engine)
    assert patient["gender"] == "female" and patient["birthDate"] == "1970-01-01"


def test_order_with_bad_birth_date_or_sex_gets_ae_at_pid7_or_pid8():
    with pytest.raises(HL7MessageError) as bad_date:
        parse_order_message(ORM_NEW.replace("||19700101|F", "||19701301|F"))
    with pytest.raises(HL7MessageError) as bad_sex:
        parse_order_message(ORM_NEW.replace("||19700101|F", "||19700101|Q"))
    assert bad_date.value.code is ErrorCode.DATA_TYPE_ERROR and bad_date.value.location.label == "PID-7"
    assert bad_sex.value.code is ErrorCode.TABLE_VALUE_NOT_FOUND and bad_sex.value.location.label == "PID-8"


def test_preliminary_oru_carries_the_order_demographics_in_pid(engine, clock):
    _store(engine).store(parse_order_message(ORM_NEW))
    results = ResultOutbox(engine=engine, destinations=[DEST], clock=clock)
    service = ReportingService(
        engine=engine,
        relay=OutboxRelay(engine, RecordingPublisher(), name="reporting-outbox"),
        consumer_group="g",
        clock=clock,
        results=results,
    )
    service.handle(findings_event("e1", STUDY + ".1.1"))

    pid = _queued(engine)[0].segment("PID")
    assert str(pid[3]) == "PID-1^^^HOSP^MR"
    assert str(pid[5]) == "DOE^JANE^^^^^L"
    assert str(pid[7]) == "19700101" and str(pid[8]) == "F"


def test_oru_without_order_takes_pid5_7_8_from_the_patient_the_dicom_header_gave():
    # A Patient as the report path stores it from a DICOM header (PS3.3 C.7.1.1), written for this test.
    patient = {
        "resourceType": "Patient",
        "id": "p1",
        "identifier": [{"system": "https://radcds.example.org/fhir/sid/dicom-patient-id", "value": "D-77"}],
        "name": [{"family": "ROE", "given": ["RICHARD"]}],
        "gender": "male",
        "birthDate": "1960-02-02",
    }
    result = result_from_report(_report(), observations=OBSERVATIONS, service_request=None, patient=patient, now=NOW)
    assert result is not None
    text = build_oru_r01(result, header=DestinationOptions().header(), control_id="M1", created_at=NOW)
    pid = next(s for s in text.split("\r") if s.startswith("PID|")).split("|")
    assert pid[3] == "D-77^^^^MR" and pid[5] == "ROE^RICHARD^^^^^L" and pid[7:9] == ["19600202", "M"]


def test_oru_for_a_patient_without_any_name_sends_pid5_with_name_type_unspecified_only():
    patient = {"resourceType": "Patient", "id": "p1", "identifier": [{"value": "D-78"}]}
    result = result_from_report(_report(), observations=OBSERVATIONS, service_request=ORDER, patient=patient, now=NOW)
    assert result is not None
    for layout in TextLayout:
        text = build_oru_r01(
            result, header=DestinationOptions().header(), control_id="M1", created_at=NOW, layout=layout
        )
        pid = next(s for s in text.split("\r") if s.startswith("PID|")).split("|")
        assert pid[5] == "^^^^^^U"
