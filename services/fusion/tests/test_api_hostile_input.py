"""Hostile input to fusion's FHIR API (issue #15): deeply nested and malformed ``$cancel`` bodies, and SQL
metacharacters in every search parameter.

A body nested 100,000 levels deep exhausts Python's JSON decoder (RecursionError); malformed input must get a
4xx OperationOutcome (FHIR R4 3.1.0.4, RFC 9110 15.5), never a 500. Search values are bound parameters, so SQL
text, LIKE wildcards (``%``, ``_``) and a NUL are plain strings: the search finds nothing extra (200) or refuses
the value (400), and no row changes. The app is built as ``test_api.py`` builds it (SQLite, a recording
publisher, no Kafka consumer).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date
from typing import Any
from urllib.parse import quote

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from radcds.adapters.db.engine import make_engine, sqlite_url
from radcds_devstack.testing import RecordingPublisher
from radcds_fusion.adapters.sr_nodules import ReportedNodule
from radcds_fusion.app import FusionComponents, build_components, create_app
from radcds_fusion.db.tables import fusion_recommendations
from radcds_fusion.domain.context import PatientRef
from radcds_fusion.domain.nodules import Composition, Nodule
from radcds_fusion.settings import FusionSettings

DEPTH = 100_000
NESTED = {
    "arrays": "[" * DEPTH + "]" * DEPTH,
    "objects": '{"a":' * DEPTH + "1" + "}" * DEPTH,
    "parameter arrays": '{"resourceType":"Parameters","parameter":' + "[" * DEPTH + "]" * DEPTH + "}",
}
SQL = [
    "' OR '1'='1",
    "1; DROP TABLE fusion_recommendations--",
    "%",
    "_",
    "\x00",
    "' UNION SELECT data, version FROM fusion_recommendations--",
    'patient-1" OR "1"="1',
]
SEARCH_PARAMETERS = ["patient", "patient.identifier", "status", "_tag"]


def recommend(parts: FusionComponents) -> str:
    """One recommendation of patient-1 (an 8 mm solid nodule), as ``test_api.py`` records it."""
    nodule = Nodule(Composition.SOLID, 8.2, 7.8, location="Upper lobe of right lung")
    reported = ReportedNodule(nodule, ("SCT", "427359005", "Solitary nodule of lung"), "1.9", "n1", None, None)
    parts.service.record_measurement_report(
        event_id="sr-1",
        patient=PatientRef("patient-1", "MRN-1", "HOSP"),
        study_uid="1.2.9.2",
        study_date=date(2026, 12, 1),
        sr_instance_uid="1.2.9.2.9",
        nodules=[reported],
    )
    return parts.queries.search(patient_id="patient-1", states=None)[0][0].id


@pytest.fixture(scope="module")
def fusion(tmp_path_factory) -> Iterator[tuple[FusionComponents, TestClient, str]]:
    scratch = tmp_path_factory.mktemp("fusion-hostile")
    config = FusionSettings(environment="test", data_dir=scratch, ehr_patient_identifier_system="urn:oid:1.2.3")
    engine = make_engine(sqlite_url(scratch / "fusion.db"))
    parts = build_components(config, engine=engine, publisher=RecordingPublisher(), consume=False)
    with TestClient(create_app(config, components=parts)) as client:
        yield parts, client, recommend(parts)


def rows(parts: FusionComponents) -> list[Any]:
    with parts.engine.connect() as conn:
        return [tuple(r) for r in conn.execute(select(fusion_recommendations).order_by(fusion_recommendations.c.id))]


def assert_outcome(answer: Any, status: int = 400) -> None:
    assert answer.status_code == status, answer.text
    assert answer.headers["content-type"].startswith("application/fhir+json")
    assert answer.json()["resourceType"] == "OperationOutcome"


@pytest.mark.parametrize("media_type", ["application/fhir+json", "application/json"])
@pytest.mark.parametrize("shape", sorted(NESTED))
def test_cancel_body_nested_100000_deep_is_a_400_operation_outcome_and_nothing_changes(fusion, shape, media_type):
    parts, client, rec_id = fusion
    before = rows(parts)
    answer = client.post(
        f"/fhir/ServiceRequest/{rec_id}/$cancel", content=NESTED[shape], headers={"content-type": media_type}
    )
    assert_outcome(answer)
    assert rows(parts) == before


@pytest.mark.parametrize(
    "body",
    [
        pytest.param("not JSON", id="not-json"),
        pytest.param(b"\xff\xfe", id="not-utf8"),
        pytest.param("[1]", id="array"),
        pytest.param('"Parameters"', id="string"),
        # each of these was a 500 (TypeError or AttributeError) before the route checked the shapes
        pytest.param('{"resourceType":"Parameters","parameter":5}', id="parameter-not-a-list"),
        pytest.param('{"resourceType":"Parameters","parameter":[{"name":[]}]}', id="name-not-a-string"),
        pytest.param(
            '{"resourceType":"Parameters","parameter":[{"name":"reason","valueString":"moved"},'
            '{"name":"practitioner","valueReference":"Practitioner/7"}]}',
            id="valueReference-not-an-object",
        ),
        pytest.param(
            '{"resourceType":"Parameters","parameter":[{"name":"reason","valueString":{"text":"moved"}},'
            '{"name":"practitioner","valueReference":{"reference":"Practitioner/7"}}]}',
            id="valueString-not-a-string",
        ),
    ],
)
def test_cancel_body_of_the_wrong_shape_is_a_400_operation_outcome_and_nothing_changes(fusion, body):
    parts, client, rec_id = fusion
    before = rows(parts)
    answer = client.post(
        f"/fhir/ServiceRequest/{rec_id}/$cancel", content=body, headers={"content-type": "application/fhir+json"}
    )
    assert_outcome(answer)
    assert rows(parts) == before
    assert client.get(f"/fhir/ServiceRequest/{rec_id}").json()["status"] == "active"


@pytest.mark.parametrize("value", SQL)
@pytest.mark.parametrize("name", SEARCH_PARAMETERS)
def test_sql_in_a_search_parameter_finds_nothing_extra_or_is_a_400_and_no_row_changes(fusion, name, value):
    parts, client, _ = fusion
    before = rows(parts)
    answer = client.get("/fhir/ServiceRequest", params={name: value})
    if answer.status_code == 400:
        assert_outcome(answer)
    else:
        assert answer.status_code == 200, answer.text
        assert answer.json()["total"] == 0 and answer.json()["entry"] == []
    assert rows(parts) == before


@pytest.mark.parametrize("value", SQL)
def test_sql_in_the_read_id_is_a_404_operation_outcome_and_no_row_changes(fusion, value):
    parts, client, _ = fusion
    before = rows(parts)
    assert_outcome(client.get(f"/fhir/ServiceRequest/{quote(value, safe='')}"), 400 if "\x00" in value else 404)
    assert rows(parts) == before


@pytest.mark.parametrize("name", SEARCH_PARAMETERS)
def test_nul_in_a_search_parameter_is_a_400_operation_outcome_not_a_query(fusion, name):
    """Regression: a NUL reached the query; psycopg refuses NUL in a PostgreSQL text parameter (a 500 there)."""
    parts, client, _ = fusion
    before = rows(parts)
    assert_outcome(client.get("/fhir/ServiceRequest", params={name: "patient-1\x00"}))
    assert rows(parts) == before


def test_nul_in_the_read_id_is_a_400_operation_outcome(fusion):
    _, client, rec_id = fusion
    assert_outcome(client.get(f"/fhir/ServiceRequest/{quote(rec_id + chr(0), safe='')}"))
