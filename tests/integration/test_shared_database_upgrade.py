"""The upgrade from one shared database (issue #12) on a real PostgreSQL server, with rows in every table.

Until issue #12 one Alembic chain (version table ``alembic_version``, revisions 0001…0009) created every
service's tables in every service's database, and the Helm chart pointed all services at one database. Each service
now runs its own chain (``alembic_version_<service>``). Pointed at the old shared database, a service's first own
revision adopts the tables it finds (``radcds.adapters.db.legacy``): every row stays, each service records its own
version, and later revisions of its chain apply. A fresh database migrated by one service's chain holds only that
service's tables (and the kernel's idempotency and outbox tables).
"""

from __future__ import annotations

import datetime as dt
import importlib
import os
import shutil
from collections.abc import Iterator
from importlib import resources
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, MetaData, Table, func, inspect, select, text, types

from radcds.adapters.db.engine import make_engine, migrate
from radcds.adapters.db.legacy import LEGACY_HEAD, LEGACY_VERSION_TABLE, LegacySchemaError
from radcds.adapters.db.tables import KERNEL_TABLES
from radcds_devstack.components.postgres import PostgresCluster
from radcds_devstack.testing import LEGACY_SHARED_CHAIN, free_port

pytestmark = [pytest.mark.integration, pytest.mark.postgres]

ROOT = Path(__file__).resolve().parents[2]
#: The services with a database, each with its own chain ``radcds_<service>.db``.
SERVICES = ("imaging", "referral", "reporting", "fusion")
KERNEL = {table.name for table in KERNEL_TABLES}


def _chain(service: str) -> str:
    return f"radcds_{service}.db"


def _tables_of(service: str) -> set[str]:
    metadata: MetaData = importlib.import_module(f"radcds_{service}.db.tables").metadata
    return set(metadata.tables)


def _head_of(service: str) -> str:
    from alembic.script import ScriptDirectory

    cfg = Config()
    cfg.set_main_option("script_location", str(resources.files(_chain(service)).joinpath("migrations")))
    head = ScriptDirectory.from_config(cfg).get_current_head()
    assert head is not None
    return head


@pytest.fixture(scope="module")
def cluster() -> Iterator[PostgresCluster]:
    run_dir = ROOT / ".run" / f"upgrade-test-{os.getpid()}"
    databases = ("legacy", "old", *(f"fresh_{s}" for s in SERVICES))
    pg = PostgresCluster(run_dir, "127.0.0.1", free_port(), databases)
    pg.start()
    try:
        pg.wait()
        yield pg
    finally:
        from radcds_devstack import processes

        processes.stop(pg.name, run_dir)
        pg.discard_data()
        shutil.rmtree(run_dir, ignore_errors=True)


@pytest.fixture
def engine_of(cluster: PostgresCluster) -> Iterator[Any]:
    engines: list[Engine] = []

    def make(database: str) -> Engine:
        engine = make_engine(cluster.database_url(database))
        engines.append(engine)
        return engine

    yield make
    for engine in engines:
        engine.dispose()


def _value(column: Any, n: int) -> Any:
    """A value of the column's type, different for each ``n``."""
    kind = column.type
    if isinstance(kind, types.Boolean):
        return n % 2 == 0
    if isinstance(kind, types.Integer):
        return n
    if isinstance(kind, types.DateTime):
        return dt.datetime(2026, 11, 1, 12, 0, n % 60, tzinfo=dt.UTC)
    if isinstance(kind, types.Date):
        return dt.date(2026, 11, 1 + n % 28)
    if isinstance(kind, types.JSON):
        return {"row": n, "column": column.name}
    if isinstance(kind, types.LargeBinary):
        return bytes([n % 256]) * 4
    if isinstance(kind, types.String | types.Text):
        length = getattr(kind, "length", None) or 64
        return f"{column.name}-{n}"[:length]
    raise AssertionError(f"no test value for {column.table.name}.{column.name} of type {kind!r}")


