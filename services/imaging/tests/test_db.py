"""imaging's own migration chain: a fresh database holds only imaging's tables, the kernel's idempotency and outbox
tables and imaging's own version table; migrating again changes nothing; each table has the columns, keys and index
names the legacy shared chain left, and a database that chain migrated is adopted with its rows."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import Engine, insert, inspect, select, text

from radcds.adapters.db.engine import make_engine, migrate, sqlite_url
from radcds_devstack.testing import LEGACY_SHARED_CHAIN, migrated_engine
from radcds_imaging.db.tables import IMAGING_TABLES, dicom_instances

ROOT = Path(__file__).resolve().parents[3]
CHAIN = "radcds_imaging.db"
EXPECTED = {
    "alembic_version_imaging",
    "event_outbox",
    "processed_events",
    "dicom_instances",
    "dicom_instance_attributes",
    "imaging_studies_assembly",
}


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=[pytest.mark.integration, pytest.mark.postgres])])
def imaging_own_db(request, tmp_path):
    with migrated_engine("imaging", request.param, root=ROOT, scratch=tmp_path, label="db", chain=CHAIN) as engine:
        yield engine


@pytest.fixture
def legacy_db(tmp_path) -> Engine:
    """An SQLite database the legacy shared chain migrated (every service's tables; version table alembic_version)."""
    engine = make_engine(sqlite_url(tmp_path / "legacy.db"))
    migrate(engine, chain=LEGACY_SHARED_CHAIN)
    return engine


def _shape(engine: Engine, table: str) -> dict[str, object]:
    inspector = inspect(engine)
    return {
        "columns": [(c["name"], type(c["type"]).__name__, c["nullable"]) for c in inspector.get_columns(table)],
        "primary_key": inspector.get_pk_constraint(table)["constrained_columns"],
        "indexes": sorted(i["name"] for i in inspector.get_indexes(table)),
        "foreign_keys": [(f["referred_table"], f["referred_columns"]) for f in inspector.get_foreign_keys(table)],
    }


def test_fresh_imaging_database_holds_only_imaging_and_kernel_tables(imaging_own_db):
    assert set(inspect(imaging_own_db).get_table_names()) == EXPECTED
    with imaging_own_db.connect() as conn:
        assert conn.execute(text("SELECT version_num FROM alembic_version_imaging")).scalar_one() == "imaging_0001"


def test_migrating_again_is_a_no_op(imaging_own_db):
    migrate(imaging_own_db, chain=CHAIN)
    assert set(inspect(imaging_own_db).get_table_names()) == EXPECTED
    with imaging_own_db.connect() as conn:
        assert conn.execute(text("SELECT version_num FROM alembic_version_imaging")).scalar_one() == "imaging_0001"


@pytest.mark.parametrize("table", [t.name for t in IMAGING_TABLES])
def test_own_chain_creates_each_table_as_the_legacy_shared_chain_left_it(table, tmp_path, legacy_db):
    own = make_engine(sqlite_url(tmp_path / "own.db"))
    migrate(own, chain=CHAIN)
    assert _shape(own, table) == _shape(legacy_db, table)


def test_own_chain_adopts_a_legacy_shared_database_with_its_rows(legacy_db):
    row = {
        "sop_instance_uid": "1.2.3.4",
        "study_instance_uid": "1.2.3",
        "series_instance_uid": "1.2.3.3",
        "sop_class_uid": "1.2.840.10008.5.1.4.1.1.2",
        "transfer_syntax_uid": "1.2.840.10008.1.2.1",
        "modality": "CT",
        "patient_id": "P1",
        "accession_number": "A1",
        "storage_key": "1.2.3/1.2.3.3/1.2.3.4.dcm",
        "size_bytes": 10,
        "sha256": "0" * 64,
        "received_at": datetime(2026, 12, 1, tzinfo=UTC),
    }
    with legacy_db.begin() as conn:
        conn.execute(insert(dicom_instances).values(**row))
    migrate(legacy_db, chain=CHAIN)
    with legacy_db.connect() as conn:
        assert conn.execute(text("SELECT version_num FROM alembic_version_imaging")).scalar_one() == "imaging_0001"
        assert conn.execute(select(dicom_instances.c.storage_key)).scalars().all() == [row["storage_key"]]
