"""Consultations (with their outgoing events) and card feedback, on SQLAlchemy: the
:class:`~radcds_referral.domain.consultations.ConsultationRepository` port."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime

from sqlalchemy import Engine, insert
from sqlalchemy.exc import IntegrityError

from radcds.adapters.db.outbox import enqueue
from radcds.domain.events import ORDER_EVALUATED
from radcds_referral.db.tables import cds_consultations, cds_feedback
from radcds_referral.domain.consultations import Consultation, Feedback


class ReferralRepository:
    """Writes consultations (with their events, in the transactional outbox) and feedback."""

    def __init__(self, engine: Engine, *, after_commit: Callable[[], None] | None = None) -> None:
        self._engine = engine
        #: Called after consultations are committed (the app wakes its outbox relay with it).
        self._after_commit = after_commit

    def add_consultations(self, items: list[Consultation]) -> None:
        """Store consultations and, in the same transaction, their ``imaging-order.evaluated`` events in
        the shared transactional outbox (the relay publishes them after the commit)."""
        if not items:
            return
        now = datetime.now(UTC)
        with self._engine.begin() as conn:
            conn.execute(
                insert(cds_consultations),
                [
                    {
                        "consultation_id": c.consultation_id,
                        "service_id": c.service_id,
                        "hook": c.hook,
                        "hook_instance": c.hook_instance,
                        "order_id": c.order_id,
                        "rule_id": c.rule_id,
                        "rule_version": c.rule_version,
                        "rating": c.rating,
                        "card_uuid": c.card_uuid,
                        "event_payload": json.dumps(c.event_payload),
                        "created_at": now,
                    }
                    for c in items
                ],
            )
            # Event id = consultation id (feedback and consumers refer to it); key = the order id.
            enqueue(conn, ORDER_EVALUATED, [(c.event_payload, c.consultation_id, c.order_id) for c in items])
        if self._after_commit is not None:
            self._after_commit()

    def add_feedback(self, service_id: str, items: list[Feedback]) -> int:
        """Store feedback items once each (the same card may be reported twice); returns how many were new."""
        new = 0
        for f in items:
            try:
                with self._engine.begin() as conn:
                    conn.execute(
                        insert(cds_feedback).values(
                            service_id=service_id,
                            card_uuid=f.card_uuid,
                            outcome=f.outcome,
                            outcome_timestamp=f.outcome_timestamp,
                            accepted_suggestions=json.dumps(f.accepted_suggestions),
                            override_reason_code=f.override_reason_code,
                            received_at=datetime.now(UTC),
                        )
                    )
                new += 1
            except IntegrityError:
                continue
        return new