def _fill(engine: Engine, rows_per_table: int = 2) -> dict[str, list[dict[str, Any]]]:
    """Insert rows into every table of the database (parents first; foreign keys point at the parents' rows)."""
    reflected = MetaData()
    reflected.reflect(engine)
    written: dict[str, list[dict[str, Any]]] = {}
    with engine.begin() as conn:
        for table in reflected.sorted_tables:
            if table.name == LEGACY_VERSION_TABLE:
                continue
            rows = []
            for n in range(rows_per_table):
                row: dict[str, Any] = {}
                for column in table.columns:
                    fks = list(column.foreign_keys)
                    if fks:
                        parent = fks[0].column
                        row[column.name] = written[parent.table.name][n][parent.name]
                    elif not (column.primary_key and column.autoincrement is True and len(table.primary_key) == 1):
                        row[column.name] = _value(column, n + 1)
                rows.append(row)
            conn.execute(table.insert(), rows)
            written[table.name] = rows
    return written


def _rows(engine: Engine, name: str) -> list[dict[str, Any]]:
    table = Table(name, MetaData(), autoload_with=engine)
    with engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(select(table).order_by(*table.primary_key.columns))]


def _legacy_upgrade(engine: Engine, revision: str) -> None:
    cfg = Config()
    cfg.set_main_option("script_location", str(resources.files(LEGACY_SHARED_CHAIN).joinpath("migrations")))
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, revision)


def test_shared_database_at_the_last_shared_revision_is_adopted_by_every_service_with_every_row_kept(engine_of):
    engine = engine_of("legacy")
    migrate(engine, chain=LEGACY_SHARED_CHAIN)
    legacy_tables = set(inspect(engine).get_table_names()) - {LEGACY_VERSION_TABLE}
    # every table of the shared chain belongs to exactly one service, or to the kernel
    owners = {name: [s for s in SERVICES if name in _tables_of(s)] for name in legacy_tables - KERNEL}
    assert {name: who for name, who in owners.items() if len(who) != 1} == {}
    before = _fill(engine)
    snapshot = {name: _rows(engine, name) for name in before}
    assert set(snapshot) == legacy_tables and all(len(rows) == 2 for rows in snapshot.values())

    for service in SERVICES:
        migrate(engine, chain=_chain(service))

    with engine.connect() as conn:
        for service in SERVICES:
            version = conn.execute(text(f"SELECT version_num FROM alembic_version_{service}")).scalar_one()
            assert version == _head_of(service)
        assert conn.execute(text(f"SELECT version_num FROM {LEGACY_VERSION_TABLE}")).scalar_one() == LEGACY_HEAD
    for name, rows in snapshot.items():
        assert _rows(engine, name) == rows, f"rows of {name} changed"
    # the services' tables that the shared chain never had (fusion's) were created next to the adopted ones
    present = set(inspect(engine).get_table_names())
    for service in SERVICES:
        assert _tables_of(service) <= present


def test_service_started_again_on_the_adopted_database_changes_nothing(engine_of):
    engine = engine_of("legacy")
    counts = {}
    with engine.connect() as conn:
        for name in inspect(engine).get_table_names():
            counts[name] = conn.execute(select(func.count()).select_from(Table(name, MetaData()))).scalar_one()
    for service in SERVICES:
        migrate(engine, chain=_chain(service))
    with engine.connect() as conn:
        for name, count in counts.items():
            assert conn.execute(select(func.count()).select_from(Table(name, MetaData()))).scalar_one() == count


def test_shared_database_left_at_an_older_shared_revision_is_refused_naming_the_revision(engine_of):
    engine = engine_of("old")
    _legacy_upgrade(engine, "0005")

    for service in ("imaging", "referral", "reporting"):
        with pytest.raises(LegacySchemaError, match="'0005'"):
            migrate(engine, chain=_chain(service))
    assert not inspect(engine).has_table("alembic_version_imaging")


@pytest.mark.parametrize("service", SERVICES)
def test_fresh_database_of_one_service_holds_only_its_tables_and_the_kernels(engine_of, service):
    engine = engine_of(f"fresh_{service}")
    migrate(engine, chain=_chain(service))

    assert set(inspect(engine).get_table_names()) == _tables_of(service) | KERNEL | {f"alembic_version_{service}"}
