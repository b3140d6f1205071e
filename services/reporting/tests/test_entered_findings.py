"""Structured findings a radiologist sends with the report (contained nodule Observations in a PUT of the
DiagnosticReport): stored as stand-alone Observations, announced by ``findings.entered`` through the outbox, and
refused with an OperationOutcome naming the element when a size, unit, code or composition is wrong."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from fastapi.testclient import TestClient

from radcds.adapters.db.outbox import OutboxRelay
from radcds.domain import codes
from radcds.domain.events import FINDINGS_ENTERED, REPORT_STORED, StructuredFindingsEntered
from radcds_devstack.testing import RecordingPublisher, presented_html
from radcds_reporting.app import build_components, create_app
from radcds_reporting.handlers import ReportingService
from radcds_reporting.settings import ReportingSettings

from .conftest import STUDY, findings_event

RADIOLOGIST = "Practitioner/rad-1"
MM = {"unit": "mm", "system": codes.UCUM, "code": "mm"}


def nodule(
    local_id: str = "n1",
    *,
    long_mm: float | None = 7.0,
    short_mm: float | None = 6.0,
    composition: tuple[str, str] = (codes.SNOMED_CT, "35702001"),
    solid_part_mm: float | None = None,
    unit: dict[str, str] = MM,
) -> dict[str, Any]:
    """A solid 7 x 6 mm nodule of the right upper lobe, as a radiologist's reporting tool would send it."""
    obs: dict[str, Any] = {
        "resourceType": "Observation",
        "id": local_id,
        "status": "final",
        "code": {"coding": [{"system": codes.SNOMED_CT, "code": "427359005", "display": "Solitary nodule of lung"}]},
        "bodySite": {"coding": [{"system": codes.SNOMED_CT, "code": "45653009", "display": "RUL"}]},
        "component": [
            {
                "code": {"coding": [{"system": codes.RADCDS_MEASUREMENT, "code": "nodule-composition"}]},
                "valueCodeableConcept": {"coding": [{"system": composition[0], "code": composition[1]}]},
            }
        ],
    }
    if long_mm is not None:
        obs["valueQuantity"] = {"value": long_mm, **unit}
    if short_mm is not None:
        obs["component"].append(
            {
                "code": {"coding": [{"system": codes.SNOMED_CT, "code": "103340004"}]},
                "valueQuantity": {"value": short_mm, **MM},
            }
        )
    if solid_part_mm is not None:
        obs["component"].append(
            {
                "code": {"coding": [{"system": codes.RADCDS_MEASUREMENT, "code": "solid-part-mean-diameter"}]},
                "valueQuantity": {"value": solid_part_mm, **MM},
            }
        )
    return obs


def with_findings(report: dict[str, Any], *findings: dict[str, Any], status: str = "final") -> dict[str, Any]:
    """The report as read, signed by the radiologist with ``findings`` contained and listed in ``result``."""
    body = copy.deepcopy(report)
    body["status"] = status
    body["resultsInterpreter"] = [{"reference": RADIOLOGIST}]
    body["contained"] = list(findings)
    body["result"] = body.get("result", []) + [{"reference": f"#{f['id']}"} for f in findings]
    return body


@pytest.fixture
def publisher() -> RecordingPublisher:
    return RecordingPublisher()


@pytest.fixture
def client(engine, tmp_path, clock, publisher):
    ReportingService(
        engine=engine, relay=OutboxRelay(engine, publisher, name="reporting-outbox"), consumer_group="g", clock=clock
    ).handle(findings_event("e1", STUDY + ".1.1"))
    settings = ReportingSettings(data_dir=tmp_path, fhir_base_url="http://testserver/fhir", mllp_enabled=False)
    parts = build_components(settings, engine=engine, publisher=publisher, clock=clock, consume=False)
    with TestClient(create_app(settings, components=parts)) as c:
        yield c


def _report(client: TestClient) -> dict[str, Any]:
    return client.get("/fhir/DiagnosticReport").json()["entry"][0]["resource"]


def _entered(publisher: RecordingPublisher) -> list[StructuredFindingsEntered]:
    return [StructuredFindingsEntered.from_payload(p) for k, p, _, _ in publisher.events if k is FINDINGS_ENTERED]


