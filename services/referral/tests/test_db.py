"""referral's own migration chain: a fresh database holds only referral's tables, the kernel's idempotency and
outbox tables and referral's own version table; migrating again changes nothing; the tables are the ones the
legacy shared chain left at its head, which referral's first revision adopts with their rows."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import insert, inspect, select, text

from radcds.adapters.db.engine import make_engine, migrate, sqlite_url
from radcds_devstack.testing import LEGACY_SHARED_CHAIN, migrated_engine
from radcds_referral.db.tables import cds_consultations

ROOT = Path(__file__).resolve().parents[3]
CHAIN = "radcds_referral.db"
REFERRAL_TABLES = ("cds_consultations", "cds_feedback")
EXPECTED = {"alembic_version_referral", "event_outbox", "processed_events", *REFERRAL_TABLES}


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=[pytest.mark.integration, pytest.mark.postgres])])
def referral_db(request, tmp_path):
    with migrated_engine("referral", request.param, root=ROOT, scratch=tmp_path, label="db", chain=CHAIN) as engine:
        yield engine


@pytest.fixture
def legacy_db(tmp_path):
    """A SQLite database migrated by the legacy shared chain to its head (every service's tables)."""
    engine = make_engine(sqlite_url(tmp_path / "legacy.db"))
    migrate(engine, chain=LEGACY_SHARED_CHAIN)
    try:
        yield engine
    finally:
        engine.dispose()


def _shape(engine, table: str) -> dict:
    """Columns (name, type class, nullable), primary key and index names of ``table``."""
    found = inspect(engine)
    return {
        "columns": [(c["name"], type(c["type"]).__name__, c["nullable"]) for c in found.get_columns(table)],
        "primary_key": found.get_pk_constraint(table)["constrained_columns"],
        "indexes": sorted(i["name"] for i in found.get_indexes(table)),
    }


def test_fresh_referral_database_holds_only_referral_and_kernel_tables(referral_db):
    assert set(inspect(referral_db).get_table_names()) == EXPECTED
    with referral_db.connect() as conn:
        assert conn.execute(text("SELECT version_num FROM alembic_version_referral")).scalar_one() == "referral_0001"


def test_migrating_again_is_a_no_op(referral_db):
    migrate(referral_db, chain=CHAIN)
    assert set(inspect(referral_db).get_table_names()) == EXPECTED
    with referral_db.connect() as conn:
        assert conn.execute(text("SELECT version_num FROM alembic_version_referral")).scalar_one() == "referral_0001"


@pytest.mark.parametrize("table", REFERRAL_TABLES)
def test_referral_tables_have_the_shape_the_legacy_shared_chain_left(tmp_path, legacy_db, table):
    own = make_engine(sqlite_url(tmp_path / "referral.db"))
    try:
        migrate(own, chain=CHAIN)
        assert _shape(own, table) == _shape(legacy_db, table)
    finally:
        own.dispose()


def test_legacy_shared_database_is_adopted_with_its_consultations_kept(legacy_db):
    row = {
        "consultation_id": "c1",
        "service_id": "radcds-imaging-order-sign",
        "hook": "order-sign",
        "hook_instance": "h-c1",
        "order_id": "order-c1",
        "rule_id": "canadian-ct-head",
        "rule_version": "1",
        "rating": "not-appropriate",
        "card_uuid": None,
        "event_payload": json.dumps({"consultationId": "c1"}),
        "created_at": datetime(2026, 1, 1, tzinfo=UTC),
    }
    with legacy_db.begin() as conn:
        conn.execute(insert(cds_consultations), [row])
    migrate(legacy_db, chain=CHAIN)
    with legacy_db.connect() as conn:
        assert conn.execute(select(cds_consultations.c.consultation_id)).scalars().all() == ["c1"]
        assert conn.execute(text("SELECT version_num FROM alembic_version_referral")).scalar_one() == "referral_0001"
