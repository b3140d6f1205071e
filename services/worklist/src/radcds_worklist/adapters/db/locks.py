"""Reading locks in the worklist's database: acquire, renew and release each in one transaction, race-safe.

The rules are the domain's (:mod:`radcds_worklist.domain.locks`); here the decision is written with a
conditional statement: an INSERT ... ON CONFLICT DO NOTHING when the study had no lock row (the primary key admits
one), an UPDATE whose WHERE names the row as it was read. When two radiologists ask at once, exactly one statement
takes effect; the other finds no row changed, reads the lock again and gets its answer from the rules: refused, with
who holds it. Each change is announced on the live stream in the same transaction.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import Connection, Engine, delete, select, update
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from radcds_worklist.adapters.db.live import append_live
from radcds_worklist.adapters.db.studies import utc
from radcds_worklist.db.tables import reading_locks
from radcds_worklist.domain import locks
from radcds_worklist.domain.locks import LockHeld, ReadingLock

L = reading_locks.c
#: How often a lost race is retried before giving up (each retry reads the winner's lock).
_ATTEMPTS = 3


class LockRaceLost(RuntimeError):
    """The lock changed under every attempt (should not happen: each retry sees the winner)."""


def read_lock(conn: Connection, study_uid: str) -> ReadingLock | None:
    """The study's lock row (live or expired), or None."""
    r = conn.execute(select(reading_locks).where(L.study_uid == study_uid)).mappings().first()
    if r is None:
        return None
    acquired, expires = utc(r["acquired_at"]), utc(r["expires_at"])
    assert acquired is not None and expires is not None
    return ReadingLock(r["study_uid"], r["user_id"], r["user_name"], acquired, expires)


def take(conn: Connection, expected: ReadingLock | None, new: ReadingLock) -> bool:
    """Write ``new`` only if the row is still ``expected`` (None: no row); True if it was written."""
    if expected is None:
        # INSERT ... ON CONFLICT DO NOTHING (PostgreSQL 15 INSERT, SQLite "upsert"): the loser of a race inserts
        # nothing, and its transaction stays usable.
        dialect_insert = postgresql_insert if conn.dialect.name == "postgresql" else sqlite_insert
        result = conn.execute(dialect_insert(reading_locks).values(**_values(new)).on_conflict_do_nothing())
        return result.rowcount == 1
    result = conn.execute(
        update(reading_locks)
        .where(
            L.study_uid == expected.study_uid,
            L.user_id == expected.user_id,
            L.acquired_at == expected.acquired_at,
            L.expires_at == expected.expires_at,
        )
        .values(**_values(new))
    )
    return result.rowcount == 1


def _values(lock: ReadingLock) -> dict[str, object]:
    return {
        "study_uid": lock.study_uid,
        "user_id": lock.user_id,
        "user_name": lock.user_name,
        "acquired_at": lock.acquired_at,
        "expires_at": lock.expires_at,
    }


def _announce(conn: Connection, study_uid: str, lock: ReadingLock | None) -> None:
    data = (
        {
            "studyUid": study_uid,
            "userId": lock.user_id,
            "userName": lock.user_name,
            "expiresAt": lock.expires_at.isoformat(),
        }
        if lock is not None
        else {"studyUid": study_uid, "userId": None, "userName": None, "expiresAt": None}
    )
    append_live(conn, "lock", study_uid, data)


class LockStore:
    """Reading locks over the worklist's engine; ``ttl`` is how long a lock lives without renewal."""

    def __init__(self, engine: Engine, *, ttl: timedelta) -> None:
        self._engine = engine
        self._ttl = ttl

    def current(self, study_uid: str, *, now: datetime) -> ReadingLock | None:
        """The study's live lock, or None."""
        with self._engine.connect() as conn:
            found = read_lock(conn, study_uid)
        return found if found is not None and found.live(now) else None

    def acquire(self, study_uid: str, *, user_id: str, user_name: str, now: datetime) -> ReadingLock:
        """Take or renew the lock for ``user_id``; raises :class:`LockHeld` when another user holds it."""
        for _ in range(_ATTEMPTS):
            with self._engine.begin() as conn:
                current = read_lock(conn, study_uid)
                new = locks.acquire(
                    current, study_uid=study_uid, user_id=user_id, user_name=user_name, now=now, ttl=self._ttl
                )
                if take(conn, current, new):
                    _announce(conn, study_uid, new)
                    return new
        raise LockRaceLost(f"the lock on {study_uid} kept changing")

    def release(self, study_uid: str, *, user_id: str, now: datetime) -> bool:
        """Release ``user_id``'s live lock (True), or nothing to release (False); raises :class:`LockHeld` when
        another user's live lock is there. An expired row is removed either way."""
        with self._engine.begin() as conn:
            current = read_lock(conn, study_uid)
            mine = locks.may_release(current, user_id=user_id, now=now)
            if current is None:
                return False
            gone = conn.execute(
                delete(reading_locks).where(
                    L.study_uid == study_uid, L.user_id == current.user_id, L.expires_at == current.expires_at
                )
            ).rowcount
            if mine and gone == 1:
                _announce(conn, study_uid, None)
                return True
            return False


__all__ = ["LockHeld", "LockRaceLost", "LockStore", "read_lock", "take"]
