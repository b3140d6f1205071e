"""The log of accepted inbound HL7 v2 messages in the database (HL7 v2.5.1 2.9, 2.10): the
:class:`~radcds_reporting.adapters.hl7v2.inbound.ReceivedMessageLog` of the order listener, keyed by sender
(MSH-3/MSH-4) and MSH-10, so a repeated message is acknowledged again but never processed twice, across restarts.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from datetime import UTC, datetime

from sqlalchemy import Connection, Engine, insert, select
from sqlalchemy.exc import IntegrityError

from radcds_reporting.db.tables import hl7_inbound_messages


class SqlReceivedMessageLog:
    """A :class:`~radcds_reporting.adapters.hl7v2.inbound.ReceivedMessageLog` in the database (survives restarts)."""

    def __init__(self, engine: Engine, *, clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self._engine = engine
        self._clock = clock

    def was_accepted(self, *, sender: str, control_id: str) -> bool:
        """See :class:`~radcds_reporting.adapters.hl7v2.inbound.ReceivedMessageLog`."""
        t = hl7_inbound_messages
        with self._engine.connect() as conn:
            found = conn.execute(
                select(t.c.control_id).where(t.c.sender == sender[:255], t.c.control_id == control_id[:199])
            ).first()
        return found is not None

    def record_accepted_in(self, conn: Connection, *, sender: str, control_id: str) -> bool:
        """Record the message inside the caller's transaction; False when it was already recorded.

        An application that stores the message's content in the same transaction gets exactly-once
        processing: a crash before the commit keeps neither, a duplicate finds the record.
        """
        t = hl7_inbound_messages
        found = conn.execute(
            select(t.c.control_id).where(t.c.sender == sender[:255], t.c.control_id == control_id[:199])
        ).first()
        if found is not None:
            return False
        conn.execute(insert(t).values(sender=sender[:255], control_id=control_id[:199], accepted_at=self._clock()))
        return True

    def record_accepted(self, *, sender: str, control_id: str) -> None:
        """See :class:`~radcds_reporting.adapters.hl7v2.inbound.ReceivedMessageLog`."""
        with contextlib.suppress(IntegrityError), self._engine.begin() as conn:
            conn.execute(
                insert(hl7_inbound_messages).values(
                    sender=sender[:255], control_id=control_id[:199], accepted_at=self._clock()
                )
            )
