"""fusion's own migration chain: a fresh database holds only fusion's tables, the kernel's idempotency and outbox
tables and fusion's own version table; migrating again changes nothing."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import inspect, text

from radcds.adapters.db.engine import migrate
from radcds_devstack.testing import migrated_engine

ROOT = Path(__file__).resolve().parents[3]
EXPECTED = {
    "alembic_version_fusion",
    "event_outbox",
    "processed_events",
    "fusion_findings",
    "fusion_recommendations",
    "fusion_assessments",
}


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=[pytest.mark.integration, pytest.mark.postgres])])
def fusion_db(request, tmp_path):
    with migrated_engine(
        "fusion", request.param, root=ROOT, scratch=tmp_path, label="db", chain="radcds_fusion.db"
    ) as engine:
        yield engine


def test_fresh_fusion_database_holds_only_fusion_and_kernel_tables(fusion_db):
    assert set(inspect(fusion_db).get_table_names()) == EXPECTED
    with fusion_db.connect() as conn:
        assert conn.execute(text("SELECT version_num FROM alembic_version_fusion")).scalar_one() == "fusion_0003"


def test_migrating_again_is_a_no_op(fusion_db):
    migrate(fusion_db, chain="radcds_fusion.db")
    assert set(inspect(fusion_db).get_table_names()) == EXPECTED


def test_recommendations_keep_a_nullable_ehr_patient_id_with_its_index(fusion_db):
    columns = {c["name"]: c for c in inspect(fusion_db).get_columns("fusion_recommendations")}
    assert columns["ehr_patient_id"]["nullable"] is True
    indexes = {i["name"]: i["column_names"] for i in inspect(fusion_db).get_indexes("fusion_recommendations")}
    assert indexes["ix_fusion_recommendations_ehr_patient"] == ["ehr_patient_id"]
