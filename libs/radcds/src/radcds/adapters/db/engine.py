"""Engine creation and Alembic migration at start-up."""

from __future__ import annotations

import logging
from importlib import resources
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util import CommandError
from sqlalchemy import Engine, create_engine, event, text

_log = logging.getLogger(__name__)


def sqlite_url(path: Path) -> str:
    """SQLAlchemy URL for an SQLite file (the embedded default for ``make run``)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    return f"sqlite+pysqlite:///{path}"


def make_engine(url: str) -> Engine:
    """An engine for PostgreSQL (psycopg 3) or SQLite; the same code path serves both."""
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url.removeprefix("postgresql://")
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn, _record):  # type: ignore[no-untyped-def]
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            # WAL + NORMAL: a commit survives a process crash; only an OS crash may lose the last ones.
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.close()

        return engine
    return create_engine(url, pool_pre_ping=True, pool_size=5, max_overflow=5)


class SchemaBehind(RuntimeError):
    """The database is not at the newest revision of the chain, and the service was told not to migrate."""


def version_table(chain: str) -> str:
    """The version table of a service's chain (``radcds_imaging.db`` -> ``alembic_version_imaging``): each
    chain keeps its own, so services can share one database during an upgrade from a shared one."""
    return "alembic_version_" + chain.split(".")[0].removeprefix("radcds_")


def _chain_config(chain: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(resources.files(chain).joinpath("migrations")))
    return cfg


def migrate(engine: Engine, *, chain: str, apply: bool = True) -> None:
    """Bring the schema to the newest Alembic revision of ``chain``: the package holding a service's
    ``migrations`` folder (``radcds_<service>.db``; each chain keeps its own version table).

    With ``apply=False`` (``MIGRATE_ON_START=false``: a Helm hook Job runs ``radcds-<service> migrate``
    before the pods roll) nothing is changed: :class:`SchemaBehind` is raised unless the database is
    already at the newest revision, so a pod never runs against a schema older than its code.
    """
    cfg = _chain_config(chain)
    if apply:
        with engine.begin() as conn:
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "head")
        return
    script = ScriptDirectory.from_config(cfg)
    heads = set(script.get_heads())
    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"version_table": version_table(chain)})
        current = set(context.get_current_heads())  # reads only (an absent table: no heads)
    if current == heads:
        return
    known = {rev for rev in current if _known(script, rev)}
    if known != current:
        # Newer than this code (a rollback after an upgrade migrated): the chains only add (expand), so
        # the older code runs on it; the operator is told.
        _log.warning("database of %s is at %s, newer than this code's %s", chain, sorted(current), sorted(heads))
        return
    raise SchemaBehind(
        f"database of {chain} is at revision {sorted(current) or 'none'}, the code needs {sorted(heads)}: "
        "run the service's `migrate` command (the chart's migration Job) first"
    )


def _known(script: ScriptDirectory, revision: str) -> bool:
    try:
        return script.get_revision(revision) is not None
    except CommandError:  # an unknown revision id (ResolutionError is a CommandError)
        return False


def database_ready(engine: Engine) -> bool:
    """Readiness probe: the database answers ``SELECT 1``."""
    with engine.connect() as conn:
        conn.execute(text("SELECT 1"))
    return True
