"""Fixtures shared by the imaging tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine

from radcds.devstack.testing import migrated_engine

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture(
    scope="module",
    params=["sqlite", pytest.param("postgresql", marks=[pytest.mark.integration, pytest.mark.postgres])],
)
def imaging_db(request, tmp_path_factory) -> Iterator[Engine]:
    """A migrated imaging database per test module: SQLite, and a throwaway PostgreSQL (integration)."""
    label = request.module.__name__.rsplit(".", 1)[-1]
    scratch = tmp_path_factory.mktemp("imaging-db")
    with migrated_engine("imaging", request.param, root=ROOT, scratch=scratch, label=label) as engine:
        yield engine
