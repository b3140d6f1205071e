"""The FHIR R4 / US Core findings of issue 10, each as a unit test on the reporting code path (SQLite):
Patient demographics from the DICOM header, generated narratives, the model Device and the performer,
and the signed report's conclusion. The HAPI FHIR validator checks the same resources independently
(tests/conformance/test_fhir_hapi_validator.py)."""

from __future__ import annotations

import copy
import re
from dataclasses import replace
from xml.etree import ElementTree

import pydicom
import pytest
from pydicom.dataset import Dataset

from radcds.adapters.db.outbox import OutboxRelay
from radcds.adapters.fhir import report
from radcds.adapters.fhir.resources import with_narrative
from radcds.adapters.kafka.codec import validate_payload
from radcds.domain.events import FINDINGS_PRODUCED, ImagingFindingsProduced
from radcds.domain.findings import StudyContext
from radcds_devstack.testing import RecordingPublisher
from radcds_inference.handlers import study_context
from radcds_reporting.adapters.repository import FhirRepository
from radcds_reporting.domain.service_request import OrderDetails
from radcds_reporting.handlers import ReportingService
from radcds_reporting.use_cases.orders import store_order
from radcds_reporting.use_cases.signoff import ReportSignOff

from .conftest import CTX, STUDY, findings_event

#: The header's Patient module of a synthetic patient (invented values).
HEADER = replace(
    CTX, issuer_of_patient_id="HOSP", patient_name="DOE^JANE^Q^DR^III", patient_sex="F", patient_birth_date="19700101"
)
XHTML = "{http://www.w3.org/1999/xhtml}"


def _service(engine, clock) -> ReportingService:
    return ReportingService(
        engine=engine,
        relay=OutboxRelay(engine, RecordingPublisher(), name="reporting-outbox"),
        consumer_group="g",
        clock=clock,
    )


def _all(engine, rtype: str) -> list[dict]:
    with engine.connect() as conn:
        return FhirRepository(conn).search(rtype, count=200)[1]


# ---- 1. Patient from the DICOM header -------------------------------------------------------------


def test_patient_from_dicom_header_has_name_gender_birth_date_and_issuer_system():
    patient = report.patient(HEADER)
    assert patient["name"] == [
        {"family": "DOE", "given": ["JANE", "Q"], "prefix": ["DR"], "suffix": ["III"], "text": "DR JANE Q DOE III"}
    ]
    assert patient["gender"] == "female"
    assert patient["birthDate"] == "1970-01-01"
    (identifier,) = patient["identifier"]
    assert identifier["system"] == "urn:radcds:issuer:HOSP" and identifier["value"] == "PID-1"
    assert identifier["assigner"] == {"display": "HOSP"}


@pytest.mark.parametrize(
    ("issuer", "system"),
    [
        ("1.2.840.113619.6.1", "urn:oid:1.2.840.113619.6.1"),
        ("urn:uuid:x", "urn:uuid:x"),
        ("", report.codes.RADCDS_PATIENT_ID),
    ],
)
def test_patient_identifier_system_follows_the_issuer_of_patient_id(issuer, system):
    assert report.patient(replace(HEADER, issuer_of_patient_id=issuer))["identifier"][0]["system"] == system


def test_header_without_name_or_sex_gives_a_data_absent_name_and_unknown_gender():
    patient = report.patient(CTX)
    assert patient["gender"] == "unknown"
    assert patient["name"] == [{"extension": [{"url": report.DATA_ABSENT_REASON_EXTENSION, "valueCode": "unknown"}]}]
    assert "birthDate" not in patient


def test_findings_payload_carries_patient_demographics_through_the_codec_and_schema():
    event = findings_event("e1", STUDY + ".1.1", context=HEADER)
    validate_payload(FINDINGS_PRODUCED, event.payload)
    assert event.payload["context"]["patientName"] == "DOE^JANE^Q^DR^III"
    assert ImagingFindingsProduced.from_payload(event.payload).analysis.context == HEADER


def test_inference_reads_patient_name_sex_and_birth_date_from_the_header():
    ds = Dataset()
    ds.PatientID, ds.IssuerOfPatientID = "PID-1", "HOSP"
    ds.PatientName = pydicom.valuerep.PersonName("DOE^JANE^Q^DR^III")
    ds.PatientSex, ds.PatientBirthDate = "F", "19700101"
    ctx = study_context(ds)
    assert (ctx.patient_name, ctx.patient_sex, ctx.patient_birth_date) == ("DOE^JANE^Q^DR^III", "F", "19700101")
    ds.PatientSex, ds.PatientBirthDate = "X", ""
    assert (study_context(ds).patient_sex, study_context(ds).patient_birth_date) == ("", "")


def test_findings_store_the_patient_with_demographics_from_the_header(engine, clock):
    _service(engine, clock).handle(findings_event("e1", STUDY + ".1.1", context=HEADER))
    (patient,) = _all(engine, "Patient")
    assert patient["name"][0]["family"] == "DOE" and patient["gender"] == "female"
    assert patient["birthDate"] == "1970-01-01"


def test_order_demographics_stay_and_the_header_fills_only_what_the_order_lacks(engine, clock):
    ordered = report.patient(replace(HEADER, patient_name="ROE^JANET", patient_sex="O", patient_birth_date=""))
    with engine.begin() as conn:
        FhirRepository(conn).upsert(ordered)
    _service(engine, clock).handle(findings_event("e1", STUDY + ".1.1", context=HEADER))
    (patient,) = _all(engine, "Patient")
    assert patient["name"][0]["family"] == "ROE" and patient["gender"] == "other"
    assert patient["birthDate"] == "1970-01-01"  # the order had none


