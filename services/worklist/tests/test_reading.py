"""The reading desk: list and open studies, assign and release, accept and sign edited through the reporting port
(a fake of our own port recording what it was asked); the lock rules and the user's right to sign are enforced, and
the row's report status moves at once (optimistically) with a live event."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import create_engine

from radcds.adapters.db.engine import migrate
from radcds_devstack.testing import RecordingPublisher
from radcds_worklist.adapters.db.live import live_since
from radcds_worklist.adapters.db.locks import LockStore
from radcds_worklist.app import CONSUMED_TOPICS, build_components, create_app
from radcds_worklist.domain.access import Forbidden, Role, User
from radcds_worklist.domain.locks import LockHeld
from radcds_worklist.domain.ports import AddedNodule, DraftReport
from radcds_worklist.domain.worklist import WorklistFilter
from radcds_worklist.handlers import WorklistService
from radcds_worklist.settings import WorklistSettings
from radcds_worklist.use_cases.reading import NoReportYet, ReadingDesk, StudyNotFound

from .test_handlers import STUDY, findings, report_stored, study_available

NOW = datetime(2026, 12, 1, 12, tzinfo=UTC)
ADA = User("iss|ada", "Dr Ada", frozenset({Role.RADIOLOGIST}), "Practitioner/dr-ada")
BOB = User("iss|bob", "Dr Bob", frozenset({Role.RADIOLOGIST}), "Practitioner/dr-bob")
VIC = User("iss|vic", "Vic", frozenset({Role.VIEWER}))


class FakeReporting:
    """The reporting port: one draft report; records each signing."""

    def __init__(self) -> None:
        self.report = DraftReport("dr-7", "1", "preliminary", "AI draft", {"id": "dr-7"})
        self.signed: list[tuple[str, str, str | None, str, tuple[AddedNodule, ...]]] = []

    def read(self, report_id: str, *, token: str | None) -> DraftReport:
        assert report_id == self.report.id
        return self.report

    def sign(self, report: DraftReport, *, practitioner: str, token: str | None) -> DraftReport:
        self.signed.append(("accept", practitioner, token, report.conclusion, ()))
        self.report = replace(report, status="final", version=str(int(report.version) + 1))
        return self.report

    def sign_edited(self, report, *, practitioner, conclusion, nodules, token):
        self.signed.append(("edit", practitioner, token, conclusion, nodules))
        self.report = replace(report, status="final", version=str(int(report.version) + 1), conclusion=conclusion)
        return self.report


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def engine(tmp_path):
    engine = create_engine(f"sqlite:///{tmp_path / 'w.db'}")
    migrate(engine, chain="radcds_worklist.db")
    return engine


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def reporting():
    return FakeReporting()


@pytest.fixture
def desk(engine, clock, reporting):
    service = WorklistService(engine=engine, consumer_group="t", clock=clock)
    for event in (study_available(), findings(critical=True), report_stored()):
        service.handle(event)
    return ReadingDesk(
        engine=engine, locks=LockStore(engine, ttl=timedelta(minutes=15)), reporting=reporting, clock=clock
    )


def test_the_list_and_the_study_view_show_the_study_with_findings_and_lock(desk):
    (e,) = desk.worklist(WorklistFilter(), VIC)
    assert e.study_uid == STUDY and e.critical and e.report_status == "preliminary"
    desk.assign(STUDY, ADA)
    view = desk.study(STUDY, VIC)
    assert view.entry.lock is not None and view.entry.lock.user_name == "Dr Ada"
    assert [f["model_name"] for f in view.findings] == ["head_ct_hyperdensity"] and view.assessment is None
    assert [x.study_uid for x in desk.worklist(WorklistFilter(mine=ADA.id), ADA)] == [STUDY]
    assert desk.worklist(WorklistFilter(mine=BOB.id), BOB) == []
    with pytest.raises(StudyNotFound):
        desk.study("9.9.9", VIC)


def test_two_radiologists_and_the_lock(desk, clock):
    desk.assign(STUDY, ADA)
    with pytest.raises(LockHeld, match="Dr Ada"):
        desk.assign(STUDY, BOB)
    with pytest.raises(LockHeld):
        desk.accept(STUDY, BOB, None)
    clock.now = NOW + timedelta(minutes=16)  # Ada's lock expired
    assert desk.assign(STUDY, BOB).user_name == "Dr Bob"
    with pytest.raises(LockHeld, match="Dr Bob"):  # only the holder releases
        desk.release(STUDY, ADA)
    assert desk.release(STUDY, BOB)


def test_accept_signs_as_the_user_forwards_the_token_and_moves_the_row_at_once(desk, reporting, engine):
    signed = desk.accept(STUDY, ADA, "tok-ada")
    assert reporting.signed == [("accept", "Practitioner/dr-ada", "tok-ada", "AI draft", ())]
    assert (signed.report_status, signed.report_version, signed.results_interpreter) == (
        "final",
        "2",
        "Practitioner/dr-ada",
    )
    assert signed.lock is None  # the study is done: the lock is released
    assert desk.worklist(WorklistFilter(), ADA) == []
    assert [e.kind for e in live_since(engine, 0)][-3:] == ["lock", "report", "lock"]


def test_sign_edited_sends_the_conclusion_and_the_added_nodule(desk, reporting):
    nodule = AddedNodule("n1", 7.0, "solid", "45653009")
    desk.sign_edited(STUDY, ADA, None, conclusion="Solid 7 mm RUL nodule.", nodules=(nodule,))
    assert reporting.signed == [("edit", "Practitioner/dr-ada", None, "Solid 7 mm RUL nodule.", (nodule,))]
    with pytest.raises(ValueError, match="conclusion"):
        desk.sign_edited(STUDY, ADA, None, conclusion="  ")


def test_a_viewer_may_read_but_neither_assign_nor_sign(desk, reporting):
    assert desk.worklist(WorklistFilter(), VIC)
    with pytest.raises(Forbidden):
        desk.assign(STUDY, VIC)
    with pytest.raises(Forbidden):
        desk.accept(STUDY, VIC, None)
    assert reporting.signed == []


def test_a_study_without_a_report_cannot_be_signed(engine, clock, reporting):
    WorklistService(engine=engine, consumer_group="t", clock=clock).handle(study_available())
    desk = ReadingDesk(engine=engine, locks=LockStore(engine, ttl=timedelta(minutes=15)), reporting=reporting)
    with pytest.raises(NoReportYet):
        desk.accept(STUDY, ADA, None)


def test_the_app_wires_the_desk_and_is_ready_without_kafka_when_not_consuming(tmp_path):
    settings = WorklistSettings(data_dir=tmp_path)
    parts = build_components(settings, publisher=RecordingPublisher(), reporting=FakeReporting(), consume=False)
    with TestClient(create_app(settings, components=parts)) as client:
        assert client.get("/readyz").status_code == 200
        assert parts.started == ["database", "relay"]
        assert parts.desk.worklist(WorklistFilter(), VIC) == []
    assert parts.started == []
    assert set(CONSUMED_TOPICS) == {
        "radcds.imaging.studies.v1",
        "radcds.inference.findings.v1",
        "radcds.fusion.assessments.v1",
        "radcds.reporting.reports.v1",
        "radcds.reporting.orders.v1",
    }
