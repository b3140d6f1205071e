"""Fixtures shared by the imaging tests."""

from __future__ import annotations

import os
import shutil
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine

from radcds.adapters.db.engine import make_engine, migrate, sqlite_url

ROOT = Path(__file__).resolve().parents[3]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(
    scope="module",
    params=["sqlite", pytest.param("postgresql", marks=[pytest.mark.integration, pytest.mark.postgres])],
)
def imaging_db(request, tmp_path_factory) -> Iterator[Engine]:
    """A migrated imaging database per test module: SQLite, and a throwaway PostgreSQL (integration)."""
    if request.param == "sqlite":
        eng = make_engine(sqlite_url(tmp_path_factory.mktemp("imaging-db") / "imaging.db"))
        migrate(eng)
        yield eng
        eng.dispose()
        return
    from radcds.devstack.stack import LocalStack, Ports

    run_dir = ROOT / ".run" / f"imaging-db-test-{os.getpid()}-{request.module.__name__.rsplit('.', 1)[-1]}"
    stack = LocalStack(root=ROOT, run_dir=run_dir, ports=Ports(postgres=_free_port()), postgres=True)
    stack.start_postgres()
    try:
        stack.wait_postgres()
        url = stack.database_url("imaging")
        assert url is not None
        eng = make_engine(url)
        migrate(eng)
        yield eng
        eng.dispose()
    finally:
        stack.down()
        shutil.rmtree(run_dir, ignore_errors=True)