def test_signed_report_with_a_contained_nodule_stores_the_radiologists_observation_and_enqueues_the_event(
    client, publisher
):
    dr = _report(client)
    r = client.put(f"/fhir/DiagnosticReport/{dr['id']}", json=with_findings(dr, nodule()))
    assert r.status_code == 200, r.text
    stored = r.json()
    assert stored["status"] == "final" and "contained" not in stored
    ref = stored["result"][-1]["reference"]
    assert ref.startswith("Observation/") and len(stored["result"]) == len(dr["result"]) + 1
    obs = client.get(f"/fhir/{ref}").json()
    assert obs["status"] == "final"
    assert obs["performer"] == [{"reference": RADIOLOGIST}]
    assert obs["method"]["coding"][0]["code"] == "radiologist-entered"
    assert obs["valueQuantity"] == {"value": 7.0, **MM}
    assert obs["bodySite"]["coding"][0] == {
        "system": codes.SNOMED_CT,
        "code": "45653009",
        "display": "Upper lobe of right lung",
    }
    assert obs["derivedFrom"] == dr["imagingStudy"] and obs["subject"] == dr["subject"]
    (event,) = _entered(publisher)
    assert (event.diagnostic_report_id, event.version_id, event.study_instance_uid) == (dr["id"], "2", STUDY)
    assert event.patient_id == dr["subject"]["reference"].removeprefix("Patient/")
    assert event.patient_identifier is not None and event.patient_identifier[1] == "PID-1"
    assert event.entered_by == RADIOLOGIST and event.modalities == ("CT",) and event.study_date == "2026-01-02"
    (found,) = event.findings
    assert (found.observation_id, found.long_axis_mm, found.short_axis_mm, found.composition) == (
        ref.removeprefix("Observation/"),
        7.0,
        6.0,
        "solid",
    )
    assert found.finding.code == "427359005" and found.body_site.code == "45653009"
    # the radiologist's finding is not counted as an algorithm measurement in the signed conclusion
    assert f"{len(dr['result'])} algorithm measurement(s)" in stored["conclusion"]
    # but the signed readable report lists it, as the radiologist's
    assert "<td>7 mm</td><td>radiologist</td>" in presented_html(stored)
    assert [k for k, _, _, _ in publisher.events][-2:] == [REPORT_STORED, FINDINGS_ENTERED]


def test_part_solid_nodule_with_its_solid_part_is_stored_in_millimetres(client, publisher):
    dr = _report(client)
    part_solid = nodule(composition=(codes.RADCDS_MEASUREMENT, "part-solid"), long_mm=12, short_mm=10, solid_part_mm=5)
    assert client.put(f"/fhir/DiagnosticReport/{dr['id']}", json=with_findings(dr, part_solid)).status_code == 200
    (found,) = _entered(publisher)[-1].findings
    assert (found.composition, found.solid_part_mm) == ("part-solid", 5.0)


def test_resending_a_changed_size_amends_the_signed_report_and_versions_the_same_observation(client, publisher):
    dr = _report(client)
    signed = client.put(f"/fhir/DiagnosticReport/{dr['id']}", json=with_findings(dr, nodule())).json()
    body = copy.deepcopy(signed)
    body["result"] = [r for r in body["result"] if r != signed["result"][-1]] + [{"reference": "#n1"}]
    body["contained"] = [nodule(long_mm=8.0)]
    r = client.put(f"/fhir/DiagnosticReport/{dr['id']}", json=body)
    assert r.status_code == 200 and r.json()["status"] == "amended"
    assert r.json()["result"] == signed["result"]
    obs = client.get(f"/fhir/{signed['result'][-1]['reference']}").json()
    assert obs["meta"]["versionId"] == "2" and obs["valueQuantity"]["value"] == 8.0
    assert [e.findings[0].long_axis_mm for e in _entered(publisher)] == [7.0, 8.0]


