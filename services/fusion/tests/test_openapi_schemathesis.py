"""Schemathesis against fusion's OpenAPI document (issue #15 "hostile input"; kit: radcds_devstack.openapi_testing).

Every operation of fusion's FHIR R4 API (ServiceRequest read and search, ``$cancel``), called with generated valid
and invalid data (the ``$cancel`` body after the Parameters schema the document declares) over ASGI to the app
``create_app`` builds with SQLite, a recording publisher port and the Kafka consumer off, holding one follow-up
recommendation from a measured solid nodule: never a 5xx, bodies and media types as documented (OperationOutcome
errors, ``application/fhir+json``, FastAPI's own 404/405/validation refusals included).

fusion's FHIR API takes no credentials (it answers radcds's own services inside the cluster), so there is no run
without them. About half of the calls name the recommendation that exists. No OpenAPI links: recommendations come
from events, and ``$cancel`` answers the resource itself rather than a link to it.
Profiles (root ``conftest.py``): ``ci`` by default, ``HYPOTHESIS_PROFILE=fuzz`` for a long run.
"""

from __future__ import annotations

from datetime import date

import pytest

from radcds.adapters.db.engine import make_engine, migrate, sqlite_url
from radcds_devstack.openapi_testing import CHECKS, openapi_schema, per_operation, steer_path_parameters
from radcds_devstack.testing import RecordingPublisher
from radcds_fusion.adapters.sr_nodules import ReportedNodule
from radcds_fusion.app import MIGRATION_CHAIN, build_components, create_app
from radcds_fusion.domain.context import PatientRef
from radcds_fusion.domain.nodules import Composition, Nodule
from radcds_fusion.settings import FusionSettings

pytestmark = pytest.mark.properties

MRN_SYSTEM = "urn:oid:1.2.3"
PATIENT = PatientRef("patient-1", "MRN-1", "HOSP")


def _document() -> dict:
    """The OpenAPI document of an app built for it alone (in-memory database; nothing started)."""
    settings = FusionSettings(environment="test", ehr_patient_identifier_system=MRN_SYSTEM)
    components = build_components(
        settings, engine=make_engine("sqlite://"), publisher=RecordingPublisher(), consume=False
    )
    return create_app(settings, components=components).openapi()


schema, app_under_test = openapi_schema(_document(), base_url="http://testserver")
#: The recommendations of the running test's database, filled by the ``fusion`` fixture.
known: list[dict[str, str]] = []
steer_path_parameters(schema, known)


@pytest.fixture
def fusion(tmp_path):
    settings = FusionSettings(environment="test", data_dir=tmp_path, ehr_patient_identifier_system=MRN_SYSTEM)
    parts = build_components(
        settings, engine=make_engine(sqlite_url(tmp_path / "fusion.db")), publisher=RecordingPublisher(), consume=False
    )
    migrate(parts.engine, chain=MIGRATION_CHAIN)  # the lifespan would, on the first call: the seed comes first
    _recommend(parts)
    with app_under_test.serving(create_app(settings, components=parts)):
        yield parts
    known.clear()


def _recommend(parts) -> None:
    """One recommendation: a solid 8 mm nodule measured in an SR (as tests/test_api.py makes it)."""
    nodule = Nodule(Composition.SOLID, 8.2, 7.8, location="Upper lobe of right lung")
    reported = ReportedNodule(nodule, ("SCT", "427359005", "Solitary nodule of lung"), "1.9", "n1", None, None)
    parts.service.record_measurement_report(
        event_id="sr-1",
        patient=PATIENT,
        study_uid="1.2.9.2",
        study_date=date(2026, 12, 1),
        sr_instance_uid="1.2.9.2.9",
        nodules=[reported],
    )
    known[:] = [{"rec_id": r.id} for r, _ in parts.queries.search(patient_id="patient-1", states=None)]


@schema.parametrize()
@per_operation(share=5)
def test_any_call_is_answered_as_documented(case, fusion):
    case.call_and_validate(checks=list(CHECKS))


def test_the_fixture_knows_the_recommendation(fusion):
    assert len(known) == 1
