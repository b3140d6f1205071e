"""``radcds-referral migrate`` and ``MIGRATE_ON_START=false`` (the Helm chart's migration hook Job).

radcds.runtime.serve.run_service / radcds.adapters.db.engine.migrate, on a real SQLite file.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import inspect, text

from radcds.adapters.db.engine import SchemaBehind, make_engine, migrate, sqlite_url
from radcds.runtime.serve import run_service
from radcds_referral.app import MIGRATION_CHAIN, create_app
from radcds_referral.settings import ReferralSettings

VERSION_TABLE = "alembic_version_referral"


@pytest.fixture
def database(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    url = sqlite_url(tmp_path / "referral.db")
    monkeypatch.setenv("RADCDS_REFERRAL_DATABASE_URL", url)
    return url


def _revisions(url: str) -> list[str]:
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            return [row[0] for row in conn.execute(text(f"SELECT version_num FROM {VERSION_TABLE}"))]
    finally:
        engine.dispose()


def test_migrate_command_on_an_empty_database_creates_the_schema_and_exits_0(database: str) -> None:
    with pytest.raises(SystemExit) as done:
        run_service("referral", ReferralSettings, create_app, migration_chain=MIGRATION_CHAIN, argv=["migrate"])
    assert done.value.code == 0
    assert len(_revisions(database)) == 1
    engine = make_engine(database)
    assert VERSION_TABLE in inspect(engine).get_table_names()
    engine.dispose()


def test_migrate_command_run_twice_leaves_the_revision_unchanged(database: str) -> None:
    for _ in range(2):
        with pytest.raises(SystemExit) as done:
            run_service("referral", ReferralSettings, create_app, migration_chain=MIGRATION_CHAIN, argv=["migrate"])
        assert done.value.code == 0
    assert len(_revisions(database)) == 1


def test_an_unknown_command_exits_2_with_the_usage(capsys: pytest.CaptureFixture[str], database: str) -> None:
    with pytest.raises(SystemExit) as done:
        run_service("referral", ReferralSettings, create_app, migration_chain=MIGRATION_CHAIN, argv=["upgrade"])
    assert done.value.code == 2
    assert "usage: radcds-referral [migrate]" in capsys.readouterr().err


def test_without_migrating_on_start_an_empty_database_is_refused_naming_the_command(database: str) -> None:
    engine = make_engine(database)
    try:
        with pytest.raises(SchemaBehind, match="migrate"):
            migrate(engine, chain=MIGRATION_CHAIN, apply=False)
        assert VERSION_TABLE not in inspect(engine).get_table_names()
    finally:
        engine.dispose()


def test_without_migrating_on_start_a_migrated_database_is_accepted_unchanged(database: str) -> None:
    engine = make_engine(database)
    try:
        migrate(engine, chain=MIGRATION_CHAIN)
        before = _revisions(database)
        migrate(engine, chain=MIGRATION_CHAIN, apply=False)
        assert _revisions(database) == before
    finally:
        engine.dispose()


def test_without_migrating_on_start_a_database_newer_than_the_code_is_accepted(database: str) -> None:
    engine = make_engine(database)
    try:
        migrate(engine, chain=MIGRATION_CHAIN)
        with engine.begin() as conn:
            conn.execute(text(f"UPDATE {VERSION_TABLE} SET version_num = 'ffffffffffff'"))
        migrate(engine, chain=MIGRATION_CHAIN, apply=False)  # a rollback's older pods still start
        assert _revisions(database) == ["ffffffffffff"]
    finally:
        engine.dispose()


def test_migrate_on_start_false_is_read_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RADCDS_REFERRAL_MIGRATE_ON_START", "false")
    assert ReferralSettings().migrate_on_start is False
