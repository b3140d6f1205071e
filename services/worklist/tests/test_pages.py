"""The worklist's pages over the whole app (development sign-in, SQLite, the reporting port faked by our own
fake): the list puts the critical study first, a study shows its findings with model, version and envelope, a
rejection needs the CSRF token and is recorded with its reason and shown in monitoring, accept signs as the
signed-in radiologist, a viewer cannot sign, and a second radiologist meets the first one's lock."""

from __future__ import annotations

import re

import pytest
from fastapi.testclient import TestClient

from radcds.domain.events import FINDING_FEEDBACK_RECORDED
from radcds_devstack.testing import RecordingPublisher
from radcds_worklist.app import WorklistComponents, build_components, create_app
from radcds_worklist.settings import WorklistSettings

from .test_handlers import STUDY, findings, report_stored, study_available
from .test_reading import FakeReporting

ROUTINE = "1.2.826.0.1.3680043.2.1125.8"


@pytest.fixture
def parts(tmp_path):
    settings = WorklistSettings(
        environment="test",
        auth_mode="development",
        database_url=f"sqlite:///{tmp_path / 'w.db'}",
        imaging_dicomweb_url="http://127.0.0.1:9/dicom-web",  # nothing listens: the pages do without the image
        model_manifest="models/manifest.json",
    )
    publisher = RecordingPublisher()
    components = build_components(settings, publisher=publisher, reporting=FakeReporting(), consume=False)
    components.published = publisher  # type: ignore[attr-defined]
    return settings, components


@pytest.fixture
def app(parts):
    settings, components = parts
    with TestClient(create_app(settings, components=components)) as client:
        seed(components)
        yield client


def seed(components: WorklistComponents) -> None:
    """A routine chest study and a critical head CT with its report, handled as the consumer would."""
    for event in (
        study_available("s2", ROUTINE, accession="ACC-8"),
        findings("f2", ROUTINE, model="chest_ctr"),
        study_available(),
        findings(critical=True),
        report_stored(),
    ):
        components.service.handle(event)


def sign_in(client: TestClient, login: str) -> str:
    form = client.get("/login")
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', form.text).group(1)
    assert client.post("/login", data={"login": login, "csrf_token": csrf}, follow_redirects=False).status_code == 303
    page = client.get(f"/studies/{STUDY}")
    return re.search(r'data-csrf="([^"]+)"', page.text).group(1)


def test_the_list_shows_the_critical_study_first_with_patient_and_finding(app):
    sign_in(app, "dr-ada")
    page = app.get("/")
    assert page.status_code == 200
    order = re.findall(r'<tr data-study="([^"]+)"', page.text)
    assert order == [STUDY, ROUTINE]
    assert "Doe, Jane" in page.text and "MRN MRN-7" in page.text
    assert "badge critical" in page.text
    assert re.findall(r'<tr data-study="([^"]+)"', app.get("/rows?status=to-read").text) == order


def test_every_page_forbids_foreign_scripts_framing_and_sniffing(app):
    sign_in(app, "dr-ada")
    headers = app.get("/").headers
    assert "script-src 'self'" in headers["content-security-policy"]
    assert "frame-ancestors 'none'" in headers["content-security-policy"]
    assert headers["x-content-type-options"] == "nosniff"
    assert headers["referrer-policy"] == "same-origin"


def test_a_page_without_sign_in_sends_the_browser_to_sign_in(app):
    response = app.get("/", follow_redirects=False)
    assert response.status_code == 303 and response.headers["location"].startswith("/login")


def test_the_study_shows_findings_with_model_version_and_envelope_and_the_draft(app):
    sign_in(app, "dr-ada")
    page = app.get(f"/studies/{STUDY}").text
    assert "head_ct_hyperdensity" in page and "version 1" in page
    assert "validated for CT, HEAD/BRAIN/SKULL" in page
    assert "AI draft" in page  # the conclusion read from reporting
    assert 'id="accept"' in page
    assert "StudyInstanceUIDs=" + STUDY in page


def test_rejecting_a_finding_needs_the_csrf_token_and_records_the_reason(app, parts):
    csrf = sign_in(app, "dr-ada")
    page = app.get(f"/studies/{STUDY}").text
    action = re.search(r'action="(/studies/[^"]+/reject)"', page).group(1)
    form = {"reason": "false-positive", "text": "calcification", "request_id": "r-1"}
    assert app.post(action, data=form, follow_redirects=False).status_code == 403
    done = app.post(action, data=form | {"csrf_token": csrf}, follow_redirects=False)
    assert done.status_code == 303 and done.headers["location"].endswith("?done=rejected")
    assert "Rejected: False positive (calcification)" in app.get(done.headers["location"]).text
    _, components = parts
    components.relay.drain()
    (event,) = [e for e in components.published.events if e[0] == FINDING_FEEDBACK_RECORDED]
    assert event[1]["action"] == "rejected" and event[1]["reasonCode"] == "false-positive"
    assert event[1]["practitioner"] == "Practitioner/dr-ada"
    monitoring = app.get("/monitoring/head_ct_hyperdensity/1").text
    assert "False positive" in monitoring and 'class="rejected">1 (100 %)' in monitoring


def test_accept_signs_as_the_signed_in_radiologist(app, parts):
    csrf = sign_in(app, "dr-ada")
    done = app.post(f"/studies/{STUDY}/accept", data={"csrf_token": csrf}, follow_redirects=False)
    assert done.status_code == 303
    _, components = parts
    assert components.reporting.signed[0][:2] == ("accept", "Practitioner/dr-ada")


def test_a_viewer_reads_but_cannot_sign(app, parts):
    csrf = sign_in(app, "vic")
    page = app.get(f"/studies/{STUDY}").text
    assert 'id="accept"' not in page and "may read but not sign" in page
    refused = app.post(f"/studies/{STUDY}/accept", data={"csrf_token": csrf}, follow_redirects=False)
    assert refused.status_code == 403
    _, components = parts
    assert components.reporting.signed == []


def test_a_second_radiologist_sees_who_holds_the_lock_and_cannot_sign(parts, app):
    settings, components = parts
    csrf = sign_in(app, "dr-ada")
    assert app.post(f"/studies/{STUDY}/assign", data={"csrf_token": csrf}, follow_redirects=False).status_code == 303
    with TestClient(create_app(settings, components=components)) as ben:
        ben_csrf = sign_in(ben, "dr-ben")
        page = ben.get(f"/studies/{STUDY}").text
        assert "Being read by <strong>Dr Ada" in page
        refused = ben.post(f"/studies/{STUDY}/accept", data={"csrf_token": ben_csrf}, follow_redirects=False)
        assert refused.status_code == 409 and "is reading this study until" in refused.text
    assert components.reporting.signed == []
