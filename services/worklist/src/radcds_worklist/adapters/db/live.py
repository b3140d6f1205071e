"""The live stream's log: every change an open page must show, numbered in commit order.

Written in the same transaction as the change it announces, so a page that reconnects with the last ``seq`` it
saw (Server-Sent Events ``Last-Event-ID``, HTML Living Standard §9.2) misses nothing and sees each change once.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, Engine, func, insert, select

from radcds_worklist.db.tables import live_events

#: The kinds of change on the stream.
KINDS = frozenset({"study", "finding", "report", "critical", "assessment", "lock", "feedback", "alert"})


@dataclass(frozen=True, slots=True)
class LiveEvent:
    """One change, as an open page receives it."""

    seq: int
    kind: str
    study_uid: str | None
    data: dict[str, Any]
    occurred_at: datetime


def append_live(conn: Connection, kind: str, study_uid: str | None, data: dict[str, Any]) -> None:
    """Record a change in the caller's transaction (it becomes visible when that commits)."""
    if kind not in KINDS:
        raise ValueError(f"unknown live event kind {kind!r}")
    conn.execute(insert(live_events).values(occurred_at=datetime.now(UTC), kind=kind, study_uid=study_uid, data=data))


def live_since(engine: Engine, seq: int, *, limit: int = 500) -> list[LiveEvent]:
    """The changes after ``seq``, oldest first (at most ``limit``)."""
    with engine.connect() as conn:
        rows = conn.execute(
            select(live_events).where(live_events.c.seq > seq).order_by(live_events.c.seq).limit(limit)
        ).all()
    return [LiveEvent(r.seq, r.kind, r.study_uid, dict(r.data), r.occurred_at) for r in rows]


def last_seq(engine: Engine) -> int:
    """The newest ``seq`` (0 when nothing happened yet): a page rendered now continues from here."""
    with engine.connect() as conn:
        return int(conn.execute(select(func.coalesce(func.max(live_events.c.seq), 0))).scalar_one())
