"""``GET /live``: Server-Sent Events with ``id`` = seq, resumed after ``since`` or, on a reconnect, after the
``Last-Event-ID`` the browser sends; nothing missed, nothing twice; signed-in users only."""

from __future__ import annotations

import pytest
from fastapi import FastAPI, HTTPException, Request
from fastapi.testclient import TestClient
from sqlalchemy import create_engine

from radcds.adapters.db.engine import migrate
from radcds_worklist.adapters.db.live import append_live
from radcds_worklist.api.live import live_router


def signed_in(request: Request) -> str:
    if request.headers.get("x-test-user") != "dr-ada":
        raise HTTPException(401, "sign in")
    return "dr-ada"


@pytest.fixture
def engine(tmp_path):
    engine = create_engine(f"sqlite:///{tmp_path / 'w.db'}")
    migrate(engine, chain="radcds_worklist.db")
    with engine.begin() as conn:
        for n in range(1, 4):
            append_live(conn, "study", f"1.2.{n}", {"n": n})
    return engine


@pytest.fixture
def client(engine):
    app = FastAPI()
    app.include_router(live_router(engine, user=signed_in, poll_s=0.01, max_duration_s=0.2))
    return TestClient(app)


def messages(text: str) -> list[dict[str, str]]:
    out = []
    for block in text.split("\n\n"):
        fields = dict(line.split(": ", 1) for line in block.splitlines() if ": " in line and not line.startswith(":"))
        if "id" in fields:
            out.append(fields)
    return out


def test_the_stream_sends_every_change_after_since_in_order_with_its_seq_as_id(client):
    response = client.get("/live?since=1", headers={"x-test-user": "dr-ada"})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    got = messages(response.text)
    assert [m["id"] for m in got] == ["2", "3"]
    assert [m["event"] for m in got] == ["study", "study"]
    assert got[0]["data"] == '{"study_uid":"1.2.2","n":2}'
    assert "retry: 1000" in response.text


def test_a_reconnect_resumes_after_last_event_id_and_misses_nothing_written_meanwhile(client, engine):
    first = messages(client.get("/live?since=0", headers={"x-test-user": "dr-ada"}).text)
    with engine.begin() as conn:
        append_live(conn, "report", "1.2.1", {"status": "final"})
    again = client.get("/live?since=0", headers={"x-test-user": "dr-ada", "Last-Event-ID": first[-1]["id"]})
    assert [m["id"] for m in messages(again.text)] == ["4"]


def test_the_stream_needs_a_signed_in_user(client):
    assert client.get("/live").status_code == 401
