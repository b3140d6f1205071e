"""Fixtures shared by the imaging tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pydicom
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from pydicom.data import get_testdata_file
from sqlalchemy import Engine

from radcds.adapters.db.engine import make_engine, migrate, sqlite_url
from radcds.adapters.db.outbox import OutboxRelay
from radcds_devstack.testing import RecordingPublisher, migrated_engine
from radcds_imaging.adapters.db.instances import InstanceQueries
from radcds_imaging.adapters.storage import FilesystemInstanceStore
from radcds_imaging.api.wado import wado_router
from radcds_imaging.handlers import ImagingService

ROOT = Path(__file__).resolve().parents[3]
#: The public base URL the WADO test apps answer under.
BASE = "http://imaging.test"


def testdata_path(name: str) -> Path:
    """A pydicom / pydicom-data test file, found offline."""
    found = get_testdata_file(name)
    assert found is not None, name
    return Path(found)


def testdata_uids(name: str) -> tuple[str, str, str]:
    """Study, Series and SOP Instance UIDs of a test file."""
    ds = pydicom.dcmread(testdata_path(name), stop_before_pixels=True)
    return str(ds.StudyInstanceUID), str(ds.SeriesInstanceUID), str(ds.SOPInstanceUID)


def wado_client(root: Path, *files: bytes) -> TestClient:
    """An app with only the WADO router, over SQLite and a filesystem store holding ``files``."""
    engine = make_engine(sqlite_url(root / "imaging.db"))
    migrate(engine, chain="radcds_imaging.db")
    store = FilesystemInstanceStore(root / "store")
    service = ImagingService(
        engine=engine,
        store=store,
        outbox=OutboxRelay(engine, RecordingPublisher(), name="imaging-outbox"),
        public_base_url=BASE,
    )
    outcome = service.store_instances(parts=list(files))
    assert len(outcome.stored) == len(files) and not outcome.failed
    app = FastAPI()
    app.include_router(
        wado_router(public_base_url=BASE, service=service, instances=InstanceQueries(engine), store=store)
    )
    return TestClient(app)


@pytest.fixture(
    scope="module",
    params=["sqlite", pytest.param("postgresql", marks=[pytest.mark.integration, pytest.mark.postgres])],
)
def imaging_db(request, tmp_path_factory) -> Iterator[Engine]:
    """A migrated imaging database per test module: SQLite, and a throwaway PostgreSQL (integration)."""
    label = request.module.__name__.rsplit(".", 1)[-1]
    scratch = tmp_path_factory.mktemp("imaging-db")
    with migrated_engine(
        "imaging", request.param, root=ROOT, scratch=scratch, label=label, chain="radcds_imaging.db"
    ) as engine:
        yield engine
