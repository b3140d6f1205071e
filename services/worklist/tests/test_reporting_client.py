"""The worklist's client of reporting's FHIR API, against reporting's real app in-process (SQLite; no mock of
httpx): a draft DiagnosticReport is read with its version, signed by the user's Practitioner with a JSON Patch and
If-Match, signed edited (conclusion and a radiologist's nodule as a structured finding), and reporting's refusals
come back as the worklist's errors."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from fastapi.testclient import TestClient

from radcds.adapters.db.engine import make_engine, migrate, sqlite_url
from radcds.adapters.db.outbox import OutboxRelay
from radcds.adapters.kafka.codec import decode, encode
from radcds.domain import codes
from radcds.domain.events import FINDINGS_ENTERED, FINDINGS_PRODUCED, REPORT_STORED, ImagingFindingsProduced
from radcds.domain.findings import ImageAnalysis, InstanceReference, Measurement, ModelIdentity, StudyContext
from radcds_devstack.testing import RecordingPublisher
from radcds_reporting.app import build_components, create_app
from radcds_reporting.handlers import ReportingService
from radcds_reporting.settings import ReportingSettings
from radcds_worklist.adapters.reporting import HttpReporting
from radcds_worklist.domain.ports import AddedNodule, ReportChanged, ReportNotFound, ReportRefused

STUDY = "1.2.826.0.1.3680043.2.1125.9"
CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
RADIOLOGIST = "Practitioner/dr-ada"


def _findings_event():
    analysis = ImageAnalysis(
        InstanceReference(STUDY, STUDY + ".1", STUDY + ".1.1", CT_IMAGE_STORAGE),
        StudyContext(patient_id="MRN-9", accession_number="ACC-9", modality="CT", study_date="20261201"),
        ModelIdentity("pixel_statistics", "1"),
        measurements=(Measurement(codes.MEAN_PIXEL_VALUE, -650.0, codes.UNIT_HOUNSFIELD),),
    )
    msg = encode(
        FINDINGS_PRODUCED, ImagingFindingsProduced(analysis).to_payload(), event_id="f1", source="/t", subject=STUDY
    )
    return decode(list(msg.headers.items()), None, msg.value)


@pytest.fixture
def publisher():
    return RecordingPublisher()


@pytest.fixture
def reporting(tmp_path, publisher):
    engine = make_engine(sqlite_url(tmp_path / "reporting.db"))
    migrate(engine, chain="radcds_reporting.db")
    clock = lambda: datetime(2026, 12, 1, 12, tzinfo=UTC)  # noqa: E731
    relay = OutboxRelay(engine, publisher, name="reporting-outbox")
    ReportingService(engine=engine, relay=relay, consumer_group="g", clock=clock).handle(_findings_event())
    settings = ReportingSettings(data_dir=tmp_path, fhir_base_url="http://testserver/fhir", mllp_enabled=False)
    parts = build_components(settings, engine=engine, publisher=publisher, clock=clock, consume=False)
    with TestClient(create_app(settings, components=parts)) as client:
        yield client
    engine.dispose()


@pytest.fixture
def client(reporting):
    return HttpReporting(reporting, base_url="http://testserver/fhir")


def _report_id(reporting) -> str:
    return str(reporting.get("/fhir/DiagnosticReport").json()["entry"][0]["resource"]["id"])


def test_draft_report_is_read_with_its_version_and_signed_final_by_the_users_practitioner(client, reporting):
    draft = client.read(_report_id(reporting), token=None)
    assert (draft.status, draft.version) == ("preliminary", "1")
    signed = client.sign(draft, practitioner=RADIOLOGIST, token=None)
    assert (signed.status, signed.version) == ("final", "2")
    stored = reporting.get(f"/fhir/DiagnosticReport/{draft.id}").json()
    assert stored["status"] == "final" and stored["resultsInterpreter"] == [{"reference": RADIOLOGIST}]


def test_signing_a_report_that_changed_since_it_was_read_is_refused_as_changed(client, reporting):
    draft = client.read(_report_id(reporting), token=None)
    client.sign(draft, practitioner=RADIOLOGIST, token=None)
    with pytest.raises(ReportChanged) as refused:
        client.sign(draft, practitioner="Practitioner/dr-bob", token=None)
    assert refused.value.status == 412


def test_an_unknown_report_is_not_found(client):
    with pytest.raises(ReportNotFound):
        client.read("no-such-report", token=None)


def test_signed_edited_report_carries_the_conclusion_and_the_radiologists_nodule(client, reporting, publisher):
    draft = client.read(_report_id(reporting), token=None)
    nodule = AddedNodule("n1", 7.0, "solid", "45653009", "Upper lobe of right lung", short_axis_mm=6.0)
    signed = client.sign_edited(
        draft, practitioner=RADIOLOGIST, conclusion="Solid 7 mm RUL nodule.", nodules=(nodule,), token=None
    )
    assert signed.status == "final" and signed.conclusion == "Solid 7 mm RUL nodule."
    entered = reporting.get(f"/fhir/{signed.resource['result'][-1]['reference']}").json()
    assert entered["valueQuantity"]["value"] == 7.0 and entered["performer"] == [{"reference": RADIOLOGIST}]
    kinds = [k for k, *_ in publisher.events]
    assert FINDINGS_ENTERED in kinds and REPORT_STORED in kinds


def test_a_nodule_reporting_refuses_comes_back_refused_naming_the_element(client, reporting):
    draft = client.read(_report_id(reporting), token=None)
    not_a_lobe = AddedNodule("n1", 7.0, "solid", "80891009")  # Heart: not a lung site
    with pytest.raises(ReportRefused) as refused:
        client.sign_edited(draft, practitioner=RADIOLOGIST, conclusion="x", nodules=(not_a_lobe,), token=None)
    assert refused.value.status == 422
    assert refused.value.expression == ("DiagnosticReport.contained[0].bodySite",)


def test_the_users_token_is_forwarded_as_a_bearer_token(client, reporting):
    report_id = _report_id(reporting)
    sent = []
    reporting.event_hooks["request"].append(lambda request: sent.append(request.headers.get("Authorization")))
    client.read(report_id, token="user-access-token")
    assert sent == ["Bearer user-access-token"]


def test_a_nodule_with_impossible_sizes_is_refused_before_sending():
    with pytest.raises(ValueError, match="short axis cannot exceed"):
        AddedNodule("n1", 5.0, "solid", "45653009", short_axis_mm=6.0)
    with pytest.raises(ValueError, match="part-solid"):
        AddedNodule("n1", 9.0, "part-solid", "45653009")
