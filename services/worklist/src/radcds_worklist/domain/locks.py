"""Reading locks ("assign to me"): one radiologist reads a study at a time (issue #13).

A lock belongs to one user until it expires; the holder renews it while reading. The rules are pure and take the
clock as an argument: a user may take a free or expired lock or renew their own; another user's live lock is
refused, naming who holds it and until when; only the holder releases a live lock (an expired one is free anyway).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta


@dataclass(frozen=True, slots=True)
class ReadingLock:
    """Who reads a study (``user_id`` stable, ``user_name`` for display) and until when."""

    study_uid: str
    user_id: str
    user_name: str
    acquired_at: datetime
    expires_at: datetime

    def live(self, now: datetime) -> bool:
        """True while the lock has not expired."""
        return now < self.expires_at

    def held_by(self, user_id: str, now: datetime) -> bool:
        """True when ``user_id`` holds this lock and it is live."""
        return self.live(now) and self.user_id == user_id


class LockHeld(Exception):
    """Another user holds a live lock on the study (HTTP 409): ``holder`` says who and until when."""

    def __init__(self, holder: ReadingLock) -> None:
        super().__init__(f"{holder.user_name} is reading this study until {holder.expires_at.isoformat()}")
        self.holder = holder


def acquire(
    current: ReadingLock | None,
    *,
    study_uid: str,
    user_id: str,
    user_name: str,
    now: datetime,
    ttl: timedelta,
) -> ReadingLock:
    """The lock after ``user_id`` asks for it: taken (free or expired), renewed (their own), or :class:`LockHeld`."""
    if ttl <= timedelta(0):
        raise ValueError("a lock needs a positive time to live")
    if current is not None and current.live(now):
        if current.user_id != user_id:
            raise LockHeld(current)
        return ReadingLock(study_uid, user_id, user_name, current.acquired_at, now + ttl)
    return ReadingLock(study_uid, user_id, user_name, now, now + ttl)


def may_release(current: ReadingLock | None, *, user_id: str, now: datetime) -> bool:
    """Whether ``user_id`` releasing the lock removes something: True for their own live lock, False when there is
    nothing live to release; another user's live lock raises :class:`LockHeld`."""
    if current is None or not current.live(now):
        return False
    if current.user_id != user_id:
        raise LockHeld(current)
    return True
