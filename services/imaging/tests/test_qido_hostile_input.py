"""Hostile input to imaging's QIDO-RS (issue #15): SQL metacharacters in every query key and in the UIDs of
the study- and series-scoped search paths (DICOM PS3.18 10.6).

Search values are bound parameters and QIDO-RS wildcards are ``*`` and ``?`` only (PS3.4 C.2.2.2.4), so SQL
text, SQL LIKE wildcards (``%``, ``_``) and a NUL are plain characters: the search matches nothing (204, PS3.18
10.6.3.2: no matches), or, where a value of that VR or key cannot be, the request is refused (400, PS3.18
8.6.3); never a 500, and no row changes. A 200 may only return what the same search without the key returns
(a control key that is ignored). Imaging takes no JSON request body (STOW-RS is multipart/related), so there
is no nested-JSON test here; a JSON body to STOW-RS is a 415.

The app is built as ``test_imaging_service.py`` builds it (SQLite, a filesystem store, a recording publisher,
no DIMSE listener), holding pydicom's CT_small.dcm and MR_small.dcm, stored through STOW's use case.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from fastapi.testclient import TestClient
from pydicom.data import get_testdata_file
from sqlalchemy import select

from radcds.adapters.db.engine import make_engine, migrate, sqlite_url
from radcds_devstack.testing import RecordingPublisher
from radcds_imaging.app import ImagingComponents, build_components, create_app
from radcds_imaging.db.tables import dicom_instance_attributes, dicom_instances
from radcds_imaging.domain.qido import ATTRIBUTES
from radcds_imaging.settings import ImagingSettings

SOP_UID = "00080018"
SQL = [
    "' OR '1'='1",
    "1; DROP TABLE dicom_instances--",
    "%",
    "_",
    "\x00",
    "' UNION SELECT * FROM dicom_instances--",
    '1" OR "1"="1',
]
#: The matching keys of PS3.18 Table 10.6.1-5 that imaging answers, and the control keys of Table 10.6.1-2.
MATCHING_KEYS = sorted(k for k, a in ATTRIBUTES.items() if a.match)
CONTROL_KEYS = ["limit", "offset", "includefield", "fuzzymatching"]
#: Keys matched with wildcards (PS3.4 C.2.2.2.4): the payload is also sent inside ``*...*``.
WILDCARD_KEYS = sorted(k for k, a in ATTRIBUTES.items() if a.match in ("text", "person_name"))
SCOPED = [
    "/dicom-web/studies/{0}/series",
    "/dicom-web/studies/{0}/instances",
    "/dicom-web/studies/{0}/series/{0}/instances",
]


@pytest.fixture(scope="module")
def imaging(tmp_path_factory) -> tuple[ImagingComponents, TestClient]:
    scratch = tmp_path_factory.mktemp("imaging-hostile")
    config = ImagingSettings(storage_dir=scratch / "store", dimse_enabled=False, public_base_url="http://testserver")
    engine = make_engine(sqlite_url(scratch / "imaging.db"))
    migrate(engine, chain="radcds_imaging.db")
    parts = build_components(config, engine=engine, publisher=RecordingPublisher())
    files = [Path(get_testdata_file(name)).read_bytes() for name in ("CT_small.dcm", "MR_small.dcm")]
    outcome = parts.service.store_instances(parts=files)
    assert len(outcome.stored) == 2 and not outcome.failed
    # not entered as a context manager: the lifespan would start the study announcer, which these tests do not need
    return parts, TestClient(create_app(config, components=parts))


def rows(parts: ImagingComponents) -> list[Any]:
    with parts.engine.connect() as conn:
        return [
            sorted(tuple(map(str, r)) for r in conn.execute(select(table)))
            for table in (dicom_instances, dicom_instance_attributes)
        ]


def sop_uids(answer: Any) -> set[str]:
    return {m[SOP_UID]["Value"][0] for m in answer.json()} if answer.status_code == 200 else set()


def assert_nothing_extra(client: TestClient, answer: Any, baseline: str) -> None:
    assert answer.status_code in (200, 204, 400), answer.text
    if answer.status_code == 400:
        assert answer.json()["error"]
    if answer.status_code == 200:
        assert sop_uids(answer) <= sop_uids(client.get(baseline))


@pytest.mark.parametrize("value", SQL)
@pytest.mark.parametrize("key", MATCHING_KEYS + CONTROL_KEYS)
def test_sql_in_a_query_key_matches_nothing_or_is_a_400_and_no_row_changes(imaging, key, value):
    parts, client = imaging
    before = rows(parts)
    answer = client.get("/dicom-web/instances", params={key: value})
    assert_nothing_extra(client, answer, "/dicom-web/instances")
    if key in MATCHING_KEYS:
        assert answer.status_code in (204, 400), answer.text
    assert rows(parts) == before


@pytest.mark.parametrize("value", ["%", "_", "' OR '1'='1", "\x00"])
@pytest.mark.parametrize("key", WILDCARD_KEYS)
def test_sql_wildcards_inside_a_qido_wildcard_are_literal_characters(imaging, key, value):
    parts, client = imaging
    before = rows(parts)
    # no stored value holds these characters, so *%* and *_* match nothing (an unescaped LIKE would match all);
    # *\x00* matched every instance (SQLite's LIKE ends the pattern at a NUL) until a NUL became a 400
    answer = client.get("/dicom-web/instances", params={key: f"*{value}*"})
    assert answer.status_code in (204, 400), answer.text
    assert rows(parts) == before


@pytest.mark.parametrize("value", SQL)
@pytest.mark.parametrize("path", SCOPED)
def test_sql_in_the_uid_of_a_scoped_search_matches_nothing_and_no_row_changes(imaging, path, value):
    parts, client = imaging
    before = rows(parts)
    answer = client.get(path.format(quote(value, safe="")))
    assert answer.status_code in (204, 400), answer.text
    assert rows(parts) == before


def test_a_nul_in_a_qido_value_or_path_uid_is_a_400(imaging):
    _, client = imaging
    assert client.get("/dicom-web/studies", params={"PatientName": "*\x00*"}).status_code == 400
    assert client.get("/dicom-web/instances", params={"StudyInstanceUID": "1.2\x00"}).status_code == 400
    assert client.get("/dicom-web/studies/" + quote("1.2\x00") + "/series").status_code == 400


@pytest.mark.parametrize("level", ["studies", "series", "instances"])
def test_sql_in_every_key_at_once_at_each_level_matches_nothing_or_is_a_400(imaging, level):
    parts, client = imaging
    before = rows(parts)
    for value in SQL:
        answer = client.get(f"/dicom-web/{level}", params=[(k, value) for k in MATCHING_KEYS])
        assert answer.status_code in (204, 400), answer.text
    assert rows(parts) == before


def test_a_json_body_nested_100000_deep_to_stow_rs_is_a_415_and_nothing_is_stored(imaging):
    parts, client = imaging
    before = rows(parts)
    answer = client.post(
        "/dicom-web/studies", content="[" * 100_000 + "]" * 100_000, headers={"content-type": "application/json"}
    )
    assert answer.status_code == 415, answer.text
    assert rows(parts) == before
