"""A CDS Hooks ``order-sign`` (referral's ``imaging-order-evaluated.v1`` event) for the recommended procedure closes
fusion's follow-up recommendation; the hook names the patient by the EHR's Patient id, matched to the id fusion
recorded when it found the patient in the EHR by MRN, or (none recorded) to the MRN in the hospital's MRN system
among the Patient's identifiers. Other patients, other codes, order-select, an order rated not-appropriate, an MRN
of another assigning authority and an unknown patient close nothing. The payloads are the ones referral writes
(``services/referral/tests/test_cds_hooks_api.py`` checks that side)."""

from __future__ import annotations

from dataclasses import replace
from datetime import date

import pytest
from sqlalchemy import select

from radcds.adapters.db.tables import processed_events
from radcds.adapters.kafka.codec import DecodedEvent, validate_payload
from radcds.domain.events import ORDER_EVALUATED, RECOMMENDATION_CHANGED
from radcds_fusion.adapters.order_event import signed_order
from radcds_fusion.handlers import FusionService, Knowledge
from radcds_fusion.knowledge import load_critical_policy, load_findings, load_guidelines

from . import test_handlers
from .test_handlers import SMOKER, outbox, recommend

engine, clock = test_handlers.engine, test_handlers.clock  # the fixtures of the use-case tests

MRN_SYSTEM = "urn:oid:2.16.840.1.113883.3.999"  # the hospital's MRN system (an example OID)
CPT = "http://www.ama-assn.org/go/cpt"


def fusion(engine, clock, *, ehr_patient_id: str | None, mrn_system: str | None = MRN_SYSTEM) -> FusionService:
    """fusion whose EHR context source found the patient as ``ehr_patient_id`` (``None``: no EHR, or not found)."""
    knowledge = Knowledge(load_guidelines(), load_critical_policy(), load_findings())
    context = replace(SMOKER, ehr_patient_id=ehr_patient_id)
    return FusionService(
        engine=engine,
        knowledge=knowledge,
        context=lambda p: context,
        consumer_group="fusion-test",
        clock=clock,
        mrn_system=mrn_system,
    )


def evaluated(
    event_id: str,
    *,
    patient: str,
    code: str = "71250",
    hook: str = "order-sign",
    rating: str = "no-criteria-apply",
    identifiers: tuple[tuple[str, str], ...] = (),
    order_id: str = "draft-ct-chest",
) -> DecodedEvent:
    """The event referral writes for one rated draft order (schema imaging-order-evaluated.v1)."""
    payload = {
        "consultationId": f"urn:uuid:00000000-0000-4000-8000-{event_id.rjust(12, '0')}",
        "serviceId": f"radcds-imaging-{hook}",
        "hook": hook,
        "hookInstance": "d1577c69-dfbe-44ad-ba6d-3e05e953b2ea",
        "patientId": patient,
        "orderId": order_id,
        "orderCodes": [{"system": CPT, "code": code}],
        "ruleId": "none",
        "ruleVersion": "0",
        "rating": rating,
        "evaluatedAt": "2026-12-15T09:30:00.000Z",
    }
    if identifiers:
        payload["patientIdentifiers"] = [{"system": s, "value": v} for s, v in identifiers]
    validate_payload(ORDER_EVALUATED, payload)
    return DecodedEvent(event_id, ORDER_EVALUATED.type, "/radcds/referral", order_id, None, ORDER_EVALUATED, payload)


def states(engine) -> list[str]:
    return [c["state"] for c in outbox(engine, RECOMMENDATION_CHANGED)]


def test_order_sign_for_a_chest_ct_of_the_patient_fusion_found_in_the_ehr_closes_the_recommendation(engine, clock):
    service = fusion(engine, clock, ehr_patient_id="ehr-7")
    rec = recommend(service, engine)
    service.handle(evaluated("1", patient="ehr-7"))
    closed = outbox(engine, RECOMMENDATION_CHANGED)[-1]
    assert (closed["recommendationId"], closed["state"], closed["previousState"]) == (rec, "closed", "proposed")
    assert closed["closedBy"] == "ServiceRequest/draft-ct-chest"  # the EHR's order that fulfilled it
    assert closed["serviceRequest"]["status"] == "completed"


