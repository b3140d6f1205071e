"""The radiologist's worklist in a real browser against the real stack (issue #13): Debian's Chromium, headless,
driven by Python playwright (no browser download), signing in through the stack's OpenID Provider (npm
oidc-provider) with the authorization code flow and PKCE, as a radiologist would.

In order, on one stack:
1. A radiologist has the list open; a derived-positive head CT (a disc of acute-blood density inserted into a real
   CQ500 slice, tools/devstack samples) is sent over STOW-RS and appears at the top of the list as critical, live,
   without a reload.
2. Opened from the keyboard, its key image shows the AI overlay (the region outlined), which a key hides.
3. The radiologist rejects the finding as a false positive; 4. the monitoring page shows the rejection.
5. A viewer opens the chest CR and cannot sign; 6. two radiologists: the lock names its holder, the second one
   cannot sign.
7. The first radiologist accepts the chest CR: the DiagnosticReport is final, signed by them, and the final ORU
   (OBR-25 F) reaches the MLLP peer, which ACKs it (AA recorded by reporting).

Screenshots go to ``test-output/worklist/`` (docs/worklist.md shows them). Run under ``flock /tmp/radcds-it.lock``.
"""

from __future__ import annotations

import io
import os
import re
from collections.abc import Iterator
from pathlib import Path

import pydicom
import pytest
from playwright.sync_api import sync_playwright
from sqlalchemy import Engine, select

from radcds.adapters.db.engine import make_engine, sqlite_url
from radcds_devstack.demo import chest_radiograph, stow, with_fresh_uids
from radcds_devstack.samples import head_ct_with_hyperdense_disc, part10
from radcds_devstack.stack import LocalStack
from radcds_reporting.db.tables import hl7_outbound_messages

from .helpers import eventually, fhir

pytestmark = [pytest.mark.integration, pytest.mark.kafka, pytest.mark.triton, pytest.mark.browser]

ROOT = Path(__file__).resolve().parents[2]
SHOTS = Path(os.environ.get("RADCDS_TEST_OUTPUT", ROOT / "test-output")) / "worklist"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
#: Seconds a page may take to show what the stack produces (a deadline, not an assertion on speed).
PIPELINE_S = 240


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    assert Path(CHROMIUM).exists(), "Debian's chromium is installed by make deps (deploy/local/system-deps.sh)"
    with sync_playwright() as p:
        launched = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield launched
        launched.close()


def base(stack: LocalStack) -> str:
    return f"http://{stack.host}:{stack.ports.worklist}"


def signed_in(browser, stack: LocalStack, login: str, path: str = "/"):  # type: ignore[no-untyped-def]
    """A new browser context signed in as ``login`` through the provider's login (and consent) forms."""
    context = browser.new_context(viewport={"width": 1600, "height": 1000})
    page = context.new_page()
    page.set_default_timeout(60_000)
    page.goto(base(stack) + path)
    for _ in range(6):
        if page.url.startswith(base(stack)) and "/login" not in page.url:
            return context, page
        if page.locator("input[name=login]").count():
            page.fill("input[name=login]", login)
            page.fill("input[name=password]", "any")  # devInteractions: the password is not checked
        page.locator("button[type=submit], button").first.click()
        page.wait_for_load_state()
    raise AssertionError(f"sign-in as {login} did not come back to the worklist: {page.url}")


def shot(page, name: str) -> None:  # type: ignore[no-untyped-def]
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


@pytest.fixture(scope="module")
def chest(stack: LocalStack) -> str:
    """The demo's chest CR (pydicom-data RG1_UNCI.dcm, fresh UIDs), sent once; its Study Instance UID."""
    data = with_fresh_uids(chest_radiograph())
    stow(stack, [data])
    return str(pydicom.dcmread(io.BytesIO(data)).StudyInstanceUID)


def service_database(stack: LocalStack, service: str) -> Engine:
    """A service's database, PostgreSQL or SQLite, as the stack runs it."""
    return make_engine(stack.database_url(service) or sqlite_url(stack.run_dir / "data" / service / f"{service}.db"))


