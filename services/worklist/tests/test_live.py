"""The live stream's log: changes come back after a given ``seq``, in order, each once."""

from __future__ import annotations

import pytest
from sqlalchemy import create_engine

from radcds.adapters.db.engine import migrate
from radcds_worklist.adapters.db.live import append_live, last_seq, live_since


@pytest.fixture
def engine(tmp_path):
    engine = create_engine(f"sqlite:///{tmp_path / 'w.db'}")
    migrate(engine, chain="radcds_worklist.db")
    return engine


def test_changes_after_a_seq_come_back_in_commit_order_and_only_once(engine):
    assert last_seq(engine) == 0
    with engine.begin() as conn:
        append_live(conn, "study", "1.2.3", {"n": 1})
        append_live(conn, "finding", "1.2.3", {"n": 2})
    with engine.begin() as conn:
        append_live(conn, "report", "1.2.4", {"n": 3})
    everything = live_since(engine, 0)
    assert [e.data["n"] for e in everything] == [1, 2, 3]
    assert [e.kind for e in live_since(engine, everything[0].seq)] == ["finding", "report"]
    assert live_since(engine, last_seq(engine)) == []


def test_a_rolled_back_change_never_reaches_the_stream(engine):
    def failing_change():
        with engine.begin() as conn:
            append_live(conn, "study", "1.2.3", {})
            raise RuntimeError("the change failed")

    with pytest.raises(RuntimeError):
        failing_change()
    assert live_since(engine, 0) == []


def test_an_unknown_kind_is_refused(engine):
    with engine.begin() as conn, pytest.raises(ValueError, match="unknown live event kind"):
        append_live(conn, "gossip", None, {})
