"""The worklist's own migration chain: a fresh database holds only the worklist's tables, the kernel's idempotency
and outbox tables and its own version table; migrating again changes nothing; the chain matches the tables."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import inspect, text

from radcds.adapters.db.engine import migrate
from radcds_devstack.testing import migrated_engine
from radcds_worklist.db.tables import metadata

ROOT = Path(__file__).resolve().parents[3]
CHAIN = "radcds_worklist.db"
OWN = set(metadata.tables)
EXPECTED = OWN | {"alembic_version_worklist", "event_outbox", "processed_events"}


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=[pytest.mark.integration, pytest.mark.postgres])])
def worklist_db(request, tmp_path):
    with migrated_engine("worklist", request.param, root=ROOT, scratch=tmp_path, label="db", chain=CHAIN) as engine:
        yield engine


def test_fresh_worklist_database_holds_only_worklist_and_kernel_tables(worklist_db):
    assert set(inspect(worklist_db).get_table_names()) == EXPECTED
    with worklist_db.connect() as conn:
        assert conn.execute(text("SELECT version_num FROM alembic_version_worklist")).scalar_one() == "worklist_0002"


def test_migrating_again_is_a_no_op(worklist_db):
    migrate(worklist_db, chain=CHAIN)
    assert set(inspect(worklist_db).get_table_names()) == EXPECTED


@pytest.mark.parametrize("table", sorted(OWN))
def test_migrated_table_has_the_columns_primary_key_and_indexes_of_its_declaration(worklist_db, table):
    declared = metadata.tables[table]
    inspector = inspect(worklist_db)
    columns = {c["name"]: c["nullable"] for c in inspector.get_columns(table)}
    assert columns == {c.name: c.nullable for c in declared.columns}
    assert set(inspector.get_pk_constraint(table)["constrained_columns"]) == {c.name for c in declared.primary_key}
    indexes = {i["name"]: i["column_names"] for i in inspector.get_indexes(table)}
    assert indexes == {i.name: [c.name for c in i.columns] for i in declared.indexes}