@pytest.mark.parametrize(
    "event",
    [
        evaluated("1", patient="ehr-7", hook="order-select"),  # a draft being edited, not an order
        evaluated("2", patient="ehr-8"),  # another patient
        evaluated("3", patient="ehr-7", code="70450"),  # CT head: not the follow-up
        evaluated("4", patient="ehr-7", rating="not-appropriate"),  # the card suggested removing it
        evaluated("5", patient="ehr-8", identifiers=((MRN_SYSTEM, "MRN-1"),)),  # recorded EHR id wins over the MRN
    ],
    ids=["order-select", "other-patient", "other-code", "not-appropriate", "same-mrn-other-ehr-patient"],
)
def test_cds_event_that_is_not_a_signed_order_for_the_patients_recommended_ct_closes_nothing(engine, clock, event):
    service = fusion(engine, clock, ehr_patient_id="ehr-7")
    recommend(service, engine)
    service.handle(event)
    assert states(engine) == ["proposed"]
    with engine.connect() as conn:  # handled: a redelivery is skipped
        assert sorted(conn.execute(select(processed_events.c.event_id)).scalars()) == sorted(["sr", event.id])


def test_order_sign_with_the_mrn_in_the_hospitals_system_closes_a_recommendation_made_without_the_ehr(engine, clock):
    service = fusion(engine, clock, ehr_patient_id=None)
    recommend(service, engine)
    service.handle(evaluated("1", patient="ehr-7", identifiers=(("urn:oid:1.2.3", "MRN-1"),)))  # other authority
    service.handle(evaluated("2", patient="ehr-9", identifiers=((MRN_SYSTEM, "MRN-2"),)))  # other patient
    service.handle(evaluated("3", patient="ehr-7"))  # EHR id only: fusion never learnt it
    assert states(engine) == ["proposed"]
    service.handle(evaluated("4", patient="ehr-7", identifiers=(("urn:oid:1.2.3", "X"), (MRN_SYSTEM, "MRN-1"))))
    assert states(engine) == ["proposed", "closed"]


def test_mrn_alone_closes_nothing_when_the_hospitals_mrn_system_is_not_configured(engine, clock):
    service = fusion(engine, clock, ehr_patient_id=None, mrn_system=None)
    recommend(service, engine)
    service.handle(evaluated("1", patient="ehr-7", identifiers=((MRN_SYSTEM, "MRN-1"),)))
    assert states(engine) == ["proposed"]


def test_redelivered_order_sign_closes_the_recommendation_once(engine, clock):
    service = fusion(engine, clock, ehr_patient_id="ehr-7")
    recommend(service, engine)
    event = evaluated("1", patient="ehr-7")
    service.handle(event)
    service.handle(event)
    assert states(engine) == ["proposed", "closed"]


def test_order_signed_before_the_recommendation_was_made_closes_nothing(engine, clock):
    service = fusion(engine, clock, ehr_patient_id="ehr-7")
    recommend(service, engine)  # made for the study of 2026-12-01
    early = evaluated("1", patient="ehr-7")
    early.payload["evaluatedAt"] = "2026-11-30T23:00:00Z"
    service.handle(early)
    assert states(engine) == ["proposed"]


def test_signed_order_reads_only_cpt_codes_and_the_patients_identifiers():
    event = evaluated("1", patient="ehr-7", identifiers=((MRN_SYSTEM, "MRN-1"),))
    event.payload["orderCodes"].append({"system": "http://loinc.org", "code": "71260"})
    order = signed_order(event.payload, today=date(2027, 1, 1))
    assert order is not None
    assert (order.codes, order.patient.id, order.signed_on) == (("71250",), "ehr-7", date(2026, 12, 15))
    assert order.patient.identifiers == frozenset({(MRN_SYSTEM, "MRN-1")})
    only_loinc = evaluated("2", patient="ehr-7")
    only_loinc.payload["orderCodes"] = [{"system": "http://loinc.org", "code": "71250"}]
    assert signed_order(only_loinc.payload, today=date(2027, 1, 1)) is None
