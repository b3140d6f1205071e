"""Study assembly with a quiet period, driven by an injected clock over real instances.

Instances: the "Brain-MRA" study of pydicom's dicomdirtests/ (3 MR series, 11 images, patient
98890234) and pydicom's CT_small.dcm, stored the way the STOW-RS handler stores a new instance
(row, attributes, then ``note_instance`` in one transaction; duplicates are not noted).
Runs on SQLite; the ``postgres``-marked variant runs on a throwaway PostgreSQL.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.fileset import FileSet
from sqlalchemy import Engine, delete, insert, select

from radcds.adapters.fhir.report import imaging_study_id, patient_id_for
from radcds.domain.findings import StudyContext
from radcds_imaging.adapters.db.assembly import StudyAssembler, note_instance
from radcds_imaging.adapters.db.indexing import record_attributes
from radcds_imaging.adapters.part10 import read_part10
from radcds_imaging.db.tables import dicom_instance_attributes, dicom_instances, imaging_studies_assembly
from radcds_imaging.domain.assembly import AnnouncedStudy
from radcds_imaging.handlers import instance_row

ROOT = Path(__file__).resolve().parents[3]
QUIET = timedelta(seconds=60)
T0 = datetime(2026, 11, 29, 8, 0, tzinfo=UTC)
WADO = "http://imaging.test/dicom-web"


def _mra_paths() -> list[Path]:
    """The Brain-MRA study of the DICOMDIR, in series then instance order."""
    fs = FileSet(get_testdata_file("dicomdirtests/DICOMDIR"))
    found = []
    for instance in fs:
        ds = pydicom.dcmread(Path(instance.path), stop_before_pixels=True)
        if ds.get("StudyDescription") == "Brain-MRA":
            found.append((int(ds.SeriesNumber), int(ds.InstanceNumber), Path(instance.path)))
    return [p for _, _, p in sorted(found)]


MRA = _mra_paths()
CT_SMALL = Path(get_testdata_file("CT_small.dcm"))


class Clock:
    """An injected clock that only moves when told to."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, delta: timedelta) -> datetime:
        self.now += delta
        return self.now


def store(engine: Engine, path: Path, now: datetime) -> bool:
    """What the STOW-RS handler does: a duplicate is ignored; a new instance is inserted and noted."""
    data = path.read_bytes()
    parsed = read_part10(data)
    ref = parsed.instance
    with engine.begin() as conn:
        exists = conn.execute(
            select(dicom_instances.c.sop_instance_uid).where(dicom_instances.c.sop_instance_uid == ref.sop_instance_uid)
        ).first()
        if exists is not None:
            return False
        digest = hashlib.sha256(data).hexdigest()
        conn.execute(
            insert(dicom_instances).values(
                **instance_row(parsed, f"{ref.sop_instance_uid}.dcm", len(data), digest, now)
            )
        )
        record_attributes(conn, pydicom.dcmread(path, stop_before_pixels=True), ref.sop_instance_uid)
        note_instance(conn, ref.study_instance_uid, now)
    return True


@pytest.fixture(scope="module")
def module_engine(imaging_db: Engine) -> Engine:
    """The module's migrated database (SQLite, and PostgreSQL under the integration marker; see conftest)."""
    return imaging_db


@pytest.fixture
def engine(module_engine) -> Engine:
    with module_engine.begin() as conn:
        for table in (imaging_studies_assembly, dicom_instance_attributes, dicom_instances):
            conn.execute(delete(table))
    return module_engine


@pytest.fixture
def clock() -> Clock:
    return Clock(T0)


@pytest.fixture
def assembler(engine, clock) -> StudyAssembler:
    return StudyAssembler(engine=engine, quiet_period=QUIET, wado_base_url=WADO, clock=clock)


def _study_uid(path: Path) -> str:
    return str(pydicom.dcmread(path, stop_before_pixels=True).StudyInstanceUID)


def test_study_is_not_due_before_the_quiet_period_has_passed(engine, clock, assembler):
    for path in MRA[:5]:
        store(engine, path, clock.advance(timedelta(seconds=1)))
    clock.advance(QUIET - timedelta(seconds=1))
    assert assembler.due() == []


def test_study_is_due_once_after_the_quiet_period_and_announced_as_one_imaging_study(engine, clock, assembler):
    for path in MRA:
        store(engine, path, clock.advance(timedelta(seconds=1)))
    clock.advance(QUIET)
    uid = _study_uid(MRA[0])
    assert assembler.due() == [uid]

    announced = assembler.announce(uid)

    assert isinstance(announced, AnnouncedStudy)
    assert (announced.version, announced.is_update, announced.instance_count) == (1, False, len(MRA))
    study = announced.imaging_study
    assert study["id"] == imaging_study_id(uid)
    assert study["numberOfInstances"] == len(MRA)
    assert study["numberOfSeries"] == 3
    assert study["contained"][0]["address"] == WADO
    assert assembler.due() == []
    assert assembler.due(clock.advance(timedelta(hours=1))) == []
    assert assembler.announce(uid) is None  # nothing new


