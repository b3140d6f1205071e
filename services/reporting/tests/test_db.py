"""reporting's own migration chain: a fresh database holds only reporting's tables, the kernel's idempotency and
outbox tables and reporting's own version table; migrating again changes nothing; and each table has the shape
the legacy shared chain left it in (so a shared database at its last revision is adopted as it is)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, inspect, text

from radcds.adapters.db.engine import make_engine, migrate, sqlite_url
from radcds_devstack.testing import LEGACY_SHARED_CHAIN, migrated_engine

ROOT = Path(__file__).resolve().parents[3]
CHAIN = "radcds_reporting.db"
REPORTING_TABLES = {
    "fhir_resources",
    "fhir_resource_versions",
    "fhir_search_tokens",
    "fhir_search_references",
    "fhir_search_dates",
    "critical_result_alerts",
    "report_context_assessments",
    "hl7_outbound_messages",
    "hl7_inbound_messages",
    "hl7_delivery_leases",
}
EXPECTED = REPORTING_TABLES | {"alembic_version_reporting", "event_outbox", "processed_events"}


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=[pytest.mark.integration, pytest.mark.postgres])])
def reporting_db(request, tmp_path):
    with migrated_engine("reporting", request.param, root=ROOT, scratch=tmp_path, label="db", chain=CHAIN) as engine:
        yield engine


@pytest.fixture
def legacy_db(tmp_path):
    engine = make_engine(sqlite_url(tmp_path / "legacy.db"))
    migrate(engine, chain=LEGACY_SHARED_CHAIN)
    yield engine
    engine.dispose()


def _shape(engine: Engine, table: str) -> dict[str, Any]:
    """Columns (name, type class, nullable), primary key and index names of ``table``."""
    insp = inspect(engine)
    return {
        "columns": [(c["name"], type(c["type"]).__name__, c["nullable"]) for c in insp.get_columns(table)],
        "primary_key": insp.get_pk_constraint(table)["constrained_columns"],
        "indexes": sorted(str(i["name"]) for i in insp.get_indexes(table)),
        "unique": sorted(str(u["name"]) for u in insp.get_unique_constraints(table)),
    }


def test_fresh_reporting_database_holds_only_reporting_and_kernel_tables(reporting_db):
    assert set(inspect(reporting_db).get_table_names()) == EXPECTED
    with reporting_db.connect() as conn:
        assert conn.execute(text("SELECT version_num FROM alembic_version_reporting")).scalar_one() == "reporting_0001"


def test_migrating_again_is_a_no_op(reporting_db):
    migrate(reporting_db, chain=CHAIN)
    assert set(inspect(reporting_db).get_table_names()) == EXPECTED
    with reporting_db.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM alembic_version_reporting")).scalar_one() == 1


@pytest.mark.parametrize("table", sorted(REPORTING_TABLES))
def test_each_table_has_the_shape_the_legacy_shared_chain_left_it_in(tmp_path, legacy_db, table):
    engine = make_engine(sqlite_url(tmp_path / "reporting.db"))
    try:
        migrate(engine, chain=CHAIN)
        assert _shape(engine, table) == _shape(legacy_db, table)
    finally:
        engine.dispose()


def test_a_database_at_the_legacy_head_is_adopted_with_its_rows(legacy_db):
    with legacy_db.begin() as conn:
        conn.execute(text("INSERT INTO hl7_delivery_leases VALUES ('ris', 'me', '2026-12-01 00:00:00')"))
    migrate(legacy_db, chain=CHAIN)
    with legacy_db.connect() as conn:
        assert conn.execute(text("SELECT version_num FROM alembic_version_reporting")).scalar_one() == "reporting_0001"
        assert conn.execute(text("SELECT holder FROM hl7_delivery_leases")).scalar_one() == "me"
