"""Consultations (with their outgoing events) and card feedback, on SQLAlchemy."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine, case, func, insert, select
from sqlalchemy.exc import IntegrityError

from radcds.adapters.db.outbox import enqueue
from radcds.domain.events import ORDER_EVALUATED
from radcds_referral.db.tables import cds_consultations, cds_feedback


@dataclass(frozen=True, slots=True)
class Consultation:
    """One rated (or not rateable) order: the PAMA consultation and its event payload."""

    consultation_id: str
    service_id: str
    hook: str
    hook_instance: str
    order_id: str
    rule_id: str
    rule_version: str
    rating: str
    card_uuid: str | None
    event_payload: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Feedback:
    """One CDS Hooks feedback item."""

    card_uuid: str
    outcome: str
    outcome_timestamp: str
    accepted_suggestions: list[str]
    override_reason_code: str | None


class ReferralRepository:
    """Writes consultations and feedback; reads the outbox and per-rule feedback rates."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        #: Called after consultations are committed (the app wakes its outbox relay with it).
        self.after_commit: Callable[[], None] | None = None

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
        if self.after_commit is not None:
            self.after_commit()

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

    def feedback_rates(self, service_id: str) -> list[dict[str, Any]]:
        """Accept and override counts and rates per rule for cards of ``service_id``."""
        accepted = func.sum(case((cds_feedback.c.outcome == "accepted", 1), else_=0))
        overridden = func.sum(case((cds_feedback.c.outcome == "overridden", 1), else_=0))
        with self._engine.connect() as conn:
            rows = conn.execute(
                select(cds_consultations.c.rule_id, accepted.label("accepted"), overridden.label("overridden"))
                .select_from(
                    cds_feedback.join(cds_consultations, cds_consultations.c.card_uuid == cds_feedback.c.card_uuid)
                )
                .where(cds_feedback.c.service_id == service_id)
                .group_by(cds_consultations.c.rule_id)
                .order_by(cds_consultations.c.rule_id)
            ).all()
        out = []
        for r in rows:
            total = int(r.accepted or 0) + int(r.overridden or 0)
            out.append(
                {
                    "ruleId": r.rule_id,
                    "accepted": int(r.accepted or 0),
                    "overridden": int(r.overridden or 0),
                    "acceptRate": round(int(r.accepted or 0) / total, 4) if total else 0.0,
                    "overrideRate": round(int(r.overridden or 0) / total, 4) if total else 0.0,
                }
            )
        return out