def test_order_patient_without_demographics_is_filled_from_the_header(engine, clock):
    store_order(engine=engine, order=OrderDetails(patient_id="PID-1", accession_number="ACC-1"))
    _service(engine, clock).handle(
        findings_event("e1", STUDY + ".1.1", context=replace(HEADER, issuer_of_patient_id=""))
    )
    (patient,) = _all(engine, "Patient")
    assert patient["name"][0]["family"] == "DOE" and patient["gender"] == "female"


# ---- 2. Narratives ---------------------------------------------------------------------------------


def test_every_stored_resource_has_a_generated_xhtml_narrative(engine, clock):
    store_order(engine=engine, order=OrderDetails(patient_id="PID-1", accession_number="ACC-1"))
    _service(engine, clock).handle(findings_event("e1", STUDY + ".1.1", context=HEADER, critical=True))
    kinds = set()
    for rtype in (
        "Patient",
        "ServiceRequest",
        "ImagingStudy",
        "Observation",
        "Provenance",
        "DiagnosticReport",
        "Communication",
        "Device",
        "Organization",
    ):
        for resource in _all(engine, rtype):
            kinds.add(rtype)
            assert resource["text"]["status"] == "generated"
            div = ElementTree.fromstring(resource["text"]["div"])  # well-formed XML
            assert div.tag == f"{XHTML}div"
            assert "".join(div.itertext()).strip()
    assert len(kinds) == 9


def test_narrative_escapes_markup_and_shows_only_the_resource_content():
    study = {"resourceType": "ImagingStudy", "id": "s", "status": "available", "description": "<script>x</script>&"}
    div = with_narrative(study)["text"]["div"]
    assert "<script>" not in div and "&lt;script&gt;x&lt;/script&gt;&amp;" in div
    ElementTree.fromstring(div)
    assert list(with_narrative(study))[:3] == ["resourceType", "id", "text"]


def test_a_client_text_is_replaced_by_the_generated_narrative(engine):
    patient = {**report.patient(HEADER), "text": {"status": "additional", "div": "<div>stale</div>"}}
    with engine.begin() as conn:
        stored = FhirRepository(conn).upsert(patient)
    assert stored["text"]["status"] == "generated" and "stale" not in stored["text"]["div"]


# ---- 3. Observation performer and device -----------------------------------------------------------


def test_observations_reference_the_model_device_and_the_operating_organization_as_performer(engine, clock):
    _service(engine, clock).handle(findings_event("e1", STUDY + ".1.1"))
    (device,) = _all(engine, "Device")
    (organization,) = _all(engine, "Organization")
    assert device["version"] == [{"value": "1"}] and device["deviceName"][0]["name"] == "head_ct_hyperdensity"
    assert device["owner"]["reference"] == f"Organization/{organization['id']}"
    for obs in _all(engine, "Observation"):
        assert obs["device"]["reference"] == f"Device/{device['id']}"
        assert obs["performer"] == [
            {"reference": f"Organization/{organization['id']}", "display": organization["name"]}
        ]
    agents = [a for p in _all(engine, "Provenance") for a in p["agent"]]
    assert any(a["who"].get("reference") == f"Device/{device['id']}" for a in agents)


# ---- 4. The signed report's conclusion -------------------------------------------------------------


def _sign(engine, clock, **change) -> dict:
    with engine.connect() as conn:
        (dr,) = FhirRepository(conn).search("DiagnosticReport")[1]
    stored, _ = ReportSignOff(
        engine=engine, relay=OutboxRelay(engine, RecordingPublisher(), name="reporting-outbox"), clock=clock
    ).update(report_id=dr["id"], user="Practitioner/rad-1", **change)
    return stored


def test_final_report_conclusion_says_who_signed_and_no_longer_preliminary(engine, clock):
    _service(engine, clock).handle(findings_event("e1", STUDY + ".1.1", critical=True))
    dr = _sign(engine, clock, patch=[{"op": "replace", "path": "/status", "value": "final"}])
    assert dr["status"] == "final"
    assert not dr["conclusion"].startswith("Preliminary AI-generated result")
    assert "Preliminary" not in dr["conclusion"]
    assert dr["conclusion"].startswith("Report final, signed by Practitioner/rad-1.")
    assert "CRITICAL RESULT" in dr["conclusion"]


def test_radiologist_conclusion_sent_with_the_sign_off_is_kept(engine, clock):
    _service(engine, clock).handle(findings_event("e1", STUDY + ".1.1"))
    dr = _sign(
        engine,
        clock,
        patch=[
            {"op": "replace", "path": "/status", "value": "final"},
            {"op": "replace", "path": "/conclusion", "value": "No acute intracranial abnormality."},
        ],
    )
    assert dr["conclusion"] == "No acute intracranial abnormality."


def test_put_to_final_without_the_stored_narrative_is_signed_not_amended(engine, clock):
    _service(engine, clock).handle(findings_event("e1", STUDY + ".1.1"))
    with engine.connect() as conn:
        (dr,) = FhirRepository(conn).search("DiagnosticReport")[1]
    body = copy.deepcopy(dr)
    del body["text"]
    body["status"] = "final"
    stored = _sign(engine, clock, resource=body)
    assert stored["status"] == "final"
    assert re.search(r"signed by Practitioner/rad-1", stored["conclusion"])


def test_study_context_defaults_keep_old_payloads_readable():
    assert StudyContext("P").patient_name == "" and report.patient(StudyContext("P"))["gender"] == "unknown"