def test_dropping_the_finding_from_result_withdraws_it_and_announces_an_empty_set(client, publisher):
    dr = _report(client)
    signed = client.put(f"/fhir/DiagnosticReport/{dr['id']}", json=with_findings(dr, nodule())).json()
    body = copy.deepcopy(signed) | {"result": signed["result"][:-1]}
    assert client.put(f"/fhir/DiagnosticReport/{dr['id']}", json=body).status_code == 200
    assert client.get(f"/fhir/{signed['result'][-1]['reference']}").json()["status"] == "entered-in-error"
    assert _entered(publisher)[-1].findings == ()


def test_sign_off_without_findings_publishes_no_findings_event(client, publisher):
    dr = _report(client)
    body = copy.deepcopy(dr) | {"status": "final", "resultsInterpreter": [{"reference": RADIOLOGIST}]}
    assert client.put(f"/fhir/DiagnosticReport/{dr['id']}", json=body).status_code == 200
    assert _entered(publisher) == []


@pytest.mark.parametrize(
    ("finding", "status", "code", "expression"),
    [
        (
            nodule(unit={"unit": "cm", "system": codes.UCUM, "code": "cm"}),
            422,
            "value",
            "contained[0].valueQuantity.code",
        ),
        (nodule(unit={"unit": "mm"}), 422, "value", "contained[0].valueQuantity.code"),
        (nodule(long_mm=None), 422, "required", "contained[0].valueQuantity"),
        (
            nodule(composition=(codes.SNOMED_CT, "12345678")),
            422,
            "code-invalid",
            "contained[0].component[0].valueCodeableConcept",
        ),
        (nodule(long_mm=5.0, short_mm=6.0), 422, "invariant", "contained[0].component[1].valueQuantity"),
        (nodule(long_mm=0), 422, "value", "contained[0].valueQuantity.value"),
        (nodule(composition=(codes.RADCDS_MEASUREMENT, "part-solid")), 422, "required", "contained[0].component"),
        (nodule(solid_part_mm=3.0), 422, "invariant", "contained[0].component[2].valueQuantity"),
        (
            nodule() | {"code": {"coding": [{"system": codes.SNOMED_CT, "code": "4147007"}]}},
            422,
            "code-invalid",
            "contained[0].code",
        ),
        (nodule() | {"bodySite": {"text": "right upper lobe"}}, 422, "code-invalid", "contained[0].bodySite"),
        (nodule() | {"effectiveDateTime": "yesterday"}, 400, "structure", "contained[0]"),
    ],
    ids=[
        "centimetres",
        "unit-without-ucum",
        "missing-size",
        "unknown-composition",
        "short-above-long",
        "zero-size",
        "part-solid-without-solid-part",
        "solid-part-of-a-solid-nodule",
        "not-a-nodule-code",
        "site-without-snomed",
        "not-valid-r4",
    ],
)
def test_bad_finding_is_refused_with_an_operation_outcome_naming_the_element_and_nothing_is_stored(
    client, publisher, finding, status, code, expression
):
    dr = _report(client)
    r = client.put(f"/fhir/DiagnosticReport/{dr['id']}", json=with_findings(dr, finding))
    assert r.status_code == status, r.text
    (issue,) = r.json()["issue"]
    assert r.json()["resourceType"] == "OperationOutcome" and issue["code"] == code
    assert issue["expression"] == [f"DiagnosticReport.{expression}"]
    assert _report(client)["status"] == "preliminary" and _entered(publisher) == []


def test_contained_observation_not_referenced_from_result_is_refused(client):
    dr = _report(client)
    body = with_findings(dr, nodule())
    body["result"] = dr["result"]
    r = client.put(f"/fhir/DiagnosticReport/{dr['id']}", json=body)
    assert r.status_code == 422 and r.json()["issue"][0]["expression"] == ["DiagnosticReport.contained[0].id"]


def test_findings_without_a_radiologist_are_refused(client):
    dr = _report(client)
    body = with_findings(dr, nodule(), status="preliminary")
    del body["resultsInterpreter"]
    r = client.put(f"/fhir/DiagnosticReport/{dr['id']}", json=body)
    assert r.status_code == 422 and r.json()["issue"][0]["expression"] == ["DiagnosticReport.resultsInterpreter"]
