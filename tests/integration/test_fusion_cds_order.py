"""A CDS Hooks order-sign closes fusion's follow-up recommendation, in the real stack (Kafka, PostgreSQL, imaging,
referral, fusion).

A TID 1500 measurement SR (radcds_devstack.samples.nodule_measurement_sr: highdicom on pydicom's real CT_small.dcm)
measuring an 8 mm solid nodule -> STOW-RS into imaging -> fusion's Fleischner recommendation of a chest CT. The EHR
then calls referral's order-sign, signed with the development EHR key, for a CT chest without contrast (CPT 71250):
the Patient in the prefetch is the EHR's (its own id) with the MRN in the hospital's MRN system, which the test stack
configures as fusion's ``EHR_PATIENT_IDENTIFIER_SYSTEM`` (tests/integration/conftest.py; the stack has no EHR, so
fusion never learnt the EHR's Patient id and matches by the MRN). First an order-select of that CT for the patient
and an order-sign of it for another patient: once fusion's consumer group has committed past both events, the
recommendation is still active. Then the patient's order-sign: referral's ``imaging-order.evaluated`` event closes
it, ``GET /fhir/ServiceRequest/{id}`` answers ``completed``, and ``recommendation.changed`` names the EHR's order.
"""

from __future__ import annotations

import json
import uuid
from datetime import date, timedelta
from typing import Any

import httpx
import pytest
from kafka import TopicPartition
from kafka.admin import KafkaAdminClient

from radcds.domain.events import ASSESSMENT_PRODUCED, ORDER_EVALUATED, RECOMMENDATION_CHANGED
from radcds_devstack.demo import call_referral, event_trail, stow
from radcds_devstack.samples import chest_ct, nodule_measurement_sr, part10

from .helpers import HOSPITAL_MRN_SYSTEM, eventually, read_topic

pytestmark = [pytest.mark.integration, pytest.mark.kafka, pytest.mark.triton, pytest.mark.postgres]
FUSION_GROUP = "radcds-fusion"


def ct_chest_order(*, ehr_patient_id: str, mrn: str, order_id: str, hook: str = "order-sign") -> dict[str, Any]:
    """The EHR's call for a draft CT chest without contrast for a solitary pulmonary nodule (synthetic values)."""
    from radcds_devstack import scenarios

    patient = scenarios.patient(66, patient_id=ehr_patient_id)
    patient["identifier"] = [{"system": HOSPITAL_MRN_SYSTEM, "value": mrn}]
    order = scenarios.imaging_order(
        "71250",
        "CT chest without contrast",
        ("R91.1", "Solitary pulmonary nodule"),
        order_id=order_id,
        patient_id=ehr_patient_id,
    )
    call = scenarios.order_sign([order], observations=[], patient_resource=patient)
    if hook == "order-select":
        call["hook"] = hook
        call["context"]["selections"] = [f"ServiceRequest/{order_id}"]
    return call


def evaluation_record(stack, hook_instance: str) -> Any:
    """referral's consultation event of one CDS Hooks call, as a Kafka record."""

    def find() -> Any:
        for record in read_topic(stack, ORDER_EVALUATED.topic):
            if record.value and json.loads(record.value).get("hookInstance") == hook_instance:
                return record
        return None

    return eventually(find, timeout_s=60, what="referral's imaging-order.evaluated event")


def fusion_consumed(stack, record: Any) -> bool:
    """Whether fusion's consumer group has committed past ``record`` (it was handled)."""
    admin = KafkaAdminClient(bootstrap_servers=[stack.bootstrap])
    try:
        tp = TopicPartition(record.topic, record.partition)
        committed = admin.list_group_offsets({FUSION_GROUP: [tp]})[FUSION_GROUP].get(tp)
    finally:
        admin.close()
    return committed is not None and committed.offset > record.offset


def test_order_sign_for_the_recommended_chest_ct_closes_the_recommendation(stack):
    mrn = f"FUS-{uuid.uuid4().hex[:8]}"
    ehr_patient = f"ehr-{uuid.uuid4().hex[:8]}"
    made_on = (date.today() - timedelta(days=30)).strftime("%Y%m%d")  # signed orders come after it
    sr = nodule_measurement_sr(chest_ct(patient_id=mrn, study_date=made_on), long_axis_mm=8.2, short_axis_mm=7.8)
    stow(stack, [part10(sr)])
    trail = event_trail(stack, sr.StudyInstanceUID, until_types={ASSESSMENT_PRODUCED.type}, timeout_s=180)
    (rec,) = [e["payload"] for e in trail if e["type"] == ASSESSMENT_PRODUCED.type][-1]["recommendations"]
    url = f"http://{stack.host}:{stack.ports.fusion}/fhir/ServiceRequest/{rec['id']}"
    proposal = httpx.get(url, timeout=10).json()
    assert (proposal["status"], proposal["subject"]["identifier"]["value"]) == ("active", mrn)
    assert {"system": "http://www.ama-assn.org/go/cpt", "code": "71250"} in proposal["code"]["coding"]

    def status() -> str:
        return str(httpx.get(url, timeout=10).json()["status"])

    draft = ct_chest_order(ehr_patient_id=ehr_patient, mrn=mrn, order_id="draft-ct-chest-1", hook="order-select")
    call_referral(stack, draft, service="radcds-imaging-order-select")
    other = ct_chest_order(ehr_patient_id="ehr-someone-else", mrn="SOMEONE-ELSE", order_id="draft-ct-chest-2")
    call_referral(stack, other)
    for call in (draft, other):
        record = evaluation_record(stack, call["hookInstance"])
        eventually(lambda r=record: fusion_consumed(stack, r), timeout_s=120, what="fusion handling the CDS event")
    assert status() == "active"

    signed = ct_chest_order(ehr_patient_id=ehr_patient, mrn=mrn, order_id="draft-ct-chest-3")
    call_referral(stack, signed)
    eventually(lambda: status() == "completed", timeout_s=120, what="the recommendation closed by the order-sign")
    changes = [
        json.loads(r.value)
        for r in read_topic(stack, RECOMMENDATION_CHANGED.topic)
        if r.value and rec["id"] in r.value.decode()
    ]
    assert [(c["state"], c.get("closedBy")) for c in changes] == [
        ("proposed", None),
        ("closed", "ServiceRequest/draft-ct-chest-3"),
    ]