@pytest.fixture(scope="module")
def state() -> dict[str, str]:
    """What one step leaves for the next (this module's tests run in order on one stack)."""
    return {}


def row(page, study: str):  # type: ignore[no-untyped-def]
    return page.locator(f'#rows tr[data-study="{study}"]')


#: The list's rows as [Study Instance UID, critical] pairs, top first.
CRITICAL_ROWS = (
    "() => Array.from(document.querySelectorAll('#rows tr[data-study]'))"
    ".map(r => [r.dataset.study, !!r.querySelector('.badge.critical')])"
)


def test_a_derived_positive_head_ct_appears_at_the_top_of_the_open_list_live(browser, stack, chest, state):
    context, page = signed_in(browser, stack, "dr-ada")
    # On a fresh stack the list holds no critical study, and the new one comes first. In a whole test session,
    # earlier tests' critical studies are still unread: critical results are read oldest first, so the new one
    # comes right after them, above every non-critical study.
    waiting = [uid for uid, critical in page.evaluate(CRITICAL_ROWS) if critical]
    page.evaluate("window.__notReloaded = true")
    ds, _ = head_ct_with_hyperdense_disc()
    study = str(ds.StudyInstanceUID)
    state["head"] = study
    stow(stack, [part10(ds)])
    page.wait_for_function(
        "uid => { const r = document.querySelector(`#rows tr[data-study='${uid}']`);"
        " return r && r.querySelector('.badge.critical'); }",
        arg=study,
        timeout=PIPELINE_S * 1000,
    )
    assert page.evaluate("window.__notReloaded") is True  # the row came over the live stream, not a reload
    assert page.evaluate("window.radcdsLive.received") >= 1
    rows = page.evaluate(CRITICAL_ROWS)
    position = [uid for uid, _ in rows].index(study)
    assert [uid for uid, _ in rows[:position]] == [uid for uid in waiting if uid in dict(rows)][:position]
    assert all(critical for _, critical in rows[: position + 1])
    assert position == len([uid for uid in waiting if uid in dict(rows)])
    text = row(page, study).inner_text()
    assert "Intracranial" in text or "hemorrhage" in text.lower()
    shot(page, "1-worklist-critical-first")
    context.close()


def test_opening_it_from_the_keyboard_shows_the_key_image_with_the_overlay_which_o_hides(browser, stack, state):
    context, page = signed_in(browser, stack, "dr-ada")
    row(page, state["head"]).wait_for()
    studies = [uid for uid, _ in page.evaluate(CRITICAL_ROWS)]
    selected = page.evaluate("document.querySelector('#rows tr.selected')?.dataset.study")
    steps = studies.index(state["head"]) - studies.index(selected)
    for _ in range(abs(steps)):
        page.keyboard.press("j" if steps > 0 else "k")
    assert page.evaluate("document.querySelector('#rows tr.selected')?.dataset.study") == state["head"]
    page.keyboard.press("Enter")
    page.wait_for_url(re.compile(r"/studies/"))
    page.locator("#key-image").wait_for()
    page.wait_for_function("() => document.getElementById('key-image').naturalWidth > 0")
    overlay = page.locator("#overlay")
    assert overlay.is_visible()
    assert overlay.locator("polygon.region, circle.region").count() == 1
    assert "brain window" in page.locator("figcaption").inner_text()
    shot(page, "2-study-overlay")
    page.keyboard.press("o")
    assert overlay.is_hidden()
    assert page.locator("#toggle-overlay").get_attribute("aria-pressed") == "false"
    shot(page, "3-study-overlay-hidden")
    page.keyboard.press("o")
    assert overlay.is_visible()
    context.close()


def test_rejecting_the_finding_with_a_reason_records_it(browser, stack, state):
    context, page = signed_in(browser, stack, "dr-ada", f"/studies/{state['head']}")
    card = page.locator(".finding-card", has=page.locator("form.reject")).first
    card.locator("select[name=reason]").select_option("false-positive")
    card.locator("input[name=text]").fill("calcified falx")
    with page.expect_navigation():
        card.locator("button.reject-button").click()
    assert "done=rejected" in page.url, page.content()[:3000]
    assert "Rejected: False positive (calcified falx)" in page.locator(".decision.rejected").inner_text()
    shot(page, "4-finding-rejected")
    context.close()


