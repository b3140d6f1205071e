"""Hostile input to the worklist's pages (issue #15): SQL and HTML/script payloads in every query parameter and
form field a signed-in radiologist can send, and JSON bodies (plain and nested 100,000 deep) where forms are
expected.

Every answer is a 2xx, a 3xx after a form, or a 4xx, never a 5xx (RFC 9110 15.6); a filter payload finds no
study beyond what the unfiltered list shows and changes no row; a payload echoed into a page is escaped (the
templates autoescape: HTML Living Standard 13.1.2, OWASP XSS Prevention Cheat Sheet rule 1). The app is built as
``test_pages.py`` builds it.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
from sqlalchemy import select

from radcds_worklist.db.tables import metadata

from .test_handlers import STUDY
from .test_pages import ROUTINE, sign_in
from .test_pages import app as app  # the fixtures, shared
from .test_pages import parts as parts

SQL = [
    "' OR '1'='1",
    "1; DROP TABLE worklist_studies--",
    "%",
    "_",
    "\x00",
    "' UNION SELECT study_uid FROM worklist_studies--",
    'CT" OR "1"="1',
]
SCRIPT = ["<script>alert(1)</script>", '"><img src=x onerror=alert(1)>', "javascript:alert(1)"]
FILTERS = ["modality", "status", "priority", "mine"]
DEPTH = 100_000


def rows(parts: Any) -> dict[str, list[tuple[Any, ...]]]:
    _, components = parts
    with components.engine.connect() as conn:
        return {t.name: sorted(map(tuple, conn.execute(select(t))), key=repr) for t in metadata.sorted_tables}


def listed(page: str) -> list[str]:
    return re.findall(r'<tr data-study="([^"]+)"', page)


@pytest.mark.parametrize("value", SQL + SCRIPT)
@pytest.mark.parametrize("name", FILTERS)
@pytest.mark.parametrize("path", ["/", "/rows"])
def test_a_payload_in_a_list_filter_finds_nothing_extra_changes_nothing_and_is_escaped(app, parts, path, name, value):
    sign_in(app, "dr-ada")
    before = rows(parts)
    answer = app.get(path, params={name: value})
    assert answer.status_code in (200, 400, 422), answer.text[:300]
    if answer.status_code == 200:
        assert set(listed(answer.text)) <= {STUDY, ROUTINE}
        assert "<script>alert(1)" not in answer.text and "<img src=x" not in answer.text
    assert rows(parts) == before


@pytest.mark.parametrize("value", SCRIPT + SQL[:2])
def test_a_payload_in_a_rejection_text_is_stored_as_text_and_shown_escaped(app, parts, value):
    csrf = sign_in(app, "dr-ada")
    page = app.get(f"/studies/{STUDY}").text
    action = re.search(r'action="(/studies/[^"]+/reject)"', page).group(1)
    form = {"reason": "false-positive", "text": value, "request_id": "r-x", "csrf_token": csrf}
    done = app.post(action, data=form, follow_redirects=False)
    assert done.status_code == 303, done.text[:300]
    shown = app.get(done.headers["location"]).text
    assert "Rejected: False positive" in shown
    assert "<script>alert(1)" not in shown and "<img src=x" not in shown
    if value.startswith("<script>"):
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in shown
    monitoring = app.get("/monitoring/head_ct_hyperdensity/1")
    assert monitoring.status_code == 200
    assert "<script>alert(1)" not in monitoring.text and "<img src=x" not in monitoring.text


@pytest.mark.parametrize(
    "body",
    ["[" * DEPTH + "]" * DEPTH, '{"a":' * DEPTH + "1" + "}" * DEPTH, '{"reason": "false-positive"}'],
    ids=["nested arrays", "nested objects", "a JSON object"],
)
@pytest.mark.parametrize("target", ["reject", "sign-edited", "thresholds"])
def test_a_json_body_where_a_form_is_expected_is_a_4xx_and_changes_nothing(app, parts, target, body):
    csrf = sign_in(app, "dr-ada")
    page = app.get(f"/studies/{STUDY}").text
    urls = {
        "reject": re.search(r'action="(/studies/[^"]+/reject)"', page).group(1),
        "sign-edited": f"/studies/{STUDY}/sign-edited",
        "thresholds": "/monitoring/head_ct_hyperdensity/1/thresholds",
    }
    before = rows(parts)
    answer = app.post(
        urls[target],
        content=body,
        headers={"Content-Type": "application/json", "X-CSRF-Token": csrf},
        follow_redirects=False,
    )
    assert 400 <= answer.status_code < 500, (answer.status_code, answer.text[:300])
    assert rows(parts) == before
