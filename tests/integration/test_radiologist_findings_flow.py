"""A radiologist's structured finding sent with the report through reporting's FHIR API reaches fusion's
recommendation, on the real stack (Kafka, PostgreSQL, reporting, fusion; issue #11).

1. A preliminary DiagnosticReport for a chest CT: radcds has no chest CT model, so the findings event that makes the
   report is SEEDED on the findings topic as inference would publish it for the ``pixel_statistics`` model (as
   test_delivery_guarantees.py does); a fresh patient and study.
2. The radiologist signs it with ``PUT /fhir/DiagnosticReport/{id}``, a solid 7 x 7 mm nodule of the right upper lobe
   contained (SNOMED CT 427359005, bodySite 45653009, UCUM mm, composition Solid 35702001).
3. reporting stores the Observation and publishes ``findings.entered`` (outbox, topic radcds.reporting.findings.v1);
   fusion assesses the study: a Fleischner 2017 6-8 mm solid single nodule, CT at 6-12 months, readable as a FHIR
   ServiceRequest at fusion's API. No EHR is configured in the test stack, so fusion applies high-risk management and
   says so; both risks begin with CT at 6-12 months.
"""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest

from radcds.adapters.fhir.report import patient_id_for
from radcds.adapters.kafka.codec import encode
from radcds.domain import codes
from radcds.domain.events import FINDINGS_ENTERED, FINDINGS_PRODUCED, ImagingFindingsProduced
from radcds.domain.findings import ImageAnalysis, InstanceReference, Measurement, ModelIdentity, StudyContext

from .helpers import eventually, fhir, producer, read_topic

pytestmark = [pytest.mark.integration, pytest.mark.kafka, pytest.mark.postgres]
CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
MM = {"unit": "mm", "system": codes.UCUM, "code": "mm"}


def _seed_report(stack, *, patient: str, accession: str, study_uid: str) -> None:
    """SEEDED: the findings event of a chest CT, as inference would publish it, so that reporting writes a report."""
    analysis = ImageAnalysis(
        InstanceReference(study_uid, study_uid + ".1", study_uid + ".1.1", CT_IMAGE_STORAGE),
        StudyContext(
            patient_id=patient,
            accession_number=accession,
            modality="CT",
            study_date="20261201",
            study_description="CT CHEST WO CONTRAST (SEEDED)",
        ),
        ModelIdentity("pixel_statistics", "1"),
        measurements=(Measurement(codes.MEAN_PIXEL_VALUE, -650.0, codes.UNIT_HOUNSFIELD),),
    )
    message = encode(
        FINDINGS_PRODUCED,
        ImagingFindingsProduced(analysis).to_payload(),
        event_id=f"itest-findings-{study_uid}",
        source="/itest",
        subject=study_uid,
    )
    p = producer(stack)
    try:
        p.send(
            FINDINGS_PRODUCED.topic,
            key=study_uid.encode(),
            value=message.value,
            headers=list(message.headers.items()),
        ).get(30)
    finally:
        p.close()


def _nodule() -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "id": "nodule-1",
        "status": "final",
        "code": {"coding": [{"system": codes.SNOMED_CT, "code": "427359005", "display": "Solitary nodule of lung"}]},
        "bodySite": {
            "coding": [{"system": codes.SNOMED_CT, "code": "45653009", "display": "Upper lobe of right lung"}]
        },
        "valueQuantity": {"value": 7, **MM},
        "component": [
            {
                "code": {"coding": [{"system": codes.SNOMED_CT, "code": "103340004"}]},
                "valueQuantity": {"value": 7, **MM},
            },
            {
                "code": {"coding": [{"system": codes.RADCDS_MEASUREMENT, "code": "nodule-composition"}]},
                "valueCodeableConcept": {
                    "coding": [{"system": codes.SNOMED_CT, "code": "35702001", "display": "Solid"}]
                },
            },
        ],
    }


def test_radiologists_nodule_sent_with_the_report_gives_fusions_fleischner_recommendation(stack):
    n = uuid.uuid4().hex[:8]
    patient, accession, study_uid = f"RAD-{n}", f"RF{n}", f"2.25.{uuid.uuid4().int}"
    _seed_report(stack, patient=patient, accession=accession, study_uid=study_uid)

    def report() -> dict[str, Any] | None:
        entries = fhir(stack, "DiagnosticReport", identifier=accession).get("entry", [])
        return entries[0]["resource"] if entries else None

    dr = eventually(report, timeout_s=120, what="the preliminary DiagnosticReport")
    body = dr | {
        "status": "final",
        "resultsInterpreter": [{"reference": "Practitioner/rad-itest"}],
        "contained": [_nodule()],
        "result": [*dr.get("result", []), {"reference": "#nodule-1"}],
    }
    reporting = f"http://{stack.host}:{stack.ports.reporting}/fhir"
    signed = httpx.put(f"{reporting}/DiagnosticReport/{dr['id']}", json=body, timeout=30)
    assert signed.status_code == 200, signed.text
    entered_ref = signed.json()["result"][-1]["reference"]
    observation = httpx.get(f"{reporting}/{entered_ref}", timeout=10).json()
    assert observation["performer"] == [{"reference": "Practitioner/rad-itest"}]

    bad = body | {"contained": [_nodule() | {"valueQuantity": {"value": 0.7, "unit": "cm", "code": "cm"}}]}
    refused = httpx.put(f"{reporting}/DiagnosticReport/{dr['id']}", json=bad, timeout=30)
    assert refused.status_code == 422
    assert refused.json()["issue"][0]["expression"] == ["DiagnosticReport.contained[0].valueQuantity.code"]

    fusion = f"http://{stack.host}:{stack.ports.fusion}/fhir"
    subject = patient_id_for(StudyContext(patient_id=patient))

    def recommendations() -> list[dict[str, Any]]:
        found = httpx.get(
            f"{fusion}/ServiceRequest", params={"patient": f"Patient/{subject}", "status": "active"}, timeout=10
        ).json()
        return [e["resource"] for e in found.get("entry", [])]

    (rec,) = eventually(recommendations, timeout_s=120, what="fusion's recommendation for the radiologist's nodule")
    assert rec["intent"] == "proposal"
    assert rec["reasonCode"][0]["text"].startswith("CT at 6-12 months"), rec["reasonCode"]
    assert rec["note"][0]["text"].startswith("Guideline: fleischner-2017 1.0.0.")
    assert rec["occurrencePeriod"] == {"start": "2027-06-01", "end": "2027-12-01"}

    events = [
        r for r in read_topic(stack, FINDINGS_ENTERED.topic) if dict(r.headers).get("ce_subject") == study_uid.encode()
    ]
    assert len(events) == 1 and patient.encode() in events[0].value  # the MRN, for the EHR context