def test_study_received_before_the_clock_stepped_back_hours_is_due_at_once(engine, clock, assembler):
    for path in MRA[:3]:
        store(engine, path, clock.advance(timedelta(seconds=1)))
    clock.advance(-timedelta(hours=2))  # NTP steps the clock back: the instances arrived "2 hours from now"
    assert assembler.due() == [_study_uid(MRA[0])]


def test_study_after_a_step_back_shorter_than_the_quiet_period_still_waits_for_it(engine, clock, assembler):
    for path in MRA[:3]:
        store(engine, path, clock.advance(timedelta(seconds=1)))
    clock.advance(-QUIET / 2)
    assert assembler.due() == []
    clock.advance(QUIET * 2)
    assert assembler.due() == [_study_uid(MRA[0])]


def test_instance_within_the_quiet_period_restarts_it(engine, clock, assembler):
    store(engine, MRA[0], clock.now)
    clock.advance(QUIET - timedelta(seconds=5))
    store(engine, MRA[1], clock.now)
    clock.advance(timedelta(seconds=10))
    assert assembler.due() == []
    clock.advance(QUIET)
    assert assembler.due() == [_study_uid(MRA[0])]


def test_late_instance_after_announcement_makes_an_update_with_version_2(engine, clock, assembler):
    uid = _study_uid(MRA[0])
    for path in MRA[:-1]:
        store(engine, path, clock.now)
    first = assembler.announce(uid, clock.advance(QUIET))
    assert first is not None and first.version == 1

    store(engine, MRA[-1], clock.advance(timedelta(minutes=10)))
    assert assembler.due() == []  # its own quiet period first
    assert assembler.due(clock.advance(QUIET)) == [uid]
    update = assembler.announce(uid)

    assert update is not None
    assert (update.version, update.is_update) == (2, True)
    assert update.imaging_study["id"] == first.imaging_study["id"]
    assert update.imaging_study["numberOfInstances"] == first.imaging_study["numberOfInstances"] + 1 == len(MRA)
    assert update.event_id != first.event_id
    assert assembler.due() == []


def test_duplicate_instances_change_no_counts(engine, clock, assembler):
    uid = _study_uid(MRA[0])
    assert store(engine, MRA[0], clock.now) is True
    assert store(engine, MRA[0], clock.advance(timedelta(seconds=1))) is False
    announced = assembler.announce(uid, clock.advance(QUIET))
    assert announced is not None
    assert announced.instance_count == announced.imaging_study["numberOfInstances"] == 1

    # Redelivered again after the announcement: still not a new instance, so nothing to announce.
    assert store(engine, MRA[0], clock.advance(timedelta(minutes=5))) is False
    assert assembler.due(clock.advance(QUIET)) == []
    # A stray extra note (e.g. a retried handler) makes it due, but the announcement finds nothing new.
    with engine.begin() as conn:
        note_instance(conn, uid, clock.now)
    assert assembler.due(clock.advance(QUIET)) == [uid]
    assert assembler.announce(uid) is None
    assert assembler.due() == []
    with engine.connect() as conn:
        row = conn.execute(select(imaging_studies_assembly).where(imaging_studies_assembly.c.study_instance_uid == uid))
        state = row.one()
    assert (state.version, state.announced_instance_count) == (1, 1)


def test_failed_publish_leaves_the_study_due_and_unannounced(engine, clock, assembler):
    uid = _study_uid(CT_SMALL)
    store(engine, CT_SMALL, clock.now)
    clock.advance(QUIET)

    def broken(_: AnnouncedStudy) -> None:
        raise ConnectionError("broker down")

    with pytest.raises(ConnectionError):
        assembler.announce(uid, publish=broken)
    assert assembler.due() == [uid]

    published: list[AnnouncedStudy] = []
    announced = assembler.announce(uid, publish=published.append)
    assert published == [announced]
    assert announced is not None and announced.version == 1


def test_each_study_is_assembled_on_its_own_quiet_period(engine, clock, assembler):
    store(engine, CT_SMALL, clock.now)
    store(engine, MRA[0], clock.advance(timedelta(seconds=30)))
    assert assembler.due(clock.advance(QUIET - timedelta(seconds=15))) == [_study_uid(CT_SMALL)]
    assert assembler.due(clock.advance(timedelta(seconds=30))) == [_study_uid(CT_SMALL), _study_uid(MRA[0])]


def test_imaging_study_subject_is_the_reporting_patient(engine, clock, assembler):
    store(engine, MRA[0], clock.now)
    announced = assembler.announce(_study_uid(MRA[0]), clock.advance(QUIET))
    assert announced is not None
    expected = patient_id_for(StudyContext(patient_id="98890234"))
    assert announced.imaging_study["subject"] == {"reference": f"Patient/{expected}"}


def test_negative_quiet_period_is_refused(engine):
    with pytest.raises(ValueError, match="negative"):
        StudyAssembler(engine=engine, quiet_period=timedelta(seconds=-1), wado_base_url=WADO)