def test_the_rejection_shows_in_the_monitoring_view(browser, stack, state):
    context, page = signed_in(browser, stack, "dr-ada", "/monitoring/head_ct_hyperdensity/1")
    decisions = page.locator("#decisions").inner_text()
    assert re.search(r"Rejected\s+[1-9]\d* \(", decisions), decisions
    assert "False positive" in page.locator("#reasons").inner_text()
    assert page.locator("#drift").count() == 1
    shot(page, "5-monitoring")
    context.close()


def wait_for_draft(page, stack, study: str) -> None:  # type: ignore[no-untyped-def]
    """Reload the study page until reporting's draft is on it (the report is written after the models ran)."""

    def ready() -> bool:
        page.goto(f"{base(stack)}/studies/{study}")
        return page.locator("#report-status").inner_text().strip() == "preliminary"

    eventually(ready, timeout_s=PIPELINE_S, what="the draft report on the study page")


def test_a_viewer_reads_the_chest_cr_but_cannot_sign(browser, stack, chest):
    context, page = signed_in(browser, stack, "vic")
    wait_for_draft(page, stack, chest)
    assert page.locator("#accept").count() == 0
    assert "may read but not sign" in page.locator("#cannot-sign").inner_text()
    shot(page, "6-viewer-cannot-sign")
    csrf = page.evaluate("document.body.dataset.csrf")
    refused = page.request.post(f"{base(stack)}/studies/{chest}/accept", form={"csrf_token": csrf})
    assert refused.status == 403
    context.close()


def test_two_radiologists_the_lock_names_its_holder_and_the_second_cannot_sign(browser, stack, chest):
    ada_context, ada = signed_in(browser, stack, "dr-ada")
    wait_for_draft(ada, stack, chest)
    with ada.expect_navigation():
        ada.locator("#assign").click()
    assert "done=assigned" in ada.url, ada.locator("main").inner_text()[:2000]
    ben_context, ben = signed_in(browser, stack, "dr-ben", f"/studies/{chest}")
    assert "Being read by Dr Ada Lovelace" in ben.locator(".lockbar").inner_text()
    with ben.expect_navigation():
        ben.locator("#accept").click()
    assert "Dr Ada Lovelace is reading this study until" in ben.locator(".message.error").inner_text()
    shot(ben, "7-locked-by-another")
    ben_context.close()
    ada_context.close()


def test_accepting_the_chest_cr_makes_the_report_final_and_the_final_oru_is_acked(browser, stack, chest, engine_peer):
    context, page = signed_in(browser, stack, "dr-ada", f"/studies/{chest}")
    wait_for_draft(page, stack, chest)
    with page.expect_navigation():
        page.keyboard.press("a")
    assert "done=signed" in page.url, page.locator("main").inner_text()[:2000]
    assert page.locator("#report-status").inner_text().strip() == "final"
    shot(page, "8-signed")
    report_id = page.locator("#report-status").get_attribute("data-report")
    context.close()

    report = fhir(stack, f"DiagnosticReport/{report_id}")
    assert report["status"] == "final"
    assert report["resultsInterpreter"] == [{"reference": "Practitioner/dr-ada"}]
    final = eventually(
        lambda: [
            m
            for m in engine_peer.messages
            if str(m.segment("OBR")[25]) == "F" and str(m.segment("OBR")[32]).startswith("dr-ada")
        ],
        timeout_s=120,
        what="the final ORU at the MLLP peer",
    )
    assert final
    reporting = service_database(stack, "reporting")
    sent = hl7_outbound_messages.c

    def acked() -> list[tuple[str, str]]:
        with reporting.connect() as conn:
            rows = conn.execute(
                select(sent.state, sent.last_ack_code).where(sent.result_status == "F", sent.payload.like("%dr-ada%"))
            ).all()
        return [tuple(r) for r in rows]

    assert ("delivered", "AA") in eventually(acked, timeout_s=60, what="the peer's AA recorded by reporting")
    reporting.dispose()
