"""Reading locks: take a free or expired lock, renew one's own, refuse another's live lock naming its holder,
release only by the holder; in the database, each change in one transaction with its live event, and of two
acquirers racing for the same study exactly one wins."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import create_engine

from radcds.adapters.db.engine import migrate
from radcds_worklist.adapters.db.live import live_since
from radcds_worklist.adapters.db.locks import LockStore, read_lock, take
from radcds_worklist.domain import locks
from radcds_worklist.domain.locks import LockHeld, ReadingLock

NOW = datetime(2026, 12, 1, 12, tzinfo=UTC)
TTL = timedelta(minutes=15)


def test_a_free_study_is_taken_and_the_holder_renews_keeping_the_start():
    taken = locks.acquire(None, study_uid="1", user_id="ada", user_name="Dr Ada", now=NOW, ttl=TTL)
    assert (taken.user_id, taken.acquired_at, taken.expires_at) == ("ada", NOW, NOW + TTL)
    later = NOW + timedelta(minutes=10)
    renewed = locks.acquire(taken, study_uid="1", user_id="ada", user_name="Dr Ada", now=later, ttl=TTL)
    assert (renewed.acquired_at, renewed.expires_at) == (NOW, later + TTL)


def test_another_users_live_lock_is_refused_with_who_holds_it_and_until_when():
    held = ReadingLock("1", "ada", "Dr Ada", NOW, NOW + TTL)
    with pytest.raises(LockHeld, match="Dr Ada is reading this study until 2026-12-01T12:15:00") as refused:
        locks.acquire(held, study_uid="1", user_id="bob", user_name="Dr Bob", now=NOW + timedelta(minutes=1), ttl=TTL)
    assert refused.value.holder == held


def test_an_expired_lock_is_free_for_anyone():
    held = ReadingLock("1", "ada", "Dr Ada", NOW, NOW + TTL)
    taken = locks.acquire(held, study_uid="1", user_id="bob", user_name="Dr Bob", now=NOW + TTL, ttl=TTL)
    assert taken.user_id == "bob" and taken.acquired_at == NOW + TTL


def test_only_the_holder_releases_a_live_lock():
    held = ReadingLock("1", "ada", "Dr Ada", NOW, NOW + TTL)
    assert locks.may_release(held, user_id="ada", now=NOW)
    with pytest.raises(LockHeld):
        locks.may_release(held, user_id="bob", now=NOW)
    assert not locks.may_release(held, user_id="bob", now=NOW + TTL)
    assert not locks.may_release(None, user_id="ada", now=NOW)


def test_a_lock_needs_a_positive_time_to_live():
    with pytest.raises(ValueError, match="positive time to live"):
        locks.acquire(None, study_uid="1", user_id="a", user_name="A", now=NOW, ttl=timedelta(0))


@pytest.fixture
def engine(tmp_path):
    engine = create_engine(f"sqlite:///{tmp_path / 'w.db'}")
    migrate(engine, chain="radcds_worklist.db")
    return engine


@pytest.fixture
def store(engine):
    return LockStore(engine, ttl=TTL)


def test_stored_lock_is_taken_refused_to_another_renewed_and_released_each_with_a_live_event(engine, store):
    store.acquire("1.2.3", user_id="ada", user_name="Dr Ada", now=NOW)
    with pytest.raises(LockHeld) as refused:
        store.acquire("1.2.3", user_id="bob", user_name="Dr Bob", now=NOW + timedelta(minutes=1))
    assert refused.value.holder.user_name == "Dr Ada"
    renewed = store.acquire("1.2.3", user_id="ada", user_name="Dr Ada", now=NOW + timedelta(minutes=5))
    assert renewed.expires_at == NOW + timedelta(minutes=5) + TTL
    assert store.current("1.2.3", now=NOW) == renewed
    with pytest.raises(LockHeld):
        store.release("1.2.3", user_id="bob", now=NOW + timedelta(minutes=6))
    assert store.release("1.2.3", user_id="ada", now=NOW + timedelta(minutes=6))
    assert store.current("1.2.3", now=NOW) is None
    assert [(e.kind, e.data["userId"]) for e in live_since(engine, 0)] == [
        ("lock", "ada"),
        ("lock", "ada"),
        ("lock", None),
    ]


def test_of_two_acquirers_racing_for_a_free_study_exactly_one_wins(engine):
    """Both read "no lock"; the first conditional INSERT wins, the second changes nothing."""
    ada = ReadingLock("1.2.3", "ada", "Dr Ada", NOW, NOW + TTL)
    bob = ReadingLock("1.2.3", "bob", "Dr Bob", NOW, NOW + TTL)
    with engine.begin() as conn:
        seen_by_ada = read_lock(conn, "1.2.3")
    with engine.begin() as conn:
        seen_by_bob = read_lock(conn, "1.2.3")
    assert seen_by_ada is None and seen_by_bob is None
    with engine.begin() as conn:
        assert take(conn, seen_by_ada, ada)
    with engine.begin() as conn:
        assert not take(conn, seen_by_bob, bob)
        assert read_lock(conn, "1.2.3") == ada


def test_of_two_acquirers_racing_for_an_expired_lock_exactly_one_wins(engine, store):
    store.acquire("1.2.3", user_id="old", user_name="Dr Old", now=NOW - 2 * TTL)
    later = NOW
    with engine.begin() as conn:
        expired = read_lock(conn, "1.2.3")
    assert expired is not None and not expired.live(later)
    ada = locks.acquire(expired, study_uid="1.2.3", user_id="ada", user_name="Dr Ada", now=later, ttl=TTL)
    bob = locks.acquire(expired, study_uid="1.2.3", user_id="bob", user_name="Dr Bob", now=later, ttl=TTL)
    with engine.begin() as conn:
        assert take(conn, expired, bob)
    with engine.begin() as conn:
        assert not take(conn, expired, ada)
    with pytest.raises(LockHeld, match="Dr Bob"):
        store.acquire("1.2.3", user_id="ada", user_name="Dr Ada", now=later)
